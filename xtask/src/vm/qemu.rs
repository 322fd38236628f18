//! Boots one kernel under QEMU with TCG (KVM is not available on our machines) and collects
//! both serial ports: ttyS0 is the console (kernel messages, the script's progress lines),
//! ttyS1 is the data channel the guest writes its results to (see `tests/vm/init.sh`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub fn check_installed() -> anyhow::Result<()> {
    match Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("qemu-system-x86_64 is missing: apt-get install qemu-system-x86"),
    }
}

pub struct Boot<'a> {
    pub label: &'a str,
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    /// Where console.log and data.bin go.
    pub dir: &'a Path,
    pub timeout: Duration,
    pub verbose: bool,
    /// Tells the guest (kernel command line `vmtest.full`) to ship whole tracer outputs.
    pub full_payload: bool,
}

pub struct Run {
    pub console: String,
    pub data: Vec<u8>,
    /// From QEMU's start until it exited.
    pub elapsed: Duration,
    /// From QEMU's start until the script's first line: firmware and kernel boot.
    pub boot: Option<Duration>,
    pub timed_out: bool,
    pub console_path: PathBuf,
}

pub fn boot(b: &Boot<'_>) -> anyhow::Result<Run> {
    let console_path = b.dir.join("console.log");
    let data_path = b.dir.join("data.bin");
    let _ = std::fs::remove_file(&data_path);
    eprintln!("vm-test [{}]: booting {}", b.label, b.vmlinuz.display());
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1{}",
            if b.full_payload { " vmtest.full" } else { "" }
        ))
        .args(["-serial", "stdio", "-serial"])
        .arg(format!("file:{}", data_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;

    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let tx2 = tx.clone();
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send((Instant::now(), format!("qemu: {line}")));
        }
    });

    let mut console = String::new();
    let mut first_script_line = None;
    let mut timed_out = false;
    let mut show = |at: Instant, line: String, console: &mut String| {
        if first_script_line.is_none() && line.starts_with("vm-test:") {
            first_script_line = Some(at - start);
        }
        let interesting = line.starts_with("vm-test:")
            || line.starts_with("qemu:")
            || line.contains("Kernel panic")
            || line.contains("BUG:");
        if b.verbose || interesting {
            eprintln!("  [{} {:6.1}s] {line}", b.label, (at - start).as_secs_f64());
        }
        console.push_str(&line);
        console.push('\n');
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((at, line)) => show(at, line, &mut console),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > b.timeout {
            timed_out = true;
            let _ = child.kill();
            break;
        }
        if let Some(_status) = child.try_wait()? {
            // Drain what the readers still hold.
            while let Ok((at, line)) = rx.recv_timeout(Duration::from_millis(500)) {
                show(at, line, &mut console);
            }
            break;
        }
    }
    let _ = child.wait();
    let elapsed = start.elapsed();
    let _ = out_thread.join();
    let _ = err_thread.join();
    std::fs::write(&console_path, &console)?;
    let data = std::fs::read(&data_path).unwrap_or_default();
    eprintln!(
        "vm-test [{}]: VM {} after {:.1}s",
        b.label,
        if timed_out {
            "killed (timeout)"
        } else {
            "exited"
        },
        elapsed.as_secs_f64()
    );
    Ok(Run {
        console,
        data,
        elapsed,
        boot: first_script_line,
        timed_out,
        console_path,
    })
}

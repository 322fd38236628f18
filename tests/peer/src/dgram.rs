//! `dgram`: a connected pair of unix datagram sockets exchanging datagrams of varying size.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::prng::{self, SplitMix64};
use crate::shape;
use crate::util::{join, remove_stale, wait_for_file, write_outputs};

/// How each datagram is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DgramMode {
    Write,
    Send,
    /// `sendmsg(2)` with the datagram in two iovecs.
    Sendmsg,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path the server binds; the client binds `PATH.client`.
    #[arg(long)]
    path: PathBuf,
    /// Datagrams sent in each direction.
    #[arg(long)]
    count: usize,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "send")]
    mode: DgramMode,
    /// Largest datagram; sizes are drawn from 1..=max.
    #[arg(long, default_value_t = 8192)]
    max_size: usize,
    #[arg(long)]
    wait_file: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
}

/// Receive buffer: larger than any datagram we send, so MSG_TRUNC flags a real truncation.
const RECV_BUF: usize = 256 * 1024;

pub fn run(args: Args) -> Result<()> {
    let client_path = PathBuf::from(format!("{}.client", args.path.display()));
    remove_stale(&args.path)?;
    remove_stale(&client_path)?;
    let server = bind(&args.path)?;
    let client = bind(&client_path)?;
    server.connect(&client_path).context("server connect")?;
    client.connect(&args.path).context("client connect")?;
    // A lost or missing datagram must fail the run, not hang the test that started it.
    for s in [&server, &client] {
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .context("set receive timeout")?;
    }
    let client_ino = shape::inode(client.as_fd())?;
    let server_ino = shape::inode(server.as_fd())?;
    let pid = std::process::id();
    eprintln!("testpeer: connected pid={pid} client_ino={client_ino} server_ino={server_ino}");
    if let Some(f) = &args.wait_file {
        wait_for_file(f, Duration::from_secs(120))?;
    }

    let c2s = datagrams(args.seed, args.count, args.max_size);
    let s2c = datagrams(args.seed.wrapping_add(1), args.count, args.max_size);
    let (got_c2s, got_s2c) = thread::scope(|s| -> Result<_> {
        let a = s.spawn(|| send_each(&client, &c2s, args.mode));
        let b = s.spawn(|| send_each(&server, &s2c, args.mode));
        let c = s.spawn(|| recv_n(&server, args.count));
        let d = s.spawn(|| recv_n(&client, args.count));
        join(a, "client send")?;
        join(b, "server send")?;
        Ok((join(c, "server receive")?, join(d, "client receive")?))
    })?;
    if got_c2s != c2s || got_s2c != s2c {
        bail!("received datagrams differ from sent ones");
    }
    if let Some(dir) = &args.out_dir {
        write_outputs(dir, &got_c2s.concat(), &got_s2c.concat())?;
    }
    thread::sleep(Duration::from_millis(args.linger_ms));
    drop((client, server));
    let _ = fs::remove_file(&args.path);
    let _ = fs::remove_file(&client_path);

    let sizes = |v: &[Vec<u8>]| v.iter().map(Vec::len).collect::<Vec<_>>();
    let summary = serde_json::json!({
        "client_pid": pid,
        "server_pid": pid,
        "client_ino": client_ino,
        "server_ino": server_ino,
        "c2s_len": got_c2s.iter().map(Vec::len).sum::<usize>(),
        "s2c_len": got_s2c.iter().map(Vec::len).sum::<usize>(),
        "c2s_sizes": sizes(&got_c2s),
        "s2c_sizes": sizes(&got_s2c),
    });
    println!("{summary}");
    Ok(())
}

fn bind(path: &Path) -> Result<UnixDatagram> {
    UnixDatagram::bind(path).with_context(|| format!("bind {}", path.display()))
}

/// The datagrams for one direction: sizes and contents both follow from the seed.
fn datagrams(seed: u64, count: usize, max: usize) -> Vec<Vec<u8>> {
    let mut sizes = SplitMix64::new(seed ^ 0xD6);
    let all = prng::bytes(seed, count * max.max(1));
    let mut at = 0;
    (0..count)
        .map(|_| {
            let n = sizes.range(1, max.max(1));
            let d = all[at..at + n].to_vec();
            at += n;
            d
        })
        .collect()
}

fn send_each(sock: &UnixDatagram, dgrams: &[Vec<u8>], mode: DgramMode) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    for d in dgrams {
        let half = d.len() / 2;
        // SAFETY: the buffers live across each call; the fd is open for the borrow of `sock`.
        let n = unsafe {
            match mode {
                DgramMode::Write => libc::write(fd, d.as_ptr().cast(), d.len()),
                DgramMode::Send => libc::send(fd, d.as_ptr().cast(), d.len(), 0),
                DgramMode::Sendmsg => {
                    let mut iov = [
                        libc::iovec {
                            iov_base: d.as_ptr() as *mut _,
                            iov_len: half,
                        },
                        libc::iovec {
                            iov_base: d[half..].as_ptr() as *mut _,
                            iov_len: d.len() - half,
                        },
                    ];
                    let mut msg: libc::msghdr = std::mem::zeroed();
                    msg.msg_iov = iov.as_mut_ptr();
                    msg.msg_iovlen = iov.len();
                    libc::sendmsg(fd, &msg, 0)
                }
            }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != d.len() {
            return Err(io::Error::other(format!(
                "datagram of {} bytes sent as {n}",
                d.len()
            )));
        }
    }
    Ok(())
}

fn recv_n(sock: &UnixDatagram, count: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        // SAFETY: `buf` is writable for its full length.
        let n = unsafe {
            libc::recv(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(io::Error::other(format!("datagram of {n} bytes truncated")));
        }
        out.push(buf[..n].to_vec());
    }
    Ok(out)
}

//! containerdsnoop's entry point: parse flags, start the capture, run the pipeline until Ctrl-C,
//! SIGTERM, `-n` or `--duration`, and map errors to exit codes (a closed pipe exits 0).

use std::{
    io::{self, IsTerminal as _, Write},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser as _;
use containerdsnoop::{
    btf,
    capture::{Capture, CaptureConfig},
    cli::{Args, Config, OutputFormat},
    reassembly::Reassembler,
    render::{
        raw::{RawFormat, RawPrinter},
        time::Clock,
    },
    wire,
};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerdsnoop: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let layout = btf::kernel_layout_from_sysfs().context("reading kernel structure layout")?;
    let capture_config = CaptureConfig {
        backend: config.args.backend,
        patterns: config.patterns.clone(),
        max_call_bytes: config.args.max_call_bytes,
        ring_bytes: config.ring_bytes,
        layout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        if config.args.load_only {
            let loaded = containerdsnoop::capture::verify_all(&capture_config)?;
            eprintln!("verified {} programs: {}", loaded.len(), loaded.join(", "));
            return Ok(());
        }
        trace(config, capture_config).await
    })
}

/// Stdout: line-buffered on a terminal, block-buffered into a pipe or file.
fn output() -> (Box<dyn Write>, bool) {
    let stdout = io::stdout();
    if stdout.is_terminal() {
        (Box::new(stdout), true)
    } else {
        (
            Box::new(io::BufWriter::with_capacity(64 * 1024, stdout)),
            false,
        )
    }
}

async fn trace(config: Config, capture_config: CaptureConfig) -> anyhow::Result<()> {
    let mut capture = Capture::start(&capture_config)?;
    if let Some(reason) = &capture.fallback_reason {
        eprintln!(
            "containerdsnoop: kprobe backend unavailable ({reason}); using the tracepoint backend"
        );
    }
    let (out, is_tty) = output();
    let format = match config.args.output {
        Some(OutputFormat::Json) => RawFormat::Json,
        Some(OutputFormat::String) => RawFormat::String,
        _ => RawFormat::Hex,
    };
    let mut printer = RawPrinter::new(out, format, Clock::now());
    let mut reassembler = Reassembler::default();
    eprintln!(
        "Tracing {} with {} backend... Ctrl-C to end.",
        config.describe_sockets(),
        capture.backend
    );

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = config.args.duration.map(Duration::from_secs_f64);
    let sleep = tokio::time::sleep(deadline.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(sleep);
    let mut flush_tick = tokio::time::interval(Duration::from_millis(500));
    let mut records = Vec::new();
    let mut pieces = Vec::new();
    let mut printed: u64 = 0;
    let mut bad_records: u64 = 0;
    let mut stop = false;
    while !stop {
        tokio::select! {
            r = capture.read(&mut records) => r?,
            _ = sigint.recv() => stop = true,
            _ = sigterm.recv() => stop = true,
            _ = &mut sleep => stop = true,
            _ = flush_tick.tick() => printer.flush()?,
        }
        if stop {
            capture.read_now(&mut records);
        }
        for record in records.drain(..) {
            let chunk = match wire::parse(&record) {
                Ok(c) => c,
                Err(_) => {
                    bad_records += 1;
                    continue;
                }
            };
            if !config.args.pids.is_empty()
                && !config
                    .args
                    .pids
                    .iter()
                    .any(|&p| p == chunk.tgid || p == chunk.peer_tgid)
            {
                continue;
            }
            pieces.clear();
            reassembler.accept(&chunk, &mut pieces);
            printer.record(&chunk, &pieces)?;
            printed += 1;
            if config.args.count.is_some_and(|n| printed >= n) {
                stop = true;
                break;
            }
        }
        if is_tty {
            printer.flush()?;
        }
    }
    printer.flush()?;
    if !config.args.quiet {
        let drops = capture.drop_counters()?;
        eprintln!(
            "containerdsnoop: {} records, {} lost records ({} bytes) in the kernel, {} malformed records",
            printed, drops.lost_records, drops.lost_bytes, bad_records
        );
    }
    Ok(())
}

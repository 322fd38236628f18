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
    cli::{Args, Config, OutputFormat, RowType},
    filter::{Filter, MethodPattern},
    pcap::{Event, PcapReader, PcapWriter},
    pipeline::{Pipeline, Printer},
    render::escape::escape_str,
    render::{
        json::JsonPrinter,
        raw::{RawFormat, RawPrinter},
        table::TablePrinter,
        time::Clock,
    },
    rows::RowKind,
    schema::{RenderOptions, Schema},
    wire,
};
use tokio::signal::unix::{SignalKind, signal};

mod generate;
mod privileges;

/// Prints kernel-side diagnostics (aya-log) on stderr.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let text = containerdsnoop::render::escape::escape_str(&record.args().to_string());
            eprintln!("containerdsnoop: kernel: {text}");
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn main() -> ExitCode {
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let args = Args::parse();
    if let Some(kind) = args.generate {
        return match generate::write(kind, &mut io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("containerdsnoop: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
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
    if let Some(path) = config.args.read.clone() {
        return read_file(&config, &path);
    }
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

/// The terminal's width in columns, when stdout is a terminal.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize struct we own; fd 1 is stdout.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

fn build_pipeline(config: &Config, clock: Clock) -> anyhow::Result<(Pipeline, bool)> {
    let (out, is_tty) = output();
    let args = &config.args;
    let pcap_on_stdout = args.write.as_deref() == Some("-");
    let printer = if pcap_on_stdout {
        Printer::Silent
    } else if args.raw {
        let format = match args.output {
            Some(OutputFormat::Json) => RawFormat::Json,
            Some(OutputFormat::String) => RawFormat::String,
            _ => RawFormat::Hex,
        };
        Printer::Raw(RawPrinter::new(out, format, clock))
    } else if args.output == Some(OutputFormat::Json) {
        Printer::Json(JsonPrinter::new(out, clock))
    } else {
        let width = if is_tty && !args.full {
            terminal_width()
        } else {
            None
        };
        Printer::Table(TablePrinter::new(out, clock, width))
    };
    let mut schema = Schema::embedded().context("loading the embedded protobuf schema")?;
    if !args.protos.is_empty() {
        schema.add_proto_paths(&args.protos).context("--proto")?;
    }
    for path in &args.descriptor_sets {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        schema
            .add_descriptor_set(&bytes)
            .with_context(|| format!("--descriptor-set {}", path.display()))?;
    }
    let opts = RenderOptions {
        redact: !args.no_redact,
        ..RenderOptions::default()
    };
    let filter = Filter {
        pids: args.pids.clone(),
        comms: args.comms.clone(),
        methods: args.methods.iter().map(|m| MethodPattern::new(m)).collect(),
        kinds: match args.row_type {
            Some(RowType::Req) => vec![RowKind::Req],
            Some(RowType::Resp) => vec![RowKind::Resp],
            Some(RowType::End) => vec![RowKind::End],
            None => vec![],
        },
    };
    let mut pipeline = Pipeline::new(schema, opts, filter, printer, args.count);
    if let Some(path) = &args.write {
        let writer = PcapWriter::create(path).map_err(|e| anyhow::anyhow!("-w {path}: {e}"))?;
        pipeline = pipeline.with_pcap(writer, clock);
    }
    Ok((pipeline, is_tty && !pcap_on_stdout))
}

/// `-r FILE`: decode a capture file through the same pipeline; no kernel, no root.
fn read_file(config: &Config, path: &str) -> anyhow::Result<()> {
    let mut reader = PcapReader::open(path).map_err(|e| anyhow::anyhow!("-r {path}: {e}"))?;
    let (mut pipeline, _) = build_pipeline(config, Clock::wall())?;
    let mut last_ts = 0;
    let mut result = Ok(());
    while let Some(event) = reader.next_event() {
        match event {
            Ok(Event::Chunk(chunk)) => {
                last_ts = chunk.ts_ns;
                if !pipeline.push(&chunk)? {
                    break;
                }
            }
            Ok(Event::Closed {
                ts_ns,
                sock_id,
                peer_id,
                ..
            }) => pipeline.close_connection(ts_ns, sock_id, peer_id)?,
            Err(e) => {
                result = Err(anyhow::anyhow!("-r {path}: {e}"));
                break;
            }
        }
    }
    pipeline.finish(last_ts)?;
    if !config.args.quiet {
        eprintln!("{}", pipeline.stats.summary());
    }
    result
}

/// A per-run key for masking kernel pointers (see `wire::mask_pointer`).
fn random_key() -> u64 {
    let mut key = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the array we own.
    let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(key)
    } else {
        monotonic_now_ns().rotate_left(17)
    }
}

fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Tells the user which connections were open before the tracer (decoded in late-join mode),
/// and marks them so in the pipeline.
fn report_open_connections(
    open: std::io::Result<Vec<containerdsnoop::capture::discover::OpenConnection>>,
    pipeline: &mut Pipeline,
) {
    match open {
        Ok(open) if !open.is_empty() => {
            pipeline.set_preexisting(
                open.iter()
                    .flat_map(|c| [c.server_ino as u64, c.client_ino as u64]),
            );
            eprintln!(
                "containerdsnoop: {} connection(s) already open on the selected sockets; they are \
                 decoded from where the tracer joins (late-join mode):",
                open.len()
            );
            let who = |p: &Option<(u32, String)>| match p {
                Some((pid, comm)) => format!("{} ({pid})", escape_str(comm)),
                None => "?".to_string(),
            };
            for c in open.iter().take(50) {
                eprintln!(
                    "  {} <-> {} on {}",
                    who(&c.client),
                    who(&c.server),
                    escape_str(&c.path)
                );
            }
            if open.len() > 50 {
                eprintln!("  ... and {} more", open.len() - 50);
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("containerdsnoop: cannot list open connections (sock_diag: {e})"),
    }
}

async fn trace(config: Config, capture_config: CaptureConfig) -> anyhow::Result<()> {
    let (mut pipeline, is_tty) = build_pipeline(&config, Clock::now())?;
    // Before attaching: a connection opened after this point is seen from its first byte (or
    // recognised by the decoder if it races the attach), never mislabelled as pre-existing.
    let open = containerdsnoop::capture::discover::open_connections(&config.patterns);
    let mut capture = Capture::start(&capture_config)?;
    if let Some(reason) = &capture.fallback_reason {
        eprintln!(
            "containerdsnoop: kprobe backend unavailable ({reason}); using the tracepoint backend"
        );
    }
    report_open_connections(open, &mut pipeline);
    privileges::drop_after_attach(|| capture.drop_counters().map(|_| ()));
    if config.existing_sockets().is_empty() {
        eprintln!(
            "containerdsnoop: none of the selected sockets exists yet; tracing continues and \
             matches them as soon as they are used"
        );
    }
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
    // The programs wake the reader only when the ring fills up (see emit.rs WAKEUP_BACKLOG), so
    // that a busy traced workload is not slowed by a wakeup per record; drain it every 10 ms.
    let mut drain_tick = tokio::time::interval(Duration::from_millis(10));
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut records = Vec::new();
    let mut stop = false;
    let pointer_key = random_key();
    let result: anyhow::Result<()> = async {
        while !stop {
            tokio::select! {
                r = capture.read(&mut records) => r?,
                _ = sigint.recv() => stop = true,
                _ = sigterm.recv() => stop = true,
                _ = &mut sleep => stop = true,
                _ = flush_tick.tick() => pipeline.flush()?,
                _ = drain_tick.tick() => capture.read_now(&mut records),
            }
            if stop {
                capture.read_now(&mut records);
            }
            for record in records.drain(..) {
                match wire::parse(&record, pointer_key) {
                    Ok(chunk) => {
                        if !pipeline.push(&chunk)? {
                            stop = true;
                            break;
                        }
                    }
                    Err(_) => pipeline.stats.malformed_records += 1,
                }
            }
            if is_tty {
                pipeline.flush()?;
            }
        }
        Ok(())
    }
    .await;
    let finished = pipeline.finish(monotonic_now_ns());
    if !config.args.quiet {
        if let Ok(drops) = capture.drop_counters() {
            pipeline.stats.lost_records = drops.lost_records;
            pipeline.stats.lost_bytes = drops.lost_bytes;
            pipeline.stats.missed_entries = drops.missed_entries;
        }
        eprintln!("{}", pipeline.stats.summary());
    }
    result?;
    finished?;
    Ok(())
}

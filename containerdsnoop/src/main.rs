//! containerdsnoop's entry point: resolve the flags into a [`Config`], open the source it names
//! (the live capture or a capture file), drive it through the pipeline the config describes
//! until the source ends or `-n` is reached, and map errors to exit codes (a closed pipe
//! exits 0).

use std::{io, process::ExitCode};

use anyhow::Context as _;
use clap::Parser as _;
use containerdsnoop::{
    btf,
    capture::{CaptureConfig, live::LiveSource},
    cli::{Args, Config, Input},
    containers,
    selection::{Selection, discover::OpenConnection, tracker::Update},
};
use containerdsnoop_decode::{
    escape::escape_str,
    output::time::Clock,
    pipeline::Pipeline,
    source::{Event, FileSource, Source, Status},
};

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
            let text = escape_str(&record.args().to_string());
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
    match &config.input {
        Input::File(path) => {
            let source = FileSource::open(path)
                .map_err(io::Error::from)
                .with_context(|| format!("-r {path}"))?;
            // Capture files carry wall-clock times already.
            let pipeline = config.pipeline(Clock::wall())?;
            let path = path.clone();
            drive(&config, source, pipeline).map_err(|e| e.context(format!("-r {path}")))
        }
        Input::VerifyOnly => {
            let verified =
                containerdsnoop::capture::verify_all(&capture_config(&config, Vec::new())?)?;
            let loaded = verified.programs;
            eprintln!("verified {} programs: {}", loaded.len(), loaded.join(", "));
            if let Some(skipped) = verified.skipped {
                eprintln!("not loaded: {skipped}");
            }
            Ok(())
        }
        Input::Live => trace(&config),
    }
}

/// What to load and attach; `initial` are the socket files and directories selected at start.
fn capture_config(config: &Config, initial: Vec<Update>) -> anyhow::Result<CaptureConfig> {
    Ok(CaptureConfig {
        backend: config.backend,
        patterns: config.patterns.clone(),
        initial,
        max_call_bytes: config.max_call_bytes,
        ring_bytes: config.ring_bytes,
        layout: btf::kernel_layout_from_sysfs().context("reading kernel structure layout")?,
    })
}

/// Starts the live capture, says what it traces, and drives it.
fn trace(config: &Config) -> anyhow::Result<()> {
    let (selection, initial) = Selection::start(config.selectors.clone());
    let capture_config = capture_config(config, initial)?;
    let mut pipeline = config.pipeline(Clock::now())?;
    // Before attaching: a connection opened after this point is seen from its first byte (or
    // recognised by the decoder if it races the attach), never mislabelled as pre-existing.
    let open = containerdsnoop::selection::discover::open_connections(
        &selection.current_files(),
        &selection.abstract_patterns(),
    );
    let report = selection.report(!config.explicit_sockets);
    let source = LiveSource::start(&capture_config, config.duration, selection)?;
    if let Some(reason) = &source.capture().fallback_reason {
        eprintln!(
            "containerdsnoop: kprobe backend unavailable ({reason}); using the tracepoint backend"
        );
    }
    if let Some(reason) = &source.capture().close_unavailable {
        eprintln!(
            "containerdsnoop: connection ends are not seen as they happen ({reason}); open calls \
             end when a socket identity is reused or the tracer stops"
        );
    }
    for line in report {
        eprintln!("containerdsnoop: {}", escape_str(&line));
    }
    report_open_connections(open, &mut pipeline);
    // Every program is attached and every map open: drop what the running tracer no longer
    // needs (see privileges.rs for what remains and why).
    privileges::drop_after_attach(|| source.capture().drop_counters().map(|_| ()));
    // After the drop: capabilities are per thread, and the lookup thread needs none.
    if config.attributes_containers() {
        let runtimes = containers::runtime_sockets(&containers::traced_files(&config.selectors));
        pipeline.set_attributor(Box::new(containers::LiveAttributor::start(runtimes)));
    }
    eprintln!(
        "Tracing {} with {} backend... Ctrl-C to end.",
        config.describe_sockets(),
        source.capture().backend
    );
    drive(config, source, pipeline)
}

/// The one loop, for every source: batches into the pipeline until the source ends or `-n` is
/// reached; then the open calls end, every sink finishes (even after an error, so that the
/// export is a valid file), and the summary is printed.
fn drive<S>(config: &Config, mut source: S, mut pipeline: Pipeline) -> anyhow::Result<()>
where
    S: Source,
    S::Error: Into<anyhow::Error>,
{
    let result = pump(&mut source, &mut pipeline, config.flush_each_batch);
    let (ts_ns, end) = source.end();
    let finished = pipeline.finish(ts_ns, end);
    source.account(&mut pipeline.stats);
    if !config.quiet {
        eprintln!("{}", pipeline.stats.summary());
    }
    result?;
    finished?;
    Ok(())
}

fn pump<S>(source: &mut S, pipeline: &mut Pipeline, flush_each_batch: bool) -> anyhow::Result<()>
where
    S: Source,
    S::Error: Into<anyhow::Error>,
{
    let mut batch = Vec::new();
    loop {
        let status = source.next_batch(&mut batch).map_err(Into::into)?;
        for event in &batch {
            match *event {
                Event::Chunk(ref chunk) => {
                    if !pipeline.push(chunk)? {
                        return Ok(());
                    }
                }
                Event::Closed {
                    ts_ns,
                    sock_id,
                    peer_id,
                } => pipeline.close_connection(ts_ns, sock_id, peer_id)?,
            }
        }
        source.recycle(&mut batch);
        match status {
            Status::Ended => return Ok(()),
            Status::Quiet => pipeline.flush()?,
            Status::More if flush_each_batch => pipeline.flush()?,
            Status::More => {}
        }
    }
}

/// Tells the user which connections were open before the tracer (decoded in late-join mode),
/// and marks them so in the pipeline.
fn report_open_connections(open: io::Result<Vec<OpenConnection>>, pipeline: &mut Pipeline) {
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

//! Command-line flags ([`Args`], what the user typed) and their resolution, in one place, into
//! a [`Config`] (what the run does): which source, which sinks with which widths, redaction,
//! the filter and the limit. Nothing downstream looks at a flag again.

use std::{
    io::{self, IsTerminal as _, Write},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, Parser, ValueEnum};
use containerdsnoop_common::{MAX_PATTERNS, PathPattern};
use containerdsnoop_decode::{
    attribution::PodSelector,
    output::{
        filter::{Filter, MethodPattern},
        json::JsonPrinter,
        pcap::PcapSink,
        raw::{RawFormat, RawPrinter},
        rows::RowKind,
        sink::{Renderer, Sink},
        table::TablePrinter,
        time::Clock,
    },
    pcap::PcapWriter,
    pipeline::{Pipeline, Plan, Unit},
    schema::{RenderOptions, Schema},
};

use crate::capture::BackendChoice;
use crate::selection::{DEFAULT_SOCKETS, Selector, parse_selector};

/// Stdout: line-buffered on a terminal, block-buffered into a pipe or file.
fn stdout() -> Box<dyn Write> {
    let stdout = io::stdout();
    if stdout.is_terminal() {
        Box::new(stdout)
    } else {
        Box::new(io::BufWriter::with_capacity(64 * 1024, stdout))
    }
}

/// The default `--ring-buffer-mib`, chosen from `cargo xtask bench` (docs/benchmarks.md): in
/// the same run, 16 MiB held the same lossless rate as 64 MiB (about 500 MB/s of bulk writes
/// on the bench machine; the drain, not the ring, is the limit), and 64 MiB cost 96 MB more RSS
/// (the ring is mapped twice and resident).
pub const DEFAULT_RING_MIB: u32 = 16;

/// Trace gRPC, ttrpc and HTTP traffic on the unix sockets of container runtimes.
///
/// With no SOCKET, traces the sockets of common runtimes (containerd, its shims, dockerd,
/// CRI-O, k3s, k0s, microk8s).
#[derive(Debug, Parser)]
#[command(name = "containerdsnoop", version = VERSION, long_version = LONG_VERSION, about, long_about = None)]
pub struct Args {
    /// Socket paths to trace: exact (`/run/x.sock`), prefix (`/run/containerd/s/*`) or abstract
    /// (`@name`, `@prefix*`). A path selects the socket file it resolves to (device, inode and
    /// generation, so never another file later given its inode number), however its server
    /// spelled the name it bound; `/proc/PID/root/...` reaches other mount namespaces. Abstract
    /// names have no file: they are selected by name, whoever binds them.
    #[arg(value_name = "SOCKET")]
    pub sockets: Vec<String>,

    /// Only connections with this process at either end (repeatable).
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Only connections with a process of this name at either end (repeatable).
    #[arg(short, long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,

    /// Only calls whose method matches (glob with `*`; without `*`, a substring).
    #[arg(short, long = "method", value_name = "PATTERN")]
    pub methods: Vec<String>,

    /// Only rows of this type.
    #[arg(short = 't', long = "type", value_enum)]
    pub row_type: Option<RowType>,

    /// Show CONTAINER and PEER_CONTAINER columns: pod/container, else the short container id,
    /// else `-` (a host process).
    #[arg(short = 'C', long = "containers")]
    pub containers: bool,

    /// Only connections with this container at either end: a container id (or its prefix) or
    /// name (repeatable).
    #[arg(long = "container", value_name = "ID|NAME")]
    pub container_filters: Vec<String>,

    /// Only connections with a container of this pod at either end (repeatable).
    #[arg(long = "pod", value_name = "NAME[.NAMESPACE]")]
    pub pods: Vec<String>,

    /// Only calls that failed: a gRPC/ttrpc status other than OK, HTTP 400 and up, a reset
    /// (RST_STREAM), GOAWAY, or a lost connection. Each call is printed whole (its REQ, RESP
    /// and END rows) when it ends; calls still open when tracing stops are not printed. `-n`
    /// then counts failed calls. `-w` still writes everything captured.
    #[arg(short = 'x', long = "errors")]
    pub errors: bool,

    /// Print raw captured bytes instead of decoded messages.
    #[arg(long)]
    pub raw: bool,

    /// Output format: table or json (decoded); hex, string or json (with --raw).
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,

    /// Never cut the MESSAGE column.
    #[arg(short = 'l', long)]
    pub full: bool,

    /// Show credentials (registry auth, tokens) instead of `<redacted>`.
    #[arg(long)]
    pub no_redact: bool,

    /// Extra .proto files or directories to decode with (repeatable).
    #[arg(long = "proto", value_name = "FILE|DIR")]
    pub protos: Vec<PathBuf>,

    /// Extra compiled FileDescriptorSet files (protoc -o) to decode with (repeatable).
    #[arg(long = "descriptor-set", value_name = "FILE")]
    pub descriptor_sets: Vec<PathBuf>,

    /// Also write what is captured to FILE as pcapng (`-` for stdout, which then carries only
    /// the capture): each unix connection as a synthetic TCP connection that stock Wireshark
    /// decodes (gRPC: `-d tcp.port==50051,http2`). `-p` and `-c` select its records too.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<String>,

    /// Decode a pcap/pcapng file instead of tracing (our exports, or tcpdump captures of
    /// cleartext gRPC, ttrpc or HTTP/1.1 over TCP); needs no root.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<String>,

    /// Capture backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,

    /// Stop after this many rows (records with --raw, failed calls with -x).
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Most bytes captured per send call; the rest is reported as truncated.
    #[arg(long, value_name = "BYTES", default_value_t = containerdsnoop_common::DEFAULT_MAX_CALL_BYTES)]
    pub max_call_bytes: u32,

    /// Ring buffer size in MiB (a power of two). It is kernel memory, mapped twice into the
    /// tracer (twice its size in RSS).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_RING_MIB)]
    pub ring_buffer_mib: u32,

    /// Do not print the summary on exit.
    #[arg(short, long)]
    pub quiet: bool,

    /// Load (verify) every eBPF program of both backends, attach nothing, and exit.
    #[arg(long, hide = true)]
    pub load_only: bool,

    /// Print the man page or a shell completion script (generated from these flags) and exit.
    #[arg(long, value_enum, value_name = "KIND", hide = true)]
    pub generate: Option<Generate>,
}

/// `-V`: the version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("CONTAINERDSNOOP_GIT_COMMIT"),
    ")"
);

/// `--version`: also what the kernel must offer, and which privileges the tracer uses.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("CONTAINERDSNOOP_GIT_COMMIT"),
    ")\n",
    "kernel: Linux >= 5.8 with BTF (/sys/kernel/btf/vmlinux) and the BPF ring buffer;\n",
    "        kprobe backend: CONFIG_KPROBE_EVENTS; tracepoint backend: Linux >= 6.3\n",
    "        (sock:sock_send_length) and tracefs\n",
    "privileges: CAP_BPF + CAP_PERFMON (or root), dropped once the programs are attached"
);

/// `--generate`: what to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page (roff).
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
}

/// The flag definitions as a clap `Command`: the man page and completions are made from it.
pub fn command() -> clap::Command {
    Args::command()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowType {
    Req,
    Resp,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Hex,
    String,
}

/// What stdout is, which decides line widths and flushing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminal {
    pub is_terminal: bool,
    /// Columns, when stdout is a terminal that says.
    pub width: Option<usize>,
}

impl Terminal {
    /// Asks the kernel about fd 1.
    pub fn stdout() -> Terminal {
        let is_terminal = io::stdout().is_terminal();
        Terminal {
            is_terminal,
            width: if is_terminal { terminal_width() } else { None },
        }
    }
}

/// The terminal's width in columns, when stdout is a terminal.
fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize struct we own; fd 1 is stdout.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// The printer on stdout, fully resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Printer {
    /// The table, its MESSAGE column cut to fit `width` columns (None: never cut).
    Table {
        width: Option<usize>,
        /// `-C`: the container columns.
        containers: bool,
    },
    Json,
    Raw(RawFormat),
}

/// Where records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Trace the selected sockets live.
    Live,
    /// `-r FILE`: decode a capture file.
    File(String),
    /// `--load-only`: verify the eBPF programs and exit.
    VerifyOnly,
}

/// Everything a run does, derived from the flags in one place: main only wires the source to
/// the pipeline this describes.
pub struct Config {
    pub input: Input,
    pub socket_names: Vec<String>,
    /// Whether the sockets were named on the command line (else the runtime defaults).
    pub explicit_sockets: bool,
    pub selectors: Vec<Selector>,
    /// The kernel-side name patterns, one per selector (same index).
    pub patterns: Vec<PathPattern>,
    pub backend: BackendChoice,
    pub max_call_bytes: u32,
    pub ring_bytes: u32,
    pub duration: Option<Duration>,
    /// No summary on exit (`-q`).
    pub quiet: bool,
    /// The printer on stdout; None when stdout carries the pcap export (`-w -`).
    pub printer: Option<Printer>,
    /// `-w`: the pcapng export's path (`-` for stdout).
    pub pcap: Option<String>,
    /// What reaches the sinks (`--raw`, the filter) and when to stop (`-n`).
    pub plan: Plan,
    /// Show credentials instead of `<redacted>` (`--no-redact`).
    pub redact: bool,
    pub protos: Vec<PathBuf>,
    pub descriptor_sets: Vec<PathBuf>,
    /// Flush after every batch: a person is watching the printer.
    pub flush_each_batch: bool,
}

impl Config {
    /// Validates `args` against what stdout is now.
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        Config::resolve(args, Terminal::stdout())
    }

    /// Validates `args`; `terminal` says what stdout is.
    pub fn resolve(args: Args, terminal: Terminal) -> anyhow::Result<Config> {
        let socket_names: Vec<String> = if args.sockets.is_empty() {
            DEFAULT_SOCKETS.iter().map(|s| s.to_string()).collect()
        } else {
            args.sockets.clone()
        };
        if socket_names.len() > MAX_PATTERNS as usize {
            bail!("at most {MAX_PATTERNS} socket paths can be traced at once");
        }
        let selectors = socket_names
            .iter()
            .map(|s| parse_selector(s).with_context(|| format!("socket argument {s:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let patterns = selectors.iter().map(Selector::kernel_pattern).collect();
        if !args.ring_buffer_mib.is_power_of_two() || args.ring_buffer_mib > 1024 {
            bail!("--ring-buffer-mib must be a power of two up to 1024");
        }
        if args.max_call_bytes == 0 {
            bail!("--max-call-bytes must be positive");
        }
        if args.read.is_some() && args.write.is_some() {
            bail!("-r and -w cannot be used together");
        }
        if args.errors && args.raw {
            bail!("-x selects decoded calls; --raw decodes nothing (use -x without --raw)");
        }
        let duration = match args.duration {
            Some(s) if !(s.is_finite() && s >= 0.0) => {
                bail!("--duration must be a number of seconds")
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        let format = match (args.raw, args.output) {
            (false, Some(OutputFormat::Hex | OutputFormat::String)) => {
                bail!("-o hex and -o string go with --raw (decoded output: -o table or -o json)")
            }
            (true, Some(OutputFormat::Table)) => {
                bail!("--raw prints hex, string or json, not a table")
            }
            (true, Some(OutputFormat::Json)) => Printer::Raw(RawFormat::Json),
            (true, Some(OutputFormat::String)) => Printer::Raw(RawFormat::String),
            (true, _) => Printer::Raw(RawFormat::Hex),
            (false, Some(OutputFormat::Json)) => Printer::Json,
            (false, _) => Printer::Table {
                width: if args.full { None } else { terminal.width },
                containers: args.containers,
            },
        };
        // `-w -`: stdout carries the capture file, so nothing else may be printed there.
        let pcap_on_stdout = args.write.as_deref() == Some("-");
        let printer = (!pcap_on_stdout).then_some(format);
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
            containers: args.container_filters.clone(),
            pods: args.pods.iter().map(|p| PodSelector(p.clone())).collect(),
        };
        let plan = Plan {
            unit: if args.raw { Unit::Records } else { Unit::Rows },
            filter,
            limit: args.count,
            failed_only: args.errors,
        };
        let input = match (&args.read, args.load_only) {
            (_, true) => Input::VerifyOnly,
            (Some(path), false) => Input::File(path.clone()),
            (None, false) => Input::Live,
        };
        Ok(Config {
            input,
            explicit_sockets: !args.sockets.is_empty(),
            socket_names,
            selectors,
            patterns,
            backend: args.backend,
            max_call_bytes: args.max_call_bytes,
            ring_bytes: args.ring_buffer_mib << 20,
            duration,
            quiet: args.quiet,
            flush_each_batch: terminal.is_terminal && printer.is_some(),
            printer,
            pcap: args.write,
            plan,
            redact: !args.no_redact,
            protos: args.protos,
            descriptor_sets: args.descriptor_sets,
        })
    }

    /// The pipeline this configuration describes: the schema (embedded plus `--proto` and
    /// `--descriptor-set`), the printer on stdout and the pcap export as sinks, and the plan.
    /// `clock` maps the source's timestamps to wall-clock time.
    pub fn pipeline(&self, clock: Clock) -> anyhow::Result<Pipeline> {
        let mut schema = Schema::embedded().context("loading the embedded protobuf schema")?;
        if !self.protos.is_empty() {
            schema.add_proto_paths(&self.protos).context("--proto")?;
        }
        for path in &self.descriptor_sets {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            schema
                .add_descriptor_set(&bytes)
                .with_context(|| format!("--descriptor-set {}", path.display()))?;
        }
        let opts = RenderOptions {
            redact: self.redact,
            ..RenderOptions::default()
        };
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(printer) = self.printer {
            let out = stdout();
            sinks.push(match printer {
                Printer::Table { width, containers } => {
                    let table = TablePrinter::new(out, clock, width);
                    Box::new(if containers {
                        table.with_containers()
                    } else {
                        table
                    })
                }
                Printer::Json => Box::new(JsonPrinter::new(out, clock)),
                Printer::Raw(format) => Box::new(RawPrinter::new(out, format, clock)),
            });
        }
        if let Some(path) = &self.pcap {
            // Through io::Error, whose kind survives: a closed pipe at start exits 0 too.
            let writer = PcapWriter::create(path)
                .map_err(io::Error::from)
                .with_context(|| format!("-w {path}"))?;
            sinks.push(Box::new(PcapSink::new(writer, clock)));
        }
        Ok(Pipeline::new(
            Renderer::new(schema, opts),
            self.plan.clone(),
            sinks,
        ))
    }

    /// Whether rows or records need the containers at their ends: decoded output shows them;
    /// `--raw` only needs them for `-w` comments or `--container`/`--pod`.
    pub fn attributes_containers(&self) -> bool {
        let filter = &self.plan.filter;
        self.plan.unit == Unit::Rows
            || self.pcap.is_some()
            || !filter.containers.is_empty()
            || !filter.pods.is_empty()
    }

    /// What `Tracing <what> with ...` names.
    pub fn describe_sockets(&self) -> String {
        if !self.explicit_sockets {
            format!("default runtime sockets ({})", self.socket_names.join(", "))
        } else {
            self.socket_names.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(argv: &[&str]) -> anyhow::Result<Config> {
        let mut full = vec!["containerdsnoop"];
        full.extend_from_slice(argv);
        Config::resolve(Args::try_parse_from(full)?, PIPE)
    }

    const PIPE: Terminal = Terminal {
        is_terminal: false,
        width: None,
    };

    fn on_terminal(argv: &[&str]) -> Config {
        let mut full = vec!["containerdsnoop"];
        full.extend_from_slice(argv);
        let terminal = Terminal {
            is_terminal: true,
            width: Some(120),
        };
        Config::resolve(Args::try_parse_from(full).expect("flags"), terminal).expect("config")
    }

    #[test]
    fn defaults_to_runtime_sockets() {
        let c = config(&[]).expect("config");
        assert_eq!(c.patterns.len(), DEFAULT_SOCKETS.len());
        assert!(
            c.describe_sockets()
                .contains("/run/containerd/containerd.sock")
        );
        assert_eq!(c.ring_bytes, DEFAULT_RING_MIB << 20);
    }

    #[test]
    fn rejects_mismatched_formats() {
        assert!(config(&["-o", "hex"]).is_err());
        assert!(config(&["--raw", "-o", "table"]).is_err());
        assert!(config(&["--raw", "-o", "hex"]).is_ok());
        assert!(config(&["--ring-buffer-mib", "3"]).is_err());
    }

    #[test]
    fn explicit_sockets_and_filters() {
        let c = config(&[
            "/tmp/a.sock",
            "@abs*",
            "-p",
            "1",
            "-p",
            "2",
            "-m",
            "Version",
        ])
        .expect("config");
        assert_eq!(c.patterns.len(), 2);
        assert_eq!(c.plan.filter.pids, vec![1, 2]);
        assert_eq!(c.plan.filter.methods.len(), 1);
        assert!(config(&["/a*b"]).is_err());
    }

    #[test]
    fn the_printer_is_resolved_from_format_terminal_and_width() {
        assert_eq!(
            on_terminal(&[]).printer,
            Some(Printer::Table {
                width: Some(120),
                containers: false
            })
        );
        assert_eq!(
            on_terminal(&["-l"]).printer,
            Some(Printer::Table {
                width: None,
                containers: false
            })
        );
        assert!(on_terminal(&[]).flush_each_batch);
        let piped = config(&[]).expect("config");
        assert_eq!(
            piped.printer,
            Some(Printer::Table {
                width: None,
                containers: false
            })
        );
        assert!(!piped.flush_each_batch);
        assert_eq!(
            config(&["-o", "json"]).expect("config").printer,
            Some(Printer::Json)
        );
        let raw = config(&["--raw", "-o", "string", "-n", "3"]).expect("config");
        assert_eq!(raw.printer, Some(Printer::Raw(RawFormat::String)));
        assert_eq!(raw.plan.unit, Unit::Records);
        assert_eq!(raw.plan.limit, Some(3));
        assert_eq!(
            config(&["--raw"]).expect("config").printer,
            Some(Printer::Raw(RawFormat::Hex))
        );
    }

    #[test]
    fn container_flags_are_resolved() {
        let c = config(&[
            "-C",
            "--container",
            "0123abc",
            "--container",
            "web",
            "--pod",
            "api.prod",
        ])
        .expect("config");
        assert_eq!(
            c.printer,
            Some(Printer::Table {
                width: None,
                containers: true
            })
        );
        assert_eq!(c.plan.filter.containers, vec!["0123abc", "web"]);
        assert_eq!(c.plan.filter.pods, vec![PodSelector("api.prod".into())]);
        assert!(!c.plan.filter.is_empty());
        let json = config(&["--containers", "-o", "json"]).expect("config");
        assert_eq!(
            json.printer,
            Some(Printer::Json),
            "JSON always carries containers"
        );
        assert!(json.attributes_containers());
        assert!(!config(&["--raw"]).expect("config").attributes_containers());
        assert!(
            config(&["--raw", "--pod", "x"])
                .expect("config")
                .attributes_containers()
        );
    }

    #[test]
    fn failed_calls_only_needs_decoding() {
        let c = config(&["-x", "-n", "2"]).expect("config");
        assert!(c.plan.failed_only);
        assert_eq!(c.plan.limit, Some(2));
        assert!(
            config(&["--errors", "-o", "json"])
                .expect("config")
                .plan
                .failed_only
        );
        assert!(!config(&[]).expect("config").plan.failed_only);
        let err = config(&["-x", "--raw"])
            .err()
            .expect("-x with --raw is refused");
        assert!(err.to_string().contains("--raw"), "{err}");
    }

    #[test]
    fn pcap_on_stdout_is_the_only_output() {
        let c = on_terminal(&["-w", "-", "-o", "json"]);
        assert_eq!(c.printer, None);
        assert_eq!(c.pcap.as_deref(), Some("-"));
        assert!(!c.flush_each_batch, "stdout is the pcap's, not a person's");
        let beside = config(&["-w", "/tmp/x.pcapng"]).expect("config");
        assert!(beside.printer.is_some());
        assert!(config(&["-w", "-", "-r", "x.pcapng"]).is_err());
    }

    #[test]
    fn inputs_and_filters_are_resolved() {
        assert_eq!(config(&[]).expect("config").input, Input::Live);
        assert_eq!(
            config(&["-r", "x.pcapng"]).expect("config").input,
            Input::File("x.pcapng".into())
        );
        let c = config(&["-t", "end", "-c", "ctr", "--no-redact"]).expect("config");
        assert_eq!(c.plan.filter.kinds, vec![RowKind::End]);
        assert_eq!(c.plan.filter.comms, vec!["ctr".to_string()]);
        assert_eq!(c.plan.unit, Unit::Rows);
        assert!(!c.redact);
        assert!(config(&["--duration", "-1"]).is_err());
        assert_eq!(
            config(&["--duration", "1.5"]).expect("config").duration,
            Some(Duration::from_millis(1500))
        );
    }
}

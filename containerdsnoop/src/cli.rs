//! Command-line flags, and their validation into a [`Config`] in one place.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, Parser, ValueEnum};
use containerdsnoop_common::{MAX_PATTERNS, PathPattern};

use crate::paths::{DEFAULT_SOCKETS, parse_pattern};

/// Trace gRPC, ttrpc and HTTP traffic on the unix sockets of container runtimes.
///
/// With no SOCKET, traces the sockets of common runtimes (containerd, its shims, dockerd,
/// CRI-O, k3s, k0s, microk8s).
#[derive(Debug, Parser)]
#[command(name = "containerdsnoop", version = VERSION, long_version = LONG_VERSION, about, long_about = None)]
pub struct Args {
    /// Socket paths to trace: exact (`/run/x.sock`), prefix (`/run/containerd/s/*`) or abstract
    /// (`@name`, `@prefix*`). A socket matches when its own or its peer's address matches.
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

    /// Also write what is captured to FILE as pcapng (`-` for stdout): each unix connection as
    /// a synthetic TCP connection that stock Wireshark decodes (gRPC: `-d tcp.port==50051,http2`).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<String>,

    /// Decode a pcap/pcapng file instead of tracing (our exports, or tcpdump captures of
    /// cleartext gRPC, ttrpc or HTTP/1.1 over TCP); needs no root.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<String>,

    /// Capture backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: crate::capture::BackendChoice,

    /// Stop after this many rows (records with --raw).
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,

    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Most bytes captured per send call; the rest is reported as truncated.
    #[arg(long, value_name = "BYTES", default_value_t = containerdsnoop_common::DEFAULT_MAX_CALL_BYTES)]
    pub max_call_bytes: u32,

    /// Ring buffer size in MiB (a power of two).
    #[arg(long, value_name = "MIB", default_value_t = 64)]
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

/// Validated configuration.
pub struct Config {
    pub args: Args,
    pub socket_names: Vec<String>,
    pub patterns: Vec<PathPattern>,
    pub ring_bytes: u32,
}

impl Config {
    pub fn from_args(args: Args) -> anyhow::Result<Config> {
        let socket_names: Vec<String> = if args.sockets.is_empty() {
            DEFAULT_SOCKETS.iter().map(|s| s.to_string()).collect()
        } else {
            args.sockets.clone()
        };
        if socket_names.len() > MAX_PATTERNS as usize {
            bail!("at most {MAX_PATTERNS} socket paths can be traced at once");
        }
        let patterns = socket_names
            .iter()
            .map(|s| parse_pattern(s).with_context(|| format!("socket argument {s:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !args.ring_buffer_mib.is_power_of_two() || args.ring_buffer_mib > 1024 {
            bail!("--ring-buffer-mib must be a power of two up to 1024");
        }
        if args.max_call_bytes == 0 {
            bail!("--max-call-bytes must be positive");
        }
        match (args.raw, args.output) {
            (false, Some(OutputFormat::Hex | OutputFormat::String)) => {
                bail!("-o hex and -o string go with --raw (decoded output: -o table or -o json)")
            }
            (true, Some(OutputFormat::Table)) => {
                bail!("--raw prints hex, string or json, not a table")
            }
            _ => {}
        }
        if args.read.is_some() && args.write.is_some() {
            bail!("-r and -w cannot be used together");
        }
        let ring_bytes = args.ring_buffer_mib << 20;
        Ok(Config {
            args,
            socket_names,
            patterns,
            ring_bytes,
        })
    }

    /// Selected filesystem paths that exist now (a prefix pattern counts when its directory
    /// exists); abstract names cannot be checked and count as present.
    pub fn existing_sockets(&self) -> Vec<&str> {
        self.socket_names
            .iter()
            .filter(|name| {
                if name.starts_with('@') {
                    return true;
                }
                match name.strip_suffix('*') {
                    Some(prefix) => std::path::Path::new(prefix)
                        .parent()
                        .is_some_and(|dir| dir.is_dir()),
                    None => std::path::Path::new(name.as_str()).exists(),
                }
            })
            .map(String::as_str)
            .collect()
    }

    /// What `Tracing <what> with ...` names.
    pub fn describe_sockets(&self) -> String {
        if self.args.sockets.is_empty() {
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
        Config::from_args(Args::try_parse_from(full)?)
    }

    #[test]
    fn defaults_to_runtime_sockets() {
        let c = config(&[]).expect("config");
        assert_eq!(c.patterns.len(), DEFAULT_SOCKETS.len());
        assert!(
            c.describe_sockets()
                .contains("/run/containerd/containerd.sock")
        );
        assert_eq!(c.ring_bytes, 64 << 20);
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
        assert_eq!(c.args.pids, vec![1, 2]);
        assert!(config(&["/a*b"]).is_err());
    }
}

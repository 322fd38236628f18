//! A test peer for containerdsnoop's end-to-end tests: it produces unix socket traffic of known
//! content and known syscall shape, and speaks CRI to containerd, so the tests can compare what
//! the tracer saw with what was really sent.

mod bench;
mod churn;
mod cri;
mod dgram;
mod exchange;
mod hold;
mod prng;
mod shape;
mod util;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "containerdsnoop-testpeer", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Selected sockets and directories re-created among thousands of unselected ones.
    Churn(churn::Args),
    /// A unix stream connection whose ends send pseudo-random bytes with a chosen syscall shape.
    Exchange(exchange::Args),
    /// A connected pair of unix datagram sockets.
    Dgram(dgram::Args),
    /// A CRI runtime.v1 client.
    Cri(cri::Args),
    /// The peers of `cargo xtask bench`.
    Bench(bench::Args),
    /// An HTTP/1.1 server that answers late, never, or with an endless stream.
    HoldServer(hold::ServerArgs),
    /// An HTTP/1.1 client that sends one request, then closes, exits or waits to be killed.
    HoldClient(hold::ClientArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Churn(a) => churn::run(a),
        Cmd::Exchange(a) => exchange::run(a),
        Cmd::Dgram(a) => dgram::run(a),
        Cmd::Cri(a) => cri::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::HoldServer(a) => hold::run_server(a),
        Cmd::HoldClient(a) => hold::run_client(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerdsnoop-testpeer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

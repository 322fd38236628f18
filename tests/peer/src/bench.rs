//! `bench`: the peers `cargo xtask bench` drives. A CRI `ImageService` on a unix socket
//! (`serve`), a unary client that counts calls per second (`unary`), a generator of a large
//! recorded gRPC capture (`gen`), a rate-limited bulk sender (`bulk`) and many idle gRPC
//! connections (`conns`).

mod bulk;
mod conns;
mod generate;
mod pcap;
mod record;
mod service;
mod unary;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Serve the benchmark ImageService on a unix socket until killed.
    Serve(service::Args),
    /// Sequential ImageStatus calls for a while; prints {"calls","secs"} on stdout.
    Unary(unary::Args),
    /// Record real tonic gRPC traffic into a `--raw -o json` capture and a pcap.
    Gen(generate::Args),
    /// Send bytes over a unix socket at a fixed rate; prints {"sent_bytes","secs"}.
    Bulk(bulk::Args),
    /// Open many gRPC connections, one call each, and hold them open.
    Conns(conns::Args),
}

pub fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Serve(a) => service::run(a),
        Cmd::Unary(a) => unary::run(a),
        Cmd::Gen(a) => generate::run(a),
        Cmd::Bulk(a) => bulk::run(a),
        Cmd::Conns(a) => conns::run(a),
    }
}

/// A tonic channel to a unix socket (the URI is required by tonic but unused).
async fn channel(path: &std::path::Path) -> Result<tonic::transport::Channel> {
    use anyhow::Context as _;
    let path = path.to_path_buf();
    let shown = path.display().to_string();
    tonic::transport::Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .with_context(|| format!("connect to {shown}"))
}

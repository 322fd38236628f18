//! `bench conns`: many gRPC connections to the benchmark server, one call on each, held open:
//! the connection table of a tracer watching a busy node.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The benchmark server's socket.
    #[arg(long)]
    path: PathBuf,
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Seconds to hold them open after the last call.
    #[arg(long, default_value_t = 5.0)]
    hold_secs: f64,
}

/// Raises the open-file soft limit to the hard one: two descriptors per connection in-process
/// exceed the usual 1024.
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(async {
        let mut clients = Vec::with_capacity(args.count);
        for i in 0..args.count {
            let mut c = ImageServiceClient::new(super::channel(&args.path).await?);
            c.image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: format!("registry.example.com/app-{i}:v1"),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .with_context(|| format!("ImageStatus on connection {i}"))?;
            clients.push(c);
        }
        println!("ready {}", clients.len());
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_secs_f64(args.hold_secs)).await;
        drop(clients);
        Ok(())
    })
}

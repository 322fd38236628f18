//! `bench unary`: one connection, one call at a time (kubelet's pattern), for a fixed time:
//! the traced workload of the overhead benchmark.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The benchmark server's socket.
    #[arg(long)]
    path: PathBuf,
    /// Seconds of measured calls.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds of unmeasured calls first (connection set-up, allocator warm-up).
    #[arg(long, default_value_t = 0.5)]
    warmup_secs: f64,
}

pub fn run(args: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(async {
        let mut client = ImageServiceClient::new(super::channel(&args.path).await?);
        let mut call = async |i: u64| -> Result<()> {
            client
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: format!("registry.example.com/app:v{}", i % 64),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .context("ImageStatus")?;
            Ok(())
        };
        let warm = Instant::now();
        let mut i = 0u64;
        while warm.elapsed() < Duration::from_secs_f64(args.warmup_secs) {
            call(i).await?;
            i += 1;
        }
        let start = Instant::now();
        let mut calls = 0u64;
        let limit = Duration::from_secs_f64(args.secs);
        while start.elapsed() < limit {
            // Check the clock every 16 calls: cheap enough, and the error is one call.
            for _ in 0..16 {
                call(i).await?;
                i += 1;
                calls += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{}", serde_json::json!({ "calls": calls, "secs": secs }));
        Ok(())
    })
}

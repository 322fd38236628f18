//! The benchmark server: CRI's `ImageService` (five methods, small enough to implement whole)
//! over tonic, answering from a made-up image store. `ListImages` with a filter image of
//! `bytes=N` answers with at least N bytes of images, which is how the capture generator asks
//! for 1 MiB messages.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use prost::Message as _;
use tonic::{Request, Response, Status};

use crate::util::remove_stale;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path of the listening socket (a stale one is removed first).
    #[arg(long)]
    path: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    super::conns::raise_nofile();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(async {
        remove_stale(&args.path)?;
        let listener = tokio::net::UnixListener::bind(&args.path)
            .with_context(|| format!("bind {}", args.path.display()))?;
        // The driver waits for this line before it starts clients.
        println!("ready");
        std::io::Write::flush(&mut std::io::stdout())?;
        serve(tokio_stream::wrappers::UnixListenerStream::new(listener)).await
    })
}

/// Serves the ImageService on every connection `incoming` yields, until it ends.
pub async fn serve<S, IO>(incoming: S) -> Result<()>
where
    S: tokio_stream::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tonic::transport::server::Connected
        + tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + Unpin
        + Send
        + 'static,
{
    // Big responses are at least 1 MiB; tonic's default limit is 4 MiB.
    let svc = ImageServiceServer::new(Images::default())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve_with_incoming(incoming)
        .await
        .context("serve")
}

#[derive(Default)]
pub struct Images {
    /// `ListImages` answers by size asked, built once.
    lists: Mutex<HashMap<usize, Arc<cri::ListImagesResponse>>>,
}

/// A plausible image: digests, tags, size, annotations, as containerd's CRI plugin returns.
pub fn image(i: usize) -> cri::Image {
    let digest = format!(
        "sha256:{:064x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c)
    );
    cri::Image {
        id: digest.clone(),
        repo_tags: vec![format!(
            "registry.example.com/team-{}/app-{i}:v1.{}",
            i % 17,
            i % 100
        )],
        repo_digests: vec![format!(
            "registry.example.com/team-{}/app-{i}@{digest}",
            i % 17
        )],
        size: 1_000_000 + (i as u64) * 4096,
        uid: Some(cri::Int64Value { value: 0 }),
        username: String::new(),
        spec: Some(cri::ImageSpec {
            image: digest,
            annotations: HashMap::from([(
                "io.kubernetes.cri.image-pinned".to_string(),
                "false".to_string(),
            )]),
            ..Default::default()
        }),
        pinned: i.is_multiple_of(5),
    }
}

impl Images {
    fn list(&self, min_bytes: usize) -> Arc<cri::ListImagesResponse> {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists
            .entry(min_bytes)
            .or_insert_with(|| {
                let mut r = cri::ListImagesResponse { images: Vec::new() };
                let mut len = 0;
                while len < min_bytes || r.images.is_empty() {
                    let img = image(r.images.len());
                    len += img.encoded_len() + 3;
                    r.images.push(img);
                }
                Arc::new(r)
            })
            .clone()
    }
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let asked = request
            .get_ref()
            .filter
            .as_ref()
            .and_then(|f| f.image.as_ref())
            .and_then(|s| s.image.strip_prefix("bytes="))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        Ok(Response::new((*self.list(asked)).clone()))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let r = request.get_ref();
        let name = r.image.as_ref().map_or("", |s| s.image.as_str());
        let n = name
            .bytes()
            .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
        let info = if r.verbose {
            HashMap::from([(
                "info".to_string(),
                format!(
                    r#"{{"chainID":"sha256:{n:064x}","imageSpec":{{"architecture":"amd64","os":"linux"}}}}"#
                ),
            )])
        } else {
            HashMap::new()
        };
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(image(n % 10_000)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let name = request
            .into_inner()
            .image
            .map(|s| s.image)
            .unwrap_or_default();
        Ok(Response::new(cri::PullImageResponse {
            image_ref: format!("sha256:{:064x}", name.len()),
        }))
    }

    async fn remove_image(
        &self,
        _request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(Status::not_found("no such image"))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Ok(Response::new(cri::ImageFsInfoResponse::default()))
    }
}

//! `cri`: a minimal CRI (`runtime.v1`) client over a unix socket, standing in for crictl, which
//! Debian does not ship.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The CRI socket (containerd's gRPC address).
    #[arg(long)]
    address: PathBuf,
    /// Deadline of each call.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    #[command(subcommand)]
    call: Call,
}

#[derive(Debug, clap::Subcommand)]
enum Call {
    /// RuntimeService/Version.
    Version,
    /// RuntimeService/ListContainers.
    ListContainers,
    /// RuntimeService/ListPodSandbox.
    ListPods,
    /// ImageService/ListImages.
    ListImages,
    /// RuntimeService/RunPodSandbox on the host network; prints the pod id.
    RunPodSandbox { name: String },
    /// RuntimeService/CreateContainer then StartContainer in the pod `pod_id` (made by
    /// run-pod-sandbox with `pod_name`); prints the container id.
    RunContainer {
        pod_id: String,
        pod_name: String,
        name: String,
        image: String,
        /// A read-only bind mount, `HOST:CONTAINER` (repeatable).
        #[arg(long = "mount")]
        mounts: Vec<String>,
        /// An environment variable, `NAME=VALUE` (repeatable).
        #[arg(long = "env")]
        envs: Vec<String>,
        /// The command and its arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// RuntimeService/StopPodSandbox then RemovePodSandbox.
    StopRemovePod { id: String },
    /// ImageService/ImageStatus.
    ImageStatus { reference: String },
    /// `runtime.v1alpha2` RuntimeService/Version then ImageService/ListImages (served by
    /// containerd 1.x only).
    V1alpha2,
}

pub fn run(args: Args) -> Result<()> {
    // One thread is plenty for one call at a time, and keeps the peer's thread list short.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(call(args))
}

async fn connect(args: &Args) -> Result<Channel> {
    let path = args.address.clone();
    // The URI is required by tonic but unused: every connection goes to the unix socket.
    Endpoint::try_from("http://[::]:50051")?
        .timeout(Duration::from_secs(args.timeout_secs))
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("connect to CRI at {}", args.address.display()))
}

async fn call(args: Args) -> Result<()> {
    let channel = connect(&args).await?;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut img = ImageServiceClient::new(channel.clone());
    match args.call {
        Call::V1alpha2 => {
            use k8s_cri::v1alpha2 as a2;
            let mut rt = a2::runtime_service_client::RuntimeServiceClient::new(channel.clone());
            let mut img = a2::image_service_client::ImageServiceClient::new(channel);
            let v = rt
                .version(a2::VersionRequest {
                    version: "v1alpha2".into(),
                })
                .await
                .context("v1alpha2 Version")?;
            print_json(v.get_ref())?;
            let l = img
                .list_images(a2::ListImagesRequest { filter: None })
                .await
                .context("v1alpha2 ListImages")?;
            print_json(l.get_ref())
        }
        Call::Version => {
            let r = rt
                .version(cri::VersionRequest {
                    version: "v1".into(),
                })
                .await
                .context("Version")?;
            print_json(r.get_ref())
        }
        Call::ListContainers => {
            let r = rt
                .list_containers(cri::ListContainersRequest { filter: None })
                .await
                .context("ListContainers")?;
            print_json(r.get_ref())
        }
        Call::ListPods => {
            let r = rt
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                .await
                .context("ListPodSandbox")?;
            print_json(r.get_ref())
        }
        Call::ListImages => {
            let r = img
                .list_images(cri::ListImagesRequest { filter: None })
                .await
                .context("ListImages")?;
            print_json(r.get_ref())
        }
        Call::ImageStatus { reference } => {
            let spec = cri::ImageSpec {
                image: reference,
                ..Default::default()
            };
            let r = img
                .image_status(cri::ImageStatusRequest {
                    image: Some(spec),
                    verbose: false,
                })
                .await
                .context("ImageStatus")?;
            print_json(r.get_ref())
        }
        Call::RunPodSandbox { name } => {
            let req = cri::RunPodSandboxRequest {
                config: Some(pod_config(&name)),
                runtime_handler: String::new(),
            };
            let r = rt.run_pod_sandbox(req).await.context("RunPodSandbox")?;
            println!("{}", r.get_ref().pod_sandbox_id);
            Ok(())
        }
        Call::RunContainer {
            pod_id,
            pod_name,
            name,
            image,
            mounts,
            envs,
            command,
        } => {
            let mounts = mounts
                .iter()
                .map(|m| {
                    let (host, container) = m.split_once(':').context("--mount HOST:CONTAINER")?;
                    Ok(cri::Mount {
                        host_path: host.to_string(),
                        container_path: container.to_string(),
                        readonly: true,
                        ..Default::default()
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let envs = envs
                .iter()
                .map(|e| {
                    let (key, value) = e.split_once('=').context("--env NAME=VALUE")?;
                    Ok(cri::KeyValue {
                        key: key.to_string(),
                        value: value.to_string(),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata { name, attempt: 0 }),
                image: Some(cri::ImageSpec {
                    image,
                    ..Default::default()
                }),
                command,
                envs,
                mounts,
                ..Default::default()
            };
            let created = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod_id,
                    config: Some(config),
                    sandbox_config: Some(pod_config(&pod_name)),
                })
                .await
                .context("CreateContainer")?;
            let id = created.get_ref().container_id.clone();
            rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .context("StartContainer")?;
            println!("{id}");
            Ok(())
        }
        Call::StopRemovePod { id } => {
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .context("StopPodSandbox")?;
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await
            .context("RemovePodSandbox")?;
            println!("{id}");
            Ok(())
        }
    }
}

/// The smallest pod config containerd 1.6 accepts: host network (there is no CNI on the test
/// machines), not privileged, no log directory. No hostname: a host-network pod shares the host's
/// UTS namespace and runc refuses to set one.
fn pod_config(name: &str) -> cri::PodSandboxConfig {
    let namespaces = cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Pod as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("{name}-uid"),
            namespace: "containerdsnoop".into(),
            attempt: 0,
        }),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                privileged: false,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!(
        "{}",
        serde_json::to_string(v).context("encode response as JSON")?
    );
    Ok(())
}

//! The lookup thread: finds which of the candidate sockets are containerd or dockerd, lists
//! their containers at start, follows containerd's new containers as they are created (so
//! that a container's first call is usually named), and answers the pipeline's questions
//! about ids it has not heard of. It runs its own current-thread tokio runtime, so the
//! capture's loop never waits for a runtime. Its connections are the tracer's own: the kernel
//! skips what the tracer sends, and the live source drops what is sent to it.
//!
//! A socket that cannot be reached, or answers something that is neither containerd's gRPC
//! nor dockerd's HTTP, costs one notice on stderr; rows then carry container ids only.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use containerdsnoop_decode::{
    attribution::{Container, RuntimeKind, cgroup::CgroupContainer},
    escape::escape_str,
};
use tokio::{sync::mpsc, time::timeout};

use super::{
    Directory, Known,
    containerd::{self, CALL_TIMEOUT},
    docker,
};

/// dockerd's namespace in containerd: docker's containers are dockerd's to name (containerd
/// knows them by id only), and their cgroups say docker, so they are asked about there.
const DOCKER_NAMESPACE: &str = "moby";

/// Questions queued for the lookup thread at most (each a container id).
const QUEUE: usize = 1024;

/// The default runtime sockets asked even when not traced.
const DEFAULT_RUNTIME_SOCKETS: &[&str] = &["/run/containerd/containerd.sock", "/run/docker.sock"];

/// Which sockets to ask about containers: the traced socket files that are named like a
/// containerd or dockerd socket (`containerd.sock`, `docker.sock`, k3s' and microk8s'
/// spellings), and the default runtime sockets when present. Other traced sockets (shims,
/// CRI-O, arbitrary servers) are never sent a probe.
pub fn runtime_sockets(traced: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = HashSet::new();
    let named_like_runtime = |p: &Path| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.ends_with(".sock") && (n.contains("containerd") || n.contains("docker"))
        })
    };
    let traced = traced.iter().filter(|p| named_like_runtime(p)).cloned();
    let defaults = DEFAULT_RUNTIME_SOCKETS
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists());
    for path in traced.chain(defaults) {
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if seen.insert(key) {
            out.push(path);
        }
    }
    out
}

/// A socket that answered as a runtime.
#[derive(Clone)]
enum Runtime {
    Containerd {
        socket: PathBuf,
        client: containerd::Client,
    },
    Docker(PathBuf),
}

/// Starts the thread; returns where to send ids to look up.
pub fn spawn(sockets: Vec<PathBuf>, directory: Directory) -> mpsc::Sender<CgroupContainer> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let started = std::thread::Builder::new()
        .name("containers".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("containerdsnoop: cannot look up containers: {e}");
                    return;
                }
            };
            runtime.block_on(run(sockets, directory, rx));
        });
    if let Err(e) = started {
        eprintln!("containerdsnoop: cannot look up containers: {e}");
    }
    tx
}

async fn run(
    sockets: Vec<PathBuf>,
    directory: Directory,
    mut questions: mpsc::Receiver<CgroupContainer>,
) {
    let mut runtimes = Vec::new();
    for socket in &sockets {
        match identify(socket).await {
            Ok(r) => runtimes.push(r),
            Err(e) => notice(socket, &e),
        }
    }
    // Creations are followed before the lists are taken, so that none falls between them.
    for r in &runtimes {
        match r {
            Runtime::Containerd { client, .. } => {
                tokio::spawn(follow_creations(client.clone(), directory.clone()));
            }
            Runtime::Docker(socket) => {
                let (socket, directory) = (socket.clone(), directory.clone());
                tokio::spawn(async move {
                    // A failed subscription leaves the lookups on demand (no second notice).
                    let _ = docker::watch_creations(&socket, |c| {
                        let id = c.id.clone();
                        remember(&directory, &id, Known::Found(Arc::new(c)));
                    })
                    .await;
                });
            }
        }
    }
    for r in &runtimes {
        if let Err(e) = list(r, &directory).await {
            notice(&describe(r), &e);
        }
    }
    while let Some(question) = questions.recv().await {
        if directory
            .lock()
            .is_ok_and(|mut d| d.get_mut(&question.id).is_some())
        {
            continue;
        }
        if let Some(known) = ask(&mut runtimes, &question, &directory).await {
            remember(&directory, &question.id, known);
        }
    }
}

fn describe(r: &Runtime) -> PathBuf {
    match r {
        Runtime::Containerd { socket, .. } | Runtime::Docker(socket) => socket.clone(),
    }
}

/// One line on stderr for a runtime that cannot tell us about its containers.
fn notice(socket: &Path, e: &anyhow::Error) {
    eprintln!(
        "containerdsnoop: cannot ask {} about its containers ({}); rows name their container ids only",
        escape_str(&socket.to_string_lossy()),
        escape_str(&format!("{e:#}"))
    );
}

/// containerd answers `Namespaces/List`; dockerd answers `GET /_ping` (asked first when the
/// socket is named like docker's, so that dockerd is not sent an HTTP/2 preface).
async fn identify(socket: &Path) -> anyhow::Result<Runtime> {
    let docker_named = socket
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("docker"));
    if docker_named && let Ok(Ok(())) = timeout(CALL_TIMEOUT, docker::ping(socket)).await {
        return Ok(Runtime::Docker(socket.to_path_buf()));
    }
    let as_containerd = timeout(CALL_TIMEOUT, async {
        let client = containerd::Client::connect(socket).await?;
        client.namespaces().await?;
        anyhow::Ok(client)
    })
    .await;
    let containerd_error = match as_containerd {
        Ok(Ok(client)) => {
            return Ok(Runtime::Containerd {
                socket: socket.to_path_buf(),
                client,
            });
        }
        Ok(Err(e)) => e,
        Err(_) => anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}"),
    };
    match timeout(CALL_TIMEOUT, docker::ping(socket)).await {
        Ok(Ok(())) => Ok(Runtime::Docker(socket.to_path_buf())),
        _ => Err(containerd_error),
    }
}

/// Every container the runtime has now.
async fn list(r: &Runtime, directory: &Directory) -> anyhow::Result<()> {
    let containers = match r {
        Runtime::Containerd { client, .. } => {
            let mut all = Vec::new();
            for ns in timeout(CALL_TIMEOUT, client.namespaces()).await?? {
                if ns == DOCKER_NAMESPACE {
                    continue;
                }
                all.extend(timeout(CALL_TIMEOUT, client.containers(&ns)).await??);
            }
            all
        }
        Runtime::Docker(socket) => timeout(CALL_TIMEOUT, docker::containers(socket)).await??,
    };
    for c in containers {
        let id = c.id.clone();
        remember(directory, &id, Known::Found(Arc::new(c)));
    }
    Ok(())
}

/// Follows containerd's `/containers/create` events and looks each new container up.
async fn follow_creations(client: containerd::Client, directory: Directory) {
    let (tx, mut created) = mpsc::channel(QUEUE);
    let watch = client.clone();
    tokio::spawn(async move {
        // A failed subscription leaves the lookups on demand; listing already said whether
        // the runtime answers, so no second notice. A creation that does not fit the queue
        // is looked up when its container's process is first seen.
        let _ = watch
            .watch_creations(|ns, id| {
                let _ = tx.try_send((ns, id));
            })
            .await;
    });
    while let Some((ns, id)) = created.recv().await {
        if ns == DOCKER_NAMESPACE {
            continue;
        }
        if let Ok(Ok(Some(c))) = timeout(CALL_TIMEOUT, client.container(&ns, &id)).await {
            remember(&directory, &id, Known::Found(Arc::new(c)));
        }
    }
}

/// Asks the runtimes that may know `question`'s container; None when none could answer. A
/// containerd connection that failed (containerd restarted) is opened again for the next
/// question, with a new subscription to creations.
async fn ask(
    runtimes: &mut [Runtime],
    question: &CgroupContainer,
    directory: &Directory,
) -> Option<Known> {
    let mut answered = false;
    for r in runtimes {
        let answer = match (&*r, question.runtime) {
            (Runtime::Docker(socket), RuntimeKind::Docker | RuntimeKind::Kubernetes) => {
                timeout(CALL_TIMEOUT, docker::container_by_id(socket, &question.id)).await
            }
            (
                Runtime::Containerd { client, .. },
                RuntimeKind::Containerd | RuntimeKind::Kubernetes,
            ) => timeout(CALL_TIMEOUT, find_in_containerd(client, question)).await,
            _ => continue,
        };
        match answer {
            Ok(Ok(Some(c))) => return Some(Known::Found(Arc::new(c))),
            Ok(Ok(None)) => answered = true,
            // A refusal (a gRPC status) or a slow answer is no reason to reconnect; a broken
            // connection is (its event subscription ended with it, so no follower doubles up).
            Ok(Err(e)) if e.downcast_ref::<containerd::GrpcStatus>().is_none() => {
                if let Runtime::Containerd { socket, client } = r
                    && let Ok(Ok(fresh)) =
                        timeout(CALL_TIMEOUT, containerd::Client::connect(socket)).await
                {
                    *client = fresh;
                    tokio::spawn(follow_creations(client.clone(), directory.clone()));
                }
            }
            _ => {}
        }
    }
    answered.then_some(Known::Missing)
}

/// The container in the namespace its cgroup names, else in each namespace.
async fn find_in_containerd(
    client: &containerd::Client,
    question: &CgroupContainer,
) -> anyhow::Result<Option<Container>> {
    let namespaces = match &question.namespace {
        Some(ns) => vec![ns.clone()],
        None => client.namespaces().await?,
    };
    for ns in namespaces {
        if let Some(c) = client.container(&ns, &question.id).await? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Records what a runtime said. dockerd's answer wins over containerd's record of the same
/// container (in containerd's `moby` namespace, if asked by a cgroup that does not say
/// docker), which has no name.
fn remember(directory: &Directory, id: &str, known: Known) {
    let Ok(mut d) = directory.lock() else {
        return;
    };
    let keep_old = matches!(
        (d.get_mut(&id.to_string()), &known),
        (Some(Known::Found(old)), Known::Found(new))
            if old.runtime == Some(RuntimeKind::Docker) && new.runtime != Some(RuntimeKind::Docker)
    );
    if !keep_old {
        d.insert(id.to_string(), known);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_named_like_a_runtime_are_asked() {
        let traced: Vec<PathBuf> = [
            "/tmp/a/containerd.sock",
            "/tmp/a/containerd.sock",
            "/tmp/b/docker.sock",
            "/run/k3s/containerd/containerd.sock",
            "/tmp/a/containerd.sock.ttrpc",
            "/tmp/peer.sock",
            "/run/crio/crio.sock",
        ]
        .map(PathBuf::from)
        .to_vec();
        let asked = runtime_sockets(&traced);
        let traced_asked: Vec<&str> = asked
            .iter()
            .filter_map(|p| p.to_str())
            .filter(|p| !DEFAULT_RUNTIME_SOCKETS.contains(p))
            .collect();
        assert_eq!(
            traced_asked,
            [
                "/tmp/a/containerd.sock",
                "/tmp/b/docker.sock",
                "/run/k3s/containerd/containerd.sock"
            ]
        );
    }
}

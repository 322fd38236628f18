//! Asking containerd about its containers: `Namespaces/List`, `Containers/List` and `Get` (the
//! namespace goes in the `containerd-namespace` header), and `Events/Subscribe` to
//! `/containers/create`, as unary and server-streaming gRPC over h2 on containerd's own socket.
//! The few messages are declared here with prost's derive (field numbers as in the vendored
//! protos, checked by a test against the embedded descriptors): a full generated client would
//! be thousands of lines for five calls.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use bytes::{Buf as _, Bytes, BytesMut};
use containerdsnoop_decode::attribution::{Container, RuntimeKind};
use h2::client::SendRequest;
use prost::Message;
use tokio::net::UnixStream;

/// Longest answer accepted (a node with thousands of containers lists well under this).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// A runtime that does not answer within this is not waited for.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, PartialEq, Message)]
pub struct ListNamespacesRequest {
    #[prost(string, tag = "1")]
    pub filter: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ListNamespacesResponse {
    #[prost(message, repeated, tag = "1")]
    pub namespaces: Vec<Namespace>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Namespace {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct ListContainersRequest {
    #[prost(string, repeated, tag = "1")]
    pub filters: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<ContainerRecord>,
}

/// `containerd.services.containers.v1.Container`, the fields we show.
#[derive(Clone, PartialEq, Message)]
pub struct ContainerRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, string", tag = "2")]
    pub labels: HashMap<String, String>,
    #[prost(string, tag = "3")]
    pub image: String,
    /// The OCI runtime spec (JSON in an `Any`): CRI writes pod and container names into its
    /// annotations even when the kubelet's labels are absent.
    #[prost(message, optional, tag = "5")]
    pub spec: Option<AnyMessage>,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetContainerRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GetContainerResponse {
    #[prost(message, optional, tag = "1")]
    pub container: Option<ContainerRecord>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SubscribeRequest {
    #[prost(string, repeated, tag = "1")]
    pub filters: Vec<String>,
}

/// `containerd.types.Envelope` (`containerd.services.events.v1.Envelope` before 1.7).
#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub topic: String,
    #[prost(message, optional, tag = "4")]
    pub event: Option<AnyMessage>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct AnyMessage {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `containerd.events.ContainerCreate`.
#[derive(Clone, PartialEq, Message)]
pub struct ContainerCreate {
    #[prost(string, tag = "1")]
    pub id: String,
}

const LIST_NAMESPACES: &str = "/containerd.services.namespaces.v1.Namespaces/List";
const LIST_CONTAINERS: &str = "/containerd.services.containers.v1.Containers/List";
const GET_CONTAINER: &str = "/containerd.services.containers.v1.Containers/Get";
const SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";

/// One HTTP/2 connection to containerd.
#[derive(Clone)]
pub struct Client {
    send: SendRequest<Bytes>,
}

impl Client {
    pub async fn connect(path: &Path) -> anyhow::Result<Client> {
        let stream = UnixStream::connect(path).await?;
        let (send, conn) = h2::client::handshake(stream).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client { send })
    }

    pub async fn namespaces(&self) -> anyhow::Result<Vec<String>> {
        let r: ListNamespacesResponse = self
            .unary(LIST_NAMESPACES, None, &ListNamespacesRequest::default())
            .await?;
        Ok(r.namespaces.into_iter().map(|n| n.name).collect())
    }

    pub async fn containers(&self, namespace: &str) -> anyhow::Result<Vec<Container>> {
        let r: ListContainersResponse = self
            .unary(
                LIST_CONTAINERS,
                Some(namespace),
                &ListContainersRequest::default(),
            )
            .await?;
        Ok(r.containers
            .into_iter()
            .map(|c| container(namespace, c))
            .collect())
    }

    /// The container `id` in `namespace`; None when containerd says NotFound.
    pub async fn container(&self, namespace: &str, id: &str) -> anyhow::Result<Option<Container>> {
        let request = GetContainerRequest { id: id.to_string() };
        match self
            .unary::<_, GetContainerResponse>(GET_CONTAINER, Some(namespace), &request)
            .await
        {
            Ok(r) => Ok(r.container.map(|c| container(namespace, c))),
            Err(e) if e.downcast_ref::<GrpcStatus>().is_some_and(|s| s.0 == 5) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Subscribes to container creations: calls `created(namespace, id)` for each, until the
    /// stream ends or fails.
    pub async fn watch_creations(
        &self,
        mut created: impl FnMut(String, String),
    ) -> anyhow::Result<()> {
        let request = SubscribeRequest {
            filters: vec![r#"topic=="/containers/create""#.to_string()],
        };
        let mut body = self.start(SUBSCRIBE, None, &request).await?;
        let mut buf = BytesMut::new();
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
            buf.extend_from_slice(&data);
            while let Some(message) = next_message(&mut buf)? {
                let envelope = Envelope::decode(message)?;
                if let Some(event) = envelope.event {
                    let create = ContainerCreate::decode(event.value.as_slice())?;
                    created(envelope.namespace, create.id);
                }
            }
            if buf.len() > MAX_RESPONSE_BYTES {
                bail!("event larger than {MAX_RESPONSE_BYTES} bytes");
            }
        }
        Ok(())
    }

    /// Sends a request; returns the response body (after checking the response headers).
    async fn start(
        &self,
        method: &str,
        namespace: Option<&str>,
        request: &impl Message,
    ) -> anyhow::Result<h2::RecvStream> {
        let mut send = self.send.clone().ready().await?;
        let mut head = http::Request::builder()
            .method("POST")
            .uri(format!("http://containerd{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(ns) = namespace {
            head = head.header("containerd-namespace", ns);
        }
        let (response, mut stream) = send.send_request(head.body(())?, false)?;
        let message = request.encode_to_vec();
        let mut frame = Vec::with_capacity(5 + message.len());
        frame.push(0);
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        stream.send_data(frame.into(), true)?;
        let response = response.await?;
        if response.status() != http::StatusCode::OK {
            bail!("HTTP status {}", response.status());
        }
        // A trailers-only answer: the status is in the headers.
        if let Some(status) = grpc_status(response.headers())
            && status.0 != 0
        {
            return Err(status.into());
        }
        Ok(response.into_body())
    }

    async fn unary<Req: Message, Resp: Message + Default>(
        &self,
        method: &str,
        namespace: Option<&str>,
        request: &Req,
    ) -> anyhow::Result<Resp> {
        let mut body = self.start(method, namespace, request).await?;
        let mut buf = BytesMut::new();
        while let Some(data) = body.data().await {
            let data = data?;
            let _ = body.flow_control().release_capacity(data.len());
            buf.extend_from_slice(&data);
            if buf.len() > MAX_RESPONSE_BYTES {
                bail!("response larger than {MAX_RESPONSE_BYTES} bytes");
            }
        }
        if let Some(trailers) = body.trailers().await?
            && let Some(status) = grpc_status(&trailers).filter(|s| s.0 != 0)
        {
            return Err(status.into());
        }
        let message = next_message(&mut buf)?.context("no response message")?;
        Ok(Resp::decode(message)?)
    }
}

/// A non-OK gRPC status.
#[derive(Debug)]
pub struct GrpcStatus(pub u32, pub String);

impl std::fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gRPC status {}: {}", self.0, self.1)
    }
}

impl std::error::Error for GrpcStatus {}

fn grpc_status(headers: &http::HeaderMap) -> Option<GrpcStatus> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    Some(GrpcStatus(code, message.to_string()))
}

/// Takes one length-prefixed gRPC message off the front of `buf`, if complete.
fn next_message(buf: &mut BytesMut) -> anyhow::Result<Option<Bytes>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err(anyhow!(
            "compressed or malformed gRPC message (flag {})",
            buf[0]
        ));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_RESPONSE_BYTES {
        bail!("gRPC message of {len} bytes");
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some(buf.split_to(len).freeze()))
}

/// containerd's record as what rows show. CRI containers name their pod and container in the
/// kubelet's labels, and in the CRI plugin's annotations of their spec; the sandbox (pause)
/// container is `POD`, as the kubelet calls it.
fn container(namespace: &str, c: ContainerRecord) -> Container {
    let annotations = c
        .spec
        .as_ref()
        .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s.value).ok())
        .and_then(|mut spec| match spec.get_mut("annotations")?.take() {
            serde_json::Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default();
    let annotation = |k: &str| {
        annotations
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let label = |k: &str| c.labels.get(k).filter(|v| !v.is_empty()).cloned();
    let sandbox = label("io.cri-containerd.kind").as_deref() == Some("sandbox")
        || annotation("io.kubernetes.cri.container-type").as_deref() == Some("sandbox");
    let pod =
        label("io.kubernetes.pod.name").or_else(|| annotation("io.kubernetes.cri.sandbox-name"));
    let name = label("io.kubernetes.container.name")
        .or_else(|| annotation("io.kubernetes.cri.container-name"))
        .or_else(|| sandbox.then(|| "POD".to_string()));
    Container {
        pod_namespace: label("io.kubernetes.pod.namespace")
            .or_else(|| annotation("io.kubernetes.cri.sandbox-namespace")),
        pod,
        name,
        image: (!c.image.is_empty()).then(|| c.image.clone()),
        runtime: Some(RuntimeKind::Containerd),
        namespace: Some(namespace.to_string()),
        id: c.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-declared messages use the field numbers of the vendored protos.
    #[test]
    fn field_numbers_match_the_protos() {
        let pool = prost_reflect::DescriptorPool::decode(containerdsnoop_protos::DESCRIPTORS)
            .expect("descriptors");
        let check = |message: &str, fields: &[(&str, u32)]| {
            let m = pool
                .get_message_by_name(message)
                .unwrap_or_else(|| panic!("{message} in the protos"));
            for (name, number) in fields {
                let f = m
                    .get_field_by_name(name)
                    .unwrap_or_else(|| panic!("{message}.{name}"));
                assert_eq!(f.number(), *number, "{message}.{name}");
            }
        };
        let c = "containerd.services.containers.v1.";
        check(
            &format!("{c}Container"),
            &[("id", 1), ("labels", 2), ("image", 3), ("spec", 5)],
        );
        check(&format!("{c}GetContainerRequest"), &[("id", 1)]);
        check(&format!("{c}GetContainerResponse"), &[("container", 1)]);
        check(&format!("{c}ListContainersRequest"), &[("filters", 1)]);
        check(&format!("{c}ListContainersResponse"), &[("containers", 1)]);
        let n = "containerd.services.namespaces.v1.";
        check(&format!("{n}ListNamespacesRequest"), &[("filter", 1)]);
        check(&format!("{n}ListNamespacesResponse"), &[("namespaces", 1)]);
        check(&format!("{n}Namespace"), &[("name", 1)]);
        check(
            "containerd.services.events.v1.SubscribeRequest",
            &[("filters", 1)],
        );
        check("containerd.events.ContainerCreate", &[("id", 1)]);
        let envelope = [
            "containerd.types.Envelope",
            "containerd.services.events.v1.Envelope",
        ]
        .into_iter()
        .find(|m| pool.get_message_by_name(m).is_some())
        .expect("an Envelope message");
        check(envelope, &[("namespace", 2), ("topic", 3), ("event", 4)]);
    }

    #[test]
    fn cri_labels_name_pod_and_container() {
        let record = ContainerRecord {
            id: "abc".into(),
            labels: [
                ("io.kubernetes.pod.name", "web"),
                ("io.kubernetes.pod.namespace", "prod"),
                ("io.kubernetes.container.name", "agent"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            image: "docker.io/library/busybox:test".into(),
            spec: None,
        };
        let c = container("k8s.io", record);
        assert_eq!(c.label(), "web/agent");
        assert_eq!(c.pod_namespace.as_deref(), Some("prod"));
        assert_eq!(c.namespace.as_deref(), Some("k8s.io"));
        assert_eq!(c.image.as_deref(), Some("docker.io/library/busybox:test"));
    }

    /// Without the kubelet's labels (a CRI client that sets none), the CRI plugin's spec
    /// annotations name pod and container.
    #[test]
    fn cri_spec_annotations_name_pod_and_container() {
        let spec = serde_json::json!({"annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "caller",
            "io.kubernetes.cri.sandbox-name": "attr-pod",
            "io.kubernetes.cri.sandbox-namespace": "containerdsnoop",
        }});
        let record = ContainerRecord {
            id: "abc".into(),
            spec: Some(AnyMessage {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: serde_json::to_vec(&spec).expect("json"),
            }),
            ..ContainerRecord::default()
        };
        let c = container("k8s.io", record);
        assert_eq!(c.label(), "attr-pod/caller");
        assert_eq!(c.pod_namespace.as_deref(), Some("containerdsnoop"));
        let garbage = ContainerRecord {
            id: "abc".into(),
            spec: Some(AnyMessage {
                type_url: String::new(),
                value: b"\xff not json".to_vec(),
            }),
            ..ContainerRecord::default()
        };
        assert_eq!(container("default", garbage).label(), "abc");
    }

    #[test]
    fn messages_are_cut_from_a_stream() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0, 2, 8, 1, 0, 0][..]);
        assert_eq!(
            next_message(&mut buf).expect("ok").as_deref(),
            Some(&[8u8, 1][..])
        );
        assert_eq!(
            next_message(&mut buf).expect("ok"),
            None,
            "incomplete prefix"
        );
        let mut compressed = BytesMut::from(&[1u8, 0, 0, 0, 0][..]);
        assert!(next_message(&mut compressed).is_err());
    }
}

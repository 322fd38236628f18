//! Real HTTP/2 from the `h2` crate: a client and a server exchange gRPC-shaped calls over an
//! in-memory duplex whose every write is recorded, then the recording is decoded.

use std::sync::Arc;

use bytes::Bytes;

use super::builders::{CLIENT, SERVER, grpc, grpc_flagged, gzip};
use super::split::assert_split_invariant;
use crate::protocol::call::{Body, CallEvent, CallEventKind, Role, Side, Status};
use crate::protocol::grpc::{Connection, Limits};

use crate::testutil::{Recorder, WriteLog as Log};

const VERSION: &str = "/containerd.services.version.v1.Version/Version";
const SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";
const GET: &str = "/containerd.services.containers.v1.Containers/Get";
const READ: &str = "/containerd.services.content.v1.Content/Read";
const KILL: &str = "/containerd.services.tasks.v1.Tasks/Kill";

async fn serve(io: Recorder) {
    let mut conn = h2::server::handshake(io).await.unwrap();
    while let Some(accepted) = conn.accept().await {
        let (req, mut respond) = accepted.unwrap();
        tokio::spawn(async move {
            let path = req.uri().path().to_string();
            let mut body = req.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let ok = || {
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
            };
            let trailers = |code: &str| {
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", code.parse().unwrap());
                t
            };
            match path.as_str() {
                GET => {
                    // Trailers-only: one HEADERS frame with END_STREAM.
                    let resp = ok()
                        .header("grpc-status", "5")
                        .header("grpc-message", "container%20%22web%22%20not%20found")
                        .body(())
                        .unwrap();
                    respond.send_response(resp, true).unwrap();
                }
                KILL => respond.send_reset(h2::Reason::CANCEL),
                SUBSCRIBE => {
                    let mut send = respond
                        .send_response(ok().body(()).unwrap(), false)
                        .unwrap();
                    // Two messages in one write, then one message cut across two writes.
                    send.send_data(
                        Bytes::from([grpc(b"event-0"), grpc(b"event-1")].concat()),
                        false,
                    )
                    .unwrap();
                    let m = grpc(&[b'e'; 100]);
                    send.send_data(Bytes::copy_from_slice(&m[..3]), false)
                        .unwrap();
                    send.send_data(Bytes::copy_from_slice(&m[3..]), false)
                        .unwrap();
                    send.send_trailers(trailers("0")).unwrap();
                }
                READ => {
                    let resp = ok().header("grpc-encoding", "gzip").body(()).unwrap();
                    let mut send = respond.send_response(resp, false).unwrap();
                    send.send_data(Bytes::from(grpc_flagged(1, &gzip(&[b'z'; 10_000]))), false)
                        .unwrap();
                    send.send_trailers(trailers("0")).unwrap();
                }
                _ => {
                    let mut send = respond
                        .send_response(ok().body(()).unwrap(), false)
                        .unwrap();
                    send.send_data(Bytes::from(grpc(b"\x0a\x062.1.0")), false)
                        .unwrap();
                    send.send_trailers(trailers("0")).unwrap();
                }
            }
        });
    }
}

async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    path: &str,
    body: Vec<u8>,
    gzip_req: bool,
) -> (u32, Vec<u8>) {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("containerd-namespace", "k8s.io");
    if gzip_req {
        b = b.header("grpc-encoding", "gzip");
    }
    let mut ready = client.clone().ready().await.unwrap();
    let (resp, mut send) = ready.send_request(b.body(()).unwrap(), false).unwrap();
    send.send_data(Bytes::from(body), true).unwrap();
    let Ok(resp) = resp.await else {
        return (0, Vec::new());
    };
    let status = resp.status().as_u16() as u32;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { break };
        got.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let _ = body.trailers().await;
    (status, got)
}

/// Runs the exchange and returns every write, client = A, server = B.
pub fn record() -> Vec<(Side, u64, Vec<u8>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log: Log = Arc::default();
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(1 << 20);
        let client_io = Recorder {
            inner: a,
            side: CLIENT,
            log: log.clone(),
        };
        let server_io = Recorder {
            inner: b,
            side: SERVER,
            log: log.clone(),
        };
        let server = tokio::spawn(serve(server_io));
        let (mut client, conn) = h2::client::handshake(client_io).await.unwrap();
        let conn = tokio::spawn(conn);
        for _ in 0..3 {
            call(&mut client, VERSION, grpc(b""), false).await;
        }
        call(&mut client, SUBSCRIBE, grpc(b"\x0a\x01*"), false).await;
        call(&mut client, GET, grpc(b"\x0a\x03web"), false).await;
        call(
            &mut client,
            READ,
            grpc_flagged(1, &gzip(b"read request")),
            true,
        )
        .await;
        call(&mut client, KILL, grpc(b"\x08\x09"), false).await;
        call(&mut client, VERSION, grpc(b""), false).await;
        drop(client);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    });
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

fn decode(writes: &[(Side, u64, Vec<u8>)]) -> (Vec<CallEvent>, crate::protocol::grpc::Stats) {
    let mut conn = Connection::new(Limits::default());
    let mut ev = Vec::new();
    for (side, ts, b) in writes {
        conn.feed(*side, *ts, b, &mut ev);
    }
    assert_eq!((conn.open_calls(), conn.buffered()), (0, 0));
    (ev, conn.stats())
}

/// (method, role, index, body) of every message, and (method, status) of every end.
#[allow(clippy::type_complexity)]
fn summary(ev: &[CallEvent]) -> (Vec<(String, Role, u64, Body)>, Vec<(String, Status)>) {
    let name = |m: &Option<crate::protocol::call::Method>| {
        m.as_ref().map(|m| m.name.to_string()).unwrap_or_default()
    };
    let mut msgs = Vec::new();
    let mut ends = Vec::new();
    for e in ev {
        match &e.kind {
            CallEventKind::Message {
                role,
                index,
                method,
                body,
                namespace,
            } => {
                assert_eq!(namespace.as_deref(), Some("k8s.io"));
                msgs.push((name(method), *role, *index, body.clone()));
            }
            CallEventKind::End {
                method,
                status,
                latency_ns,
                namespace,
            } => {
                assert!(latency_ns.is_some());
                assert_eq!(namespace.as_deref(), Some("k8s.io"));
                ends.push((name(method), status.clone()));
            }
            _ => {}
        }
    }
    (msgs, ends)
}

#[test]
fn h2_generated_traffic_decodes() {
    let writes = record();
    assert!(writes.iter().any(|w| w.0 == CLIENT) && writes.iter().any(|w| w.0 == SERVER));
    let (ev, stats) = decode(&writes);
    assert_eq!(stats.http2.desyncs, 0, "{ev:#?}");
    assert_eq!(stats.http2.hpack_errors, 0);
    let starts: Vec<String> = ev
        .iter()
        .filter_map(|e| match &e.kind {
            CallEventKind::Start {
                method: Some(m),
                metadata,
            } => {
                assert!(
                    metadata
                        .iter()
                        .any(|(n, v)| n == ":path" && v.as_deref() == Some(&*m.name))
                );
                assert!(metadata.iter().any(
                        |(n, v)| n == "containerd-namespace" && v.as_deref() == Some("k8s.io")
                    ));
                Some(m.name.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        starts,
        [
            VERSION, VERSION, VERSION, SUBSCRIBE, GET, READ, KILL, VERSION
        ]
    );
    let (msgs, ends) = summary(&ev);
    let ok = Status {
        code: Some(0),
        message: None,
        abnormal: None,
    };
    let pb = |b: &[u8]| Body::Protobuf(b.to_vec());
    assert!(msgs.contains(&(VERSION.into(), Role::Response, 0, pb(b"\x0a\x062.1.0"))));
    let sub: Vec<_> = msgs
        .iter()
        .filter(|m| m.0 == SUBSCRIBE && m.1 == Role::Response)
        .map(|m| (m.2, m.3.clone()))
        .collect();
    assert_eq!(
        sub,
        vec![
            (0, pb(b"event-0")),
            (1, pb(b"event-1")),
            (2, pb(&[b'e'; 100]))
        ]
    );
    assert!(msgs.contains(&(READ.into(), Role::Request, 0, pb(b"read request"))));
    assert!(msgs.contains(&(READ.into(), Role::Response, 0, pb(&[b'z'; 10_000]))));
    assert_eq!(
        ends,
        vec![
            (VERSION.into(), ok.clone()),
            (VERSION.into(), ok.clone()),
            (VERSION.into(), ok.clone()),
            (SUBSCRIBE.into(), ok.clone()),
            (
                GET.into(),
                Status {
                    code: Some(5),
                    message: Some("container \"web\" not found".into()),
                    abnormal: None
                }
            ),
            (READ.into(), ok.clone()),
            (
                KILL.into(),
                Status {
                    code: None,
                    message: None,
                    abnormal: Some("RST_STREAM CANCEL from server".into())
                }
            ),
            (VERSION.into(), ok),
        ]
    );
}

#[test]
fn h2_generated_traffic_is_split_invariant() {
    let writes = record();
    assert_split_invariant(&writes, Limits::default(), 200);
}

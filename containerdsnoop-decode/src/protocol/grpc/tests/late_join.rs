//! Attaching at any time (issue #4): a long grpc-go-like conversation (HPACK that indexes every
//! field, so repeated calls carry `:path` as a dynamic-table index; containerd methods with
//! protobuf bodies from the schema pool; an Events/Subscribe stream) decoded from many starting
//! points and compared with the decode from the first byte.

use std::collections::BTreeMap;

use prost::Message as _;
use prost_reflect::{DynamicMessage, Value};

use super::builders::*;
use super::split::Rng;
use crate::protocol::call::{CallEvent, CallEventKind, Side};
use crate::protocol::grpc::{Connection, Limits};
use crate::protocol::http2::FrameSync;
use crate::schema::Schema;

const VERSION: &str = "/containerd.services.version.v1.Version/Version";
const SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";
const C_CREATE: &str = "/containerd.services.containers.v1.Containers/Create";
const C_GET: &str = "/containerd.services.containers.v1.Containers/Get";
const C_LIST: &str = "/containerd.services.containers.v1.Containers/List";
const C_DELETE: &str = "/containerd.services.containers.v1.Containers/Delete";
const T_CREATE: &str = "/containerd.services.tasks.v1.Tasks/Create";
const T_START: &str = "/containerd.services.tasks.v1.Tasks/Start";
const T_GET: &str = "/containerd.services.tasks.v1.Tasks/Get";
const T_KILL: &str = "/containerd.services.tasks.v1.Tasks/Kill";
const T_DELETE: &str = "/containerd.services.tasks.v1.Tasks/Delete";
const T_EXEC: &str = "/containerd.services.tasks.v1.Tasks/Exec";
const T_RESIZE: &str = "/containerd.services.tasks.v1.Tasks/ResizePty";
const T_DELETE_PROCESS: &str = "/containerd.services.tasks.v1.Tasks/DeleteProcess";
const T_PAUSE: &str = "/containerd.services.tasks.v1.Tasks/Pause";
const T_RESUME: &str = "/containerd.services.tasks.v1.Tasks/Resume";

/// Builds protobuf bodies from the embedded pool.
struct Bodies {
    schema: Schema,
}

impl Bodies {
    fn new() -> Bodies {
        Bodies {
            schema: Schema::embedded().unwrap(),
        }
    }

    fn msg(&self, ty: &str, fields: &[(&str, Value)]) -> DynamicMessage {
        let desc = self.schema.message(ty).unwrap_or_else(|| panic!("{ty}"));
        let mut m = DynamicMessage::new(desc);
        for (name, v) in fields {
            assert!(m.get_field_by_name(name).is_some(), "{ty}.{name}");
            m.set_field_by_name(name, v.clone());
        }
        m
    }

    fn bytes(&self, ty: &str, fields: &[(&str, Value)]) -> Vec<u8> {
        self.msg(ty, fields).encode_to_vec()
    }

    fn any(&self, ty: &str, fields: &[(&str, Value)]) -> Value {
        let inner = self.bytes(ty, fields);
        Value::Message(self.msg(
            "google.protobuf.Any",
            &[("type_url", s(ty)), ("value", Value::Bytes(inner.into()))],
        ))
    }

    fn ts(&self, secs: i64) -> Value {
        Value::Message(self.msg(
            "google.protobuf.Timestamp",
            &[("seconds", Value::I64(secs)), ("nanos", Value::I32(1234))],
        ))
    }

    fn container(&self, id: &str, t: i64) -> Value {
        let labels = [("com.docker/engine.bundle.path", "/var/run/docker/x")]
            .iter()
            .map(|(k, v)| {
                (
                    prost_reflect::MapKey::String(k.to_string()),
                    Value::String(v.to_string()),
                )
            })
            .collect();
        let runtime = self.msg(
            "containerd.services.containers.v1.Container.Runtime",
            &[("name", s("io.containerd.runc.v2"))],
        );
        Value::Message(self.msg(
            "containerd.services.containers.v1.Container",
            &[
                ("id", s(id)),
                ("labels", Value::Map(labels)),
                ("image", s("docker.io/library/nginx:latest")),
                ("runtime", Value::Message(runtime)),
                (
                    "spec",
                    self.any("containerd.types.Descriptor", &[("media_type", s("spec"))]),
                ),
                ("snapshotter", s("overlayfs")),
                ("snapshot_key", s(id)),
                ("created_at", self.ts(t)),
                ("updated_at", self.ts(t)),
            ],
        ))
    }

    fn envelope(&self, topic: &str, event: Value, t: i64) -> Vec<u8> {
        self.bytes(
            "containerd.types.Envelope",
            &[
                ("timestamp", self.ts(t)),
                ("namespace", s("moby")),
                ("topic", s(topic)),
                ("event", event),
            ],
        )
    }
}

fn one(k: &'static str, v: Value) -> Vec<(&'static str, Value)> {
    vec![(k, v)]
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// The HPACK encoder of golang.org/x/net/http2/hpack as grpc-go uses it: every field that fits
/// the table is indexed (`shouldIndex`), exact matches are sent as indices (static table first),
/// so after its first use a `:path` travels as one dynamic-table index. (The `hpack` crate's
/// encoder never indexes a value whose name is in the static table, so it cannot stand in.)
/// Strings are sent raw; Huffman decoding is tested elsewhere.
pub(super) struct GoEncoder {
    /// Newest first.
    table: std::collections::VecDeque<(String, String)>,
    size: usize,
    max: usize,
}

impl GoEncoder {
    pub(super) fn new() -> GoEncoder {
        GoEncoder {
            table: Default::default(),
            size: 0,
            max: 4096,
        }
    }

    fn int(out: &mut Vec<u8>, first: u8, prefix: u8, mut v: usize) {
        let max = (1usize << prefix) - 1;
        if v < max {
            out.push(first | v as u8);
            return;
        }
        out.push(first | max as u8);
        v -= max;
        while v >= 128 {
            out.push((v % 128) as u8 | 0x80);
            v /= 128;
        }
        out.push(v as u8);
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        Self::int(out, 0, 7, s.len());
        out.extend_from_slice(s.as_bytes());
    }

    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        use crate::protocol::http2::hpack::table::STATIC;
        let mut out = Vec::new();
        for &(name, value) in fields {
            let exact = STATIC
                .iter()
                .position(|&(n, v)| n == name && v == value)
                .map(|i| i + 1)
                .or_else(|| {
                    self.table
                        .iter()
                        .position(|(n, v)| n == name && v == value)
                        .map(|i| i + 62)
                });
            if let Some(i) = exact {
                Self::int(&mut out, 0x80, 7, i);
                continue;
            }
            let name_index = STATIC
                .iter()
                .position(|&(n, _)| n == name)
                .map(|i| i + 1)
                .or_else(|| {
                    self.table
                        .iter()
                        .position(|(n, _)| n == name)
                        .map(|i| i + 62)
                });
            let size = name.len() + value.len() + 32;
            let index = size <= self.max;
            let first = if index { 0x40 } else { 0x00 };
            let prefix = if index { 6 } else { 4 };
            match name_index {
                Some(i) => Self::int(&mut out, first, prefix, i),
                None => {
                    Self::int(&mut out, first, prefix, 0);
                    Self::string(&mut out, name);
                }
            }
            Self::string(&mut out, value);
            if index {
                while self.size + size > self.max {
                    let Some((n, v)) = self.table.pop_back() else {
                        break;
                    };
                    self.size -= n.len() + v.len() + 32;
                }
                self.size += size;
                self.table.push_front((name.to_string(), value.to_string()));
            }
        }
        out
    }

    pub(super) fn headers(
        &mut self,
        stream: u32,
        fields: &[(&str, &str)],
        end_stream: bool,
    ) -> Vec<u8> {
        use crate::protocol::http2::frame::flags;
        let block = self.block(fields);
        let f = flags::END_HEADERS | if end_stream { flags::END_STREAM } else { 0 };
        frame(0x1, f, stream, &block)
    }
}

/// A recorded conversation and the true method of every stream.
struct Conversation {
    writes: Vec<(Side, u64, Vec<u8>)>,
    truth: BTreeMap<u64, &'static str>,
}

/// grpc-go's request header order and fields.
pub(super) fn grpc_go_request(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "/run/containerd/containerd.sock"),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.66.2"),
        ("te", "trailers"),
        ("containerd-namespace", "moby"),
    ]
}

/// dockerd talking to containerd: a Subscribe stream, then container lifecycles and periodic
/// calls; each unary call is one client write (HEADERS + DATA) and one server write (HEADERS,
/// DATA, trailers), as grpc-go's flushes make them. Flow control and BDP pings sprinkled in.
fn conversation(lifecycles: usize, seed: u64) -> Conversation {
    let b = Bodies::new();
    let mut rng = Rng::new(seed);
    let mut t = Trace::handshake();
    let (mut c, mut sv) = (GoEncoder::new(), GoEncoder::new());
    let mut truth = BTreeMap::new();
    let mut ts = 10u64;
    let mut next_stream = 3u32;
    // The event stream.
    t.push(
        CLIENT,
        ts,
        [
            c.headers(1, &grpc_go_request(SUBSCRIBE), false),
            data(
                1,
                &grpc(&b.bytes(
                    "containerd.services.events.v1.SubscribeRequest",
                    &[("filters", Value::List(vec![s("namespace==moby")]))],
                )),
                false,
            ),
        ]
        .concat(),
    );
    truth.insert(1, SUBSCRIBE);
    t.push(SERVER, ts + 1, sv.headers(1, RESPONSE, false));
    let mut unary = |t: &mut Trace,
                     c: &mut GoEncoder,
                     sv: &mut GoEncoder,
                     ts: &mut u64,
                     path: &'static str,
                     req: Vec<u8>,
                     resp: Option<Vec<u8>>,
                     status: &str| {
        let id = next_stream;
        next_stream += 2;
        truth.insert(u64::from(id), path);
        *ts += 100;
        t.push(
            CLIENT,
            *ts,
            [
                c.headers(id, &grpc_go_request(path), false),
                data(id, &grpc(&req), true),
            ]
            .concat(),
        );
        *ts += 50;
        let mut w = Vec::new();
        match resp {
            Some(resp) => {
                w.extend(sv.headers(id, RESPONSE, false));
                w.extend(data(id, &grpc(&resp), false));
                w.extend(sv.headers(id, &[("grpc-status", status)], true));
            }
            None => {
                // Trailers-only error.
                w.extend(sv.headers(
                    id,
                    &[
                        (":status", "200"),
                        ("content-type", "application/grpc"),
                        ("grpc-status", status),
                        ("grpc-message", "not found"),
                    ],
                    true,
                ));
            }
        }
        t.push(SERVER, *ts, w);
    };
    let empty = Vec::new();
    for n in 0..lifecycles {
        let id = format!("{:016x}{:016x}", rng.next(), rng.next());
        let pid = 1000 + rng.below(60_000) as u32;
        let secs = 1_700_000_000 + n as i64 * 60;
        if n % 3 == 0 {
            let version = b.bytes(
                "containerd.services.version.v1.VersionResponse",
                &[("version", s("v1.7.22")), ("revision", s("7f7fdf5fed64"))],
            );
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                VERSION,
                empty.clone(),
                Some(version),
                "0",
            );
        }
        let container = b.container(&id, secs);
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            C_CREATE,
            b.bytes(
                "containerd.services.containers.v1.CreateContainerRequest",
                &one("container", container.clone()),
            ),
            Some(b.bytes(
                "containerd.services.containers.v1.CreateContainerResponse",
                &one("container", container.clone()),
            )),
            "0",
        );
        let mount = Value::Message(b.msg(
            "containerd.types.Mount",
            &[
                ("type", s("overlay")),
                ("source", s("overlay")),
                (
                    "options",
                    Value::List(vec![s("index=off"), s("lowerdir=/var/lib/x/1/fs")]),
                ),
            ],
        ));
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            T_CREATE,
            b.bytes(
                "containerd.services.tasks.v1.CreateTaskRequest",
                &[
                    ("container_id", s(&id)),
                    ("rootfs", Value::List(vec![mount])),
                    ("stdout", s(&format!("/run/docker/{id}-stdout"))),
                    ("stderr", s(&format!("/run/docker/{id}-stderr"))),
                ],
            ),
            Some(b.bytes(
                "containerd.services.tasks.v1.CreateTaskResponse",
                &[("container_id", s(&id)), ("pid", Value::U32(pid))],
            )),
            "0",
        );
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            T_START,
            b.bytes(
                "containerd.services.tasks.v1.StartRequest",
                &one("container_id", s(&id)),
            ),
            Some(b.bytes(
                "containerd.services.tasks.v1.StartResponse",
                &one("pid", Value::U32(pid)),
            )),
            "0",
        );
        ts += 10;
        let ev = b.any(
            "containerd.events.TaskStart",
            &[("container_id", s(&id)), ("pid", Value::U32(pid))],
        );
        t.push(
            SERVER,
            ts,
            data(1, &grpc(&b.envelope("/tasks/start", ev, secs)), false),
        );
        if rng.below(2) == 0 {
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                C_GET,
                b.bytes(
                    "containerd.services.containers.v1.GetContainerRequest",
                    &one("id", s(&id)),
                ),
                Some(b.bytes(
                    "containerd.services.containers.v1.GetContainerResponse",
                    &one("container", container.clone()),
                )),
                "0",
            );
        }
        let process = Value::Message(b.msg(
            "containerd.v1.types.Process",
            &[
                ("container_id", s(&id)),
                ("id", s(&id)),
                ("pid", Value::U32(pid)),
                ("status", Value::EnumNumber(2)),
            ],
        ));
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            T_GET,
            b.bytes(
                "containerd.services.tasks.v1.GetRequest",
                &one("container_id", s(&id)),
            ),
            Some(b.bytes(
                "containerd.services.tasks.v1.GetResponse",
                &one("process", process),
            )),
            "0",
        );
        if rng.below(3) == 0 {
            // docker exec -it: an exec process, its terminal size, its start and cleanup.
            let exec_id = format!("exec-{}", rng.below(1000));
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                T_EXEC,
                b.bytes(
                    "containerd.services.tasks.v1.ExecProcessRequest",
                    &[
                        ("container_id", s(&id)),
                        ("terminal", Value::Bool(true)),
                        (
                            "spec",
                            b.any(
                                "containerd.types.Descriptor",
                                &[("media_type", s("process"))],
                            ),
                        ),
                        ("exec_id", s(&exec_id)),
                    ],
                ),
                Some(empty.clone()),
                "0",
            );
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                T_RESIZE,
                b.bytes(
                    "containerd.services.tasks.v1.ResizePtyRequest",
                    &[
                        ("container_id", s(&id)),
                        ("exec_id", s(&exec_id)),
                        ("width", Value::U32(80)),
                        ("height", Value::U32(24)),
                    ],
                ),
                Some(empty.clone()),
                "0",
            );
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                T_START,
                b.bytes(
                    "containerd.services.tasks.v1.StartRequest",
                    &[("container_id", s(&id)), ("exec_id", s(&exec_id))],
                ),
                Some(b.bytes(
                    "containerd.services.tasks.v1.StartResponse",
                    &one("pid", Value::U32(pid + 1)),
                )),
                "0",
            );
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                T_DELETE_PROCESS,
                b.bytes(
                    "containerd.services.tasks.v1.DeleteProcessRequest",
                    &[("container_id", s(&id)), ("exec_id", s(&exec_id))],
                ),
                Some(b.bytes(
                    "containerd.services.tasks.v1.DeleteResponse",
                    &[
                        ("id", s(&exec_id)),
                        ("pid", Value::U32(pid + 1)),
                        ("exited_at", b.ts(secs + 20)),
                    ],
                )),
                "0",
            );
        }
        if rng.below(5) == 0 {
            // docker pause / unpause.
            for path in [T_PAUSE, T_RESUME] {
                let ty = if path == T_PAUSE {
                    "containerd.services.tasks.v1.PauseTaskRequest"
                } else {
                    "containerd.services.tasks.v1.ResumeTaskRequest"
                };
                unary(
                    &mut t,
                    &mut c,
                    &mut sv,
                    &mut ts,
                    path,
                    b.bytes(ty, &one("container_id", s(&id))),
                    Some(empty.clone()),
                    "0",
                );
            }
        }
        if rng.below(4) == 0 {
            // A flow-control update and a BDP ping, as grpc-go sends them.
            ts += 5;
            t.push(CLIENT, ts, frame(0x8, 0, 0, &[0, 0, 0x40, 0]));
            t.push(SERVER, ts, frame(0x6, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 7]));
            t.push(CLIENT, ts, frame(0x6, 1, 0, &[0, 0, 0, 0, 0, 0, 0, 7]));
        }
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            T_KILL,
            b.bytes(
                "containerd.services.tasks.v1.KillRequest",
                &[
                    ("container_id", s(&id)),
                    ("signal", Value::U32(15)),
                    ("all", Value::Bool(true)),
                ],
            ),
            Some(empty.clone()),
            "0",
        );
        ts += 10;
        let ev = b.any(
            "containerd.events.TaskExit",
            &[
                ("container_id", s(&id)),
                ("id", s(&id)),
                ("pid", Value::U32(pid)),
                ("exit_status", Value::U32(143)),
                ("exited_at", b.ts(secs + 30)),
            ],
        );
        t.push(
            SERVER,
            ts,
            data(1, &grpc(&b.envelope("/tasks/exit", ev, secs + 30)), false),
        );
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            T_DELETE,
            b.bytes(
                "containerd.services.tasks.v1.DeleteTaskRequest",
                &one("container_id", s(&id)),
            ),
            Some(b.bytes(
                "containerd.services.tasks.v1.DeleteResponse",
                &[
                    ("id", s(&id)),
                    ("pid", Value::U32(pid)),
                    ("exit_status", Value::U32(143)),
                    ("exited_at", b.ts(secs + 30)),
                ],
            )),
            "0",
        );
        unary(
            &mut t,
            &mut c,
            &mut sv,
            &mut ts,
            C_DELETE,
            b.bytes(
                "containerd.services.containers.v1.DeleteContainerRequest",
                &one("id", s(&id)),
            ),
            Some(empty.clone()),
            "0",
        );
        if rng.below(3) == 0 {
            // docker ps -a: a List, and a Get of a container that is gone.
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                C_LIST,
                b.bytes(
                    "containerd.services.containers.v1.ListContainersRequest",
                    &one("filters", Value::List(vec![s("labels.\"com.docker\"")])),
                ),
                Some(b.bytes(
                    "containerd.services.containers.v1.ListContainersResponse",
                    &one(
                        "containers",
                        Value::List(vec![container.clone(), b.container("ffff0000", secs)]),
                    ),
                )),
                "0",
            );
            unary(
                &mut t,
                &mut c,
                &mut sv,
                &mut ts,
                C_GET,
                b.bytes(
                    "containerd.services.containers.v1.GetContainerRequest",
                    &one("id", s(&id)),
                ),
                None,
                "5",
            );
        }
    }
    Conversation {
        writes: t.writes,
        truth,
    }
}

/// The method each stream's rows carry: (stream, method, inferred) per event that has one.
fn methods(ev: &[CallEvent]) -> Vec<(u64, Option<(String, bool)>)> {
    ev.iter()
        .filter_map(|e| {
            let m = match &e.kind {
                CallEventKind::Start { method, .. }
                | CallEventKind::Message { method, .. }
                | CallEventKind::End { method, .. } => method,
                CallEventKind::Notice { .. } => return None,
            };
            Some((
                e.stream,
                m.as_ref().map(|m| (m.name.to_string(), m.inferred)),
            ))
        })
        .collect()
}

/// What one late-join decode got right.
#[derive(Debug, Default, Clone)]
struct Score {
    /// Calls that ended, after the first `skip` that started after the join.
    calls: usize,
    /// ... whose End row names the true method (exactly or inferred).
    named: usize,
    /// ... whose End row names a wrong method (always marked inferred).
    wrong: usize,
    /// ... named exactly (seen on the wire).
    exact: usize,
    /// (true method, what was shown) for the wrong and the unnamed.
    misses: BTreeMap<(String, String), usize>,
}

/// Decodes `writes` from write `first` on, the side of that write starting `cut` bytes into it.
fn late_decode(conv: &Conversation, first: usize, cut: usize, skip: usize) -> (Score, Connection) {
    let mut conn = Connection::late_join(Limits::default());
    let mut ev = Vec::new();
    for (k, (side, ts, bytes)) in conv.writes.iter().enumerate().skip(first) {
        let bytes = if k == first {
            &bytes[cut.min(bytes.len())..]
        } else {
            &bytes[..]
        };
        conn.feed(*side, *ts, bytes, &mut ev);
    }
    conn.close(
        u64::MAX / 2,
        crate::protocol::call::ConnEnd::Closed,
        &mut ev,
    );
    // (b) nothing shown as certain is wrong.
    for (stream, m) in methods(&ev) {
        if let Some((name, false)) = m {
            assert_eq!(
                Some(name.as_str()),
                conv.truth.get(&stream).copied(),
                "stream {stream} shown as certain with a wrong method (first {first} cut {cut})"
            );
        }
    }
    let mut score = Score::default();
    let mut started = 0;
    for e in &ev {
        if let CallEventKind::End { method, status, .. } = &e.kind {
            if status.abnormal.as_deref() == Some("connection closed") {
                continue;
            }
            started += 1;
            if started <= skip {
                continue;
            }
            score.calls += 1;
            let truth = conv.truth.get(&e.stream).copied();
            match method {
                Some(m) if Some(&*m.name) == truth => {
                    score.named += 1;
                    if !m.inferred {
                        score.exact += 1;
                    }
                }
                Some(m) => {
                    score.wrong += 1;
                    let key = (truth.unwrap_or("?").to_string(), m.name.to_string());
                    *score.misses.entry(key).or_default() += 1;
                }
                None => {
                    let key = (truth.unwrap_or("?").to_string(), "(none)".to_string());
                    *score.misses.entry(key).or_default() += 1;
                }
            }
        }
    }
    (score, conn)
}

#[test]
fn full_decode_of_the_conversation_is_exact() {
    let conv = conversation(40, 7);
    let (ev, stats) = run_with(&conv.writes, Limits::default());
    assert_eq!(stats.http2.desyncs, 0);
    let ends: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e.kind, CallEventKind::End { .. }))
        .collect();
    assert_eq!(ends.len() + 1, conv.truth.len(), "all but Subscribe end");
    for (stream, m) in methods(&ev) {
        let (name, inferred) = m.expect("every row named");
        assert!(!inferred);
        assert_eq!(Some(name.as_str()), conv.truth.get(&stream).copied());
    }
    assert_eq!(stats.calls.inferred_calls, 0);
}

/// The floor on the share of calls named correctly. Every method of this conversation repeats,
/// so after a few calls an unknown `:path` entry has been seen with its request and response
/// bodies; the misses left are calls whose bodies fit several methods exactly alike (Tasks/Pause,
/// Tasks/Resume and Containers/Delete are all `{string 1}` -> `Empty`; Tasks/ResizePty and
/// Tasks/Kill are `{string, string, uint32, uint32|bool}` -> `Empty`), where the routine-method
/// prior names the routine one, and a failed Containers/Get before any successful one.
const NAMED_FLOOR: f64 = 0.9;

/// The ceiling on wrongly inferred names (always marked inferred): the shape-identical pairs
/// above, where the less routine method was the true one. This conversation has many of them
/// on purpose (exec with a terminal in a third of the lifecycles, pause in a fifth).
const WRONG_CEILING: f64 = 0.06;

#[test]
fn late_join_at_many_offsets_names_calls() {
    let conv = conversation(30, 7);
    let mut total = Score::default();
    let mut joins = 0;
    let mut rng = Rng::new(99);
    // Every 17th write boundary, and a random cut inside the write there.
    for first in (4..conv.writes.len() - 40).step_by(17) {
        let len = conv.writes[first].2.len();
        for cut in [0, 1 + rng.below(len.max(2) - 1)] {
            let (s, conn) = late_decode(&conv, first, cut, 5);
            joins += 1;
            total.calls += s.calls;
            total.named += s.named;
            total.wrong += s.wrong;
            total.exact += s.exact;
            for (k, n) in s.misses {
                *total.misses.entry(k).or_default() += n;
            }
            assert!(s.calls > 0, "first {first} cut {cut}");
            for side in [CLIENT, SERVER] {
                assert_ne!(conn.sync_state(side), FrameSync::Synced);
                assert!(!conn.is_desynchronised(side), "first {first} cut {cut}");
            }
        }
    }
    let share = total.named as f64 / total.calls as f64;
    let wrong = total.wrong as f64 / total.calls as f64;
    println!(
        "late join: {joins} starting points, {} calls after the first 5: {} named correctly \
         ({share:.3}), {} of them exactly (seen on the wire), {} wrongly inferred ({wrong:.3})",
        total.calls, total.named, total.exact, total.wrong
    );
    let mut misses: Vec<_> = total.misses.iter().collect();
    misses.sort_by(|a, b| b.1.cmp(a.1));
    for ((truth, shown), n) in misses.iter().take(8) {
        println!("  {n:6}  {truth} shown as {shown}");
    }
    assert!(share >= NAMED_FLOOR, "share {share:.3}");
    assert!(wrong <= WRONG_CEILING, "wrong {wrong:.3}");
}

#[test]
fn late_join_anywhere_never_panics_and_never_lies() {
    let conv = conversation(8, 3);
    let client: Vec<u8> = conv
        .writes
        .iter()
        .filter(|w| w.0 == CLIENT)
        .flat_map(|w| w.2.clone())
        .collect();
    let server: Vec<u8> = conv
        .writes
        .iter()
        .filter(|w| w.0 == SERVER)
        .flat_map(|w| w.2.clone())
        .collect();
    // Each direction as one byte stream, started at every 61st offset and fed in 512-byte
    // chunks, alternating sides: byte offsets unrelated to writes.
    for start in (0..client.len().min(server.len())).step_by(61) {
        let mut conn = Connection::late_join(Limits::default());
        let mut ev = Vec::new();
        let (c, s) = (
            &client[start..],
            &server[start * server.len() / client.len()..],
        );
        let mut ci = c.chunks(512);
        let mut si = s.chunks(512);
        loop {
            let (a, b) = (ci.next(), si.next());
            if a.is_none() && b.is_none() {
                break;
            }
            if let Some(a) = a {
                conn.feed(CLIENT, 1, a, &mut ev);
            }
            if let Some(b) = b {
                conn.feed(SERVER, 1, b, &mut ev);
            }
        }
        conn.close(2, crate::protocol::call::ConnEnd::Closed, &mut ev);
        for (stream, m) in methods(&ev) {
            if let Some((name, false)) = m {
                assert_eq!(Some(name.as_str()), conv.truth.get(&stream).copied());
            }
        }
    }
}

/// One captured write: (side, ts, stream position, bytes).
type Record = (Side, u64, u64, Vec<u8>);

/// The real containerd capture (`tests/fixtures/containerd/*.jsonl`, raw records: base64
/// `data`, `sock_ino`, `peer_ino`, `stream_pos`), when present: every HTTP/2 connection in it is
/// decoded from every record boundary of either side and from byte offsets inside records.
#[test]
fn real_containerd_capture_late_join() {
    use base64::Engine as _;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containerd");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("no capture in {}: skipped", dir.display());
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let (mut conns, mut joins, mut calls, mut named) = (0, 0, 0, 0);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // (low inode, high inode) -> records in file order as (side, ts, pos, bytes).
        let mut by_conn: BTreeMap<(u64, u64), Vec<Record>> = BTreeMap::new();
        for line in text.lines() {
            let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(ino), Some(peer), Some(data)) = (
                r["sock_ino"].as_u64(),
                r["peer_ino"].as_u64(),
                r["data"].as_str(),
            ) else {
                continue;
            };
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
                continue;
            };
            let side = if ino < peer { Side::A } else { Side::B };
            let key = (ino.min(peer), ino.max(peer));
            let ts = r["ts_ns"].as_u64().unwrap_or(0);
            let pos = r["stream_pos"].as_u64().unwrap_or(0);
            by_conn.entry(key).or_default().push((side, ts, pos, bytes));
        }
        for records in by_conn.values() {
            let is_h2 = records
                .iter()
                .any(|r| r.2 == 0 && r.3.starts_with(crate::protocol::http2::PREFACE));
            if !is_h2 {
                continue;
            }
            conns += 1;
            let writes: Vec<_> = records.iter().map(|r| (r.0, r.1, r.3.clone())).collect();
            let (full, stats) = run_with(&writes, Limits::default());
            assert_eq!(stats.http2.desyncs, 0, "{}", file.display());
            let truth: BTreeMap<u64, String> = methods(&full)
                .into_iter()
                .filter_map(|(s, m)| Some((s, m?.0)))
                .collect();
            for first in 1..records.len() {
                for cut in [0, 1, records[first].3.len() / 2] {
                    joins += 1;
                    let mut conn = Connection::new(Limits::default());
                    let mut joined = [false; 2];
                    let mut ev = Vec::new();
                    for (k, (side, ts, pos, bytes)) in records.iter().enumerate().skip(first) {
                        let i = usize::from(*side == Side::B);
                        let bytes = if k == first {
                            &bytes[cut.min(bytes.len())..]
                        } else {
                            &bytes[..]
                        };
                        if !joined[i] {
                            joined[i] = true;
                            let at = pos + if k == first { cut as u64 } else { 0 };
                            if at > 0 {
                                conn.joined(*side, at);
                            }
                        }
                        conn.feed(*side, *ts, bytes, &mut ev);
                    }
                    conn.close(
                        u64::MAX / 2,
                        crate::protocol::call::ConnEnd::Closed,
                        &mut ev,
                    );
                    for (stream, m) in methods(&ev) {
                        if let Some((name, false)) = m {
                            assert_eq!(Some(&name), truth.get(&stream), "{}", file.display());
                        }
                    }
                    for e in &ev {
                        if let CallEventKind::End { method, .. } = &e.kind {
                            calls += 1;
                            if method.as_ref().map(|m| m.name.to_string()).as_ref()
                                == truth.get(&e.stream)
                            {
                                named += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    println!(
        "real capture: {conns} HTTP/2 connections, {joins} starting points, {calls} calls ended, \
         {named} named correctly"
    );
}

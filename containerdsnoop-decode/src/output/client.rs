//! Who called: the one place that names a call's client (the side that sends its requests) for
//! the exit summary's clients table. Today that is the client process's name (comm, without the
//! pid: every `ctr` run is a new process, and `ctr` is who the user asks about); knowing more
//! about a process (its container or pod) means extending this function, not its callers.

use crate::{
    output::rows::{Row, RowKind},
    protocol::call::Side,
};

/// The client of `row`'s call: the process at the connection's non-listening end, else (roles
/// unknown) the sender of a request or the receiver of anything else; `?` when not known (a
/// capture file of TCP traffic names no process). Named by its container (`pod/container`, or
/// the container's name or short id) when it runs in one, else by its comm.
pub fn client_label(row: &Row) -> String {
    let client = row
        .conn
        .server
        .map(Side::other)
        .and_then(|side| row.conn.end(side));
    let client_pid = match client {
        Some(end) => end.pid,
        None if row.kind == RowKind::Req => row.pid,
        None => row.peer_pid,
    };
    let container = if client_pid == 0 {
        None
    } else if client_pid == row.pid {
        row.container.as_ref()
    } else if client_pid == row.peer_pid {
        row.peer_container.as_ref()
    } else {
        None
    };
    if let Some(c) = container {
        return c.label();
    }
    let comm = match client {
        Some(end) => Some(&end.comm),
        None if row.kind == RowKind::Req => Some(&row.comm),
        None => row.peer_comm.as_ref(),
    };
    match comm {
        Some(comm) if !comm.is_empty() => comm.clone(),
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        output::sink::Renderer,
        pipeline::{Pipeline, Plan},
        protocol::{call::ConnEnd, call::Side, detect::testing::parse_recording},
        record::{Chunk, chunks_from_raw_jsonl},
        schema::{RenderOptions, Schema},
        stats::Stats,
        testutil::conn_chunks,
    };

    /// The counters after `chunks` went through a pipeline with no sink.
    fn stats_of(chunks: &[Chunk]) -> Stats {
        let schema = Schema::embedded().expect("schema");
        let mut p = Pipeline::new(
            Renderer::new(schema, RenderOptions::default()),
            Plan::default(),
            Vec::new(),
        );
        for c in chunks {
            p.push(c).expect("push");
        }
        let last = chunks.last().map_or(0, |c| c.ts_ns);
        p.finish(last + 1, ConnEnd::CaptureEnded).expect("finish");
        p.stats.clone()
    }

    /// The line of the clients table that names `client`, split into its cells.
    fn table_line(summary: &str, client: &str) -> Vec<String> {
        let line = summary
            .lines()
            .find(|l| l.split('|').next().map(str::trim) == Some(client))
            .unwrap_or_else(|| panic!("no line for {client} in\n{summary}"));
        line.split('|').map(|c| c.trim().to_string()).collect()
    }

    /// `ctr` against containerd 1.6 (recorded): eleven calls from eight `ctr` processes, one
    /// NotFound. The END rows come from containerd; the client is still `ctr`.
    #[test]
    fn the_clients_table_names_who_called_with_their_calls_and_errors() {
        let capture = include_str!("../../tests/fixtures/containerd/ctr-basic.jsonl");
        let stats = stats_of(&chunks_from_raw_jsonl(capture));
        let ends: u64 = stats.methods.values().map(|m| m.calls).sum();
        assert_eq!(stats.clients.len(), 1, "{:?}", stats.clients.keys());
        let ctr = &stats.clients["ctr"];
        assert_eq!((ctr.calls, ctr.errors), (ends, 1));
        let summary = stats.summary();
        let header = table_line(&summary, "CLIENT");
        assert_eq!(header, ["CLIENT", "CALLS", "ERRORS", "P99"]);
        let line = table_line(&summary, "ctr");
        assert_eq!(line[1], ends.to_string());
        assert_eq!(line[2], "1");
        let p99 = ctr.latency.quantile(0.99).expect("latencies");
        assert_eq!(line[3], crate::output::rows::format_latency(p99));
        // The slowest call of the recording (Namespaces/Create, 1.643 ms) bounds the p99 from
        // below, within the histogram's 4% bucket.
        assert!((1_643_000..=1_643_000 * 105 / 100).contains(&p99), "{p99}");
    }

    /// The recorded containerd ↔ shim ttrpc connection (containerd is pid 3437, the shim 5120).
    fn shim_task_chunks() -> Vec<Chunk> {
        let rec = include_bytes!("../../tests/fixtures/ttrpc/shim-task.rec");
        let writes: Vec<(Side, u64, Vec<u8>)> = parse_recording(rec)
            .into_iter()
            .map(|w| (if w.client { Side::A } else { Side::B }, 0, w.bytes))
            .collect();
        conn_chunks(
            &writes,
            1,
            "/run/containerd/s/4f1a9c2e",
            ("containerd", 3437),
            ("containerd-shim", 5120),
        )
    }

    /// containerd calls its shim over ttrpc (recorded): the client is containerd, though every
    /// END row is the shim's.
    #[test]
    fn the_client_is_the_side_that_sends_requests() {
        let chunks = shim_task_chunks();
        let stats = stats_of(&chunks);
        let calls: u64 = stats.methods.values().map(|m| m.calls).sum();
        assert!(calls > 0);
        assert_eq!(stats.clients.keys().collect::<Vec<_>>(), ["containerd"]);
        assert_eq!(stats.clients["containerd"].calls, calls);
    }

    /// A client in a container is named by its pod and container, whichever end sent the
    /// row that ended the call.
    #[test]
    fn a_client_in_a_pod_is_named_by_pod_and_container() {
        struct ContainerdInAPod;
        impl crate::attribution::Attributor for ContainerdInAPod {
            fn container(&mut self, pid: u32) -> crate::attribution::Attribution {
                (pid == 3437).then(|| {
                    std::sync::Arc::new(crate::attribution::Container {
                        id: "0123456789abcdef".into(),
                        name: Some("agent".into()),
                        pod: Some("web".into()),
                        ..Default::default()
                    })
                })
            }
        }
        let chunks = shim_task_chunks();
        let schema = Schema::embedded().expect("schema");
        let mut p = Pipeline::new(
            Renderer::new(schema, RenderOptions::default()),
            Plan::default(),
            Vec::new(),
        );
        p.set_attributor(Box::new(ContainerdInAPod));
        for c in &chunks {
            p.push(c).expect("push");
        }
        p.finish(u64::MAX, ConnEnd::CaptureEnded).expect("finish");
        assert_eq!(p.stats.clients.keys().collect::<Vec<_>>(), ["web/agent"]);
    }

    /// A tcpdump-style capture of gRPC over TCP names no process: its client is `?`, never
    /// an empty cell.
    #[test]
    fn a_capture_without_processes_has_an_unknown_client() {
        use crate::pcap::{Event, PcapReader};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pcap/grpc_loopback.pcapng"
        );
        let mut reader = PcapReader::open(path).expect("open capture");
        let mut chunks = Vec::new();
        while let Some(event) = reader.next_event() {
            if let Event::Chunk(c) = event.expect("well-formed capture") {
                chunks.push(c);
            }
        }
        let stats = stats_of(&chunks);
        assert_eq!(stats.clients.keys().collect::<Vec<_>>(), ["?"]);
        assert_eq!(stats.clients["?"].calls, 2);
        assert_eq!(table_line(&stats.summary(), "?")[1], "2");
    }
}

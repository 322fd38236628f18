//! The pure pipeline from captured records to sinks: reassembly, the connection table,
//! protocol decoders, rows, the filter, `-x` (only failed calls, `output::failed`) and the `-n`
//! limit, each applied once, for every sink.
//! The live capture, capture files and tests all push [`Chunk`]s through the same code.

use std::io;
use std::sync::Arc;

use crate::{
    attribution::Attributor,
    output::client::client_label,
    output::failed::{FailedCalls, HeldRow},
    output::filter::Filter,
    output::rows::{Row, RowBuilder},
    output::sink::{Headers, Record, Renderer, Sink},
    protocol::{
        Protocol,
        call::{CallEvent, CallEventKind, ConnEnd, Outcome},
    },
    record::Chunk,
    stats::Stats,
    stream::conn::{ConnInfo, ConnTable},
    stream::reassembly::{Piece, Reassembler},
};

/// What the pipeline hands its sinks, and what `-n` counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unit {
    /// Decode: sinks get decoded rows, and records with their connection (`-n` counts rows).
    #[default]
    Rows,
    /// `--raw`: nothing is decoded; sinks get records only (`-n` counts records).
    Records,
}

/// Which records and rows reach the sinks, and when to stop.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub unit: Unit,
    pub filter: Filter,
    /// Stop after this many units (`-n`); with `failed_only`, after this many failed calls.
    pub limit: Option<u64>,
    /// `-x`: only calls that failed, each call's rows together when it ends (rows only; the
    /// records that sinks get are not held back, so `-w` still writes the whole capture).
    pub failed_only: bool,
}

pub struct Pipeline {
    reassembler: Reassembler,
    conns: ConnTable,
    rows: RowBuilder,
    render: Renderer,
    plan: Plan,
    sinks: Vec<Box<dyn Sink>>,
    pub stats: Stats,
    pieces: Vec<Piece>,
    events: Vec<(Arc<ConnInfo>, CallEvent)>,
    /// Names the container at each end of a row (live capture only).
    attributor: Option<Box<dyn Attributor>>,
    /// The `-x` stage (None without `-x`), and the rows it released.
    failed: Option<FailedCalls>,
    released: Vec<HeldRow>,
    /// The capture is ending: calls ended now without their own status were still open.
    stopping: bool,
}

impl Pipeline {
    pub fn new(render: Renderer, plan: Plan, sinks: Vec<Box<dyn Sink>>) -> Self {
        Pipeline {
            reassembler: Reassembler::default(),
            conns: ConnTable::new(&crate::protocol::detect::Detector),
            rows: RowBuilder::new(sinks.iter().any(|s| s.wants_headers())),
            render,
            sinks,
            stats: Stats::default(),
            pieces: Vec::new(),
            events: Vec::new(),
            attributor: None,
            failed: plan.failed_only.then(FailedCalls::default),
            released: Vec::new(),
            stopping: false,
            plan,
        }
    }

    /// Calls and bytes the `-x` stage holds (None without `-x`).
    pub fn failed_held(&self) -> Option<(usize, usize)> {
        self.failed.as_ref().map(FailedCalls::held)
    }

    /// Replaces the `-x` stage (tests use small limits).
    pub fn set_failed_calls(&mut self, failed: FailedCalls) {
        if self.plan.failed_only {
            self.failed = Some(failed);
        }
    }

    /// From now on, rows name the container at each end (asked before the filter).
    pub fn set_attributor(&mut self, attributor: Box<dyn Attributor>) {
        self.attributor = Some(attributor);
    }

    /// Socket inodes of connections open before the tracer started (decoded as late joins).
    pub fn set_preexisting(&mut self, inodes: impl IntoIterator<Item = u64>) {
        self.conns.set_preexisting(inodes);
    }

    /// The connection of these socket identities ended (capture files see FIN/RST).
    pub fn close_connection(&mut self, ts_ns: u64, a: u64, b: u64) -> io::Result<()> {
        self.conns.close(ts_ns, a, b, &mut self.events);
        for sink in &mut self.sinks {
            sink.connection_closed(ts_ns, a, b)?;
        }
        self.emit()
    }

    /// Whether `-n` has been reached.
    pub fn done(&self) -> bool {
        let shown = match &self.failed {
            Some(failed) => failed.counts.shown,
            None => self.stats.rows,
        };
        self.plan.limit.is_some_and(|n| shown >= n)
    }

    /// Pushes one captured record through; returns false once `-n` is reached.
    pub fn push(&mut self, chunk: &Chunk) -> io::Result<bool> {
        if self.done() {
            return Ok(false);
        }
        self.stats.records += 1;
        self.stats.captured_bytes += chunk.data.len() as u64;
        if chunk.missing() > 0 {
            self.stats.truncated_records += 1;
        }
        self.pieces.clear();
        self.reassembler.accept(chunk, &mut self.pieces);
        self.stats.evicted_directions = self.reassembler.evicted;
        for piece in &self.pieces {
            match *piece {
                Piece::Gap { len, .. } => self.stats.gap_bytes += len,
                Piece::Missing { len, .. } => self.stats.missing_bytes += len,
                Piece::Overlap { len, .. } => self.stats.overlap_bytes += len,
                _ => {}
            }
        }
        let filter = &self.plan.filter;
        let record_containers = !filter.containers.is_empty()
            || !filter.pods.is_empty()
            || self.sinks.iter().any(|s| s.wants_record_containers());
        let containers = self
            .attributor
            .as_mut()
            .filter(|_| record_containers)
            .map(|a| [a.container(chunk.tgid), a.container(chunk.peer_tgid)]);
        if self.plan.unit == Unit::Records {
            if self.plan.filter.accepts_record(chunk, None)
                && self
                    .plan
                    .filter
                    .accepts_record_containers(containers.as_ref())
            {
                let record = Record {
                    chunk,
                    pieces: &self.pieces,
                    conn: None,
                    containers: containers.as_ref(),
                };
                deliver(&mut self.sinks, &record)?;
                self.stats.rows += 1;
            }
            return Ok(!self.done());
        }
        for piece in &self.pieces {
            match *piece {
                Piece::Data { start, .. } => {
                    self.conns
                        .data(chunk, &chunk.data[start..], &mut self.events)
                }
                Piece::Gap { len, .. } | Piece::Missing { len, .. } => {
                    self.conns.gap(chunk, len, &mut self.events)
                }
                Piece::Joined { .. } => self.conns.joined(chunk, &mut self.events),
                Piece::Overlap { .. } => {}
            }
        }
        // After decoding, so that the record goes out with its connection's protocol.
        let conn = self.conns.info_of(chunk);
        if self.plan.filter.accepts_record(chunk, conn)
            && self
                .plan
                .filter
                .accepts_record_containers(containers.as_ref())
        {
            let record = Record {
                chunk,
                pieces: &self.pieces,
                conn,
                containers: containers.as_ref(),
            };
            deliver(&mut self.sinks, &record)?;
        }
        self.stats.evicted_connections = self.conns.stats.evicted;
        self.emit()?;
        Ok(!self.done())
    }

    /// Bytes held by decoders and detection buffers (for memory limits and tests).
    pub fn buffered(&self) -> usize {
        self.conns.buffered()
    }

    /// Ends every open call (`end`: the tracer stops, or the capture file ended) and finishes
    /// every sink. Each sink is finished even when printing failed (a closed pipe), so that
    /// the pcap export is a valid file after any exit; the first error is returned.
    pub fn finish(&mut self, ts_ns: u64, end: ConnEnd) -> io::Result<()> {
        self.stats.desynchronised = self.conns.desynchronised() as u64;
        self.stopping = true;
        self.conns.close_all(ts_ns, end, &mut self.events);
        let mut result = self.emit();
        for sink in &mut self.sinks {
            let finished = sink.finish();
            result = result.and(finished);
        }
        result
    }

    pub fn flush(&mut self) -> io::Result<()> {
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn emit(&mut self) -> io::Result<()> {
        let events = std::mem::take(&mut self.events);
        for (info, event) in events {
            let Some(mut row) = self.rows.row(info, event) else {
                continue;
            };
            if let Some(a) = self.attributor.as_mut() {
                row.container = a.container(row.pid);
                row.peer_container = a.container(row.peer_pid);
                row.attributed = true;
            }
            let outcome = self.count_call(&row);
            if self.done() {
                continue;
            }
            let shown = self.plan.filter.accepts(&row);
            let Some(failed) = self.failed.as_mut() else {
                if shown {
                    let headers = self.rows.take_headers(&row);
                    deliver_row(&mut self.sinks, &self.render, &row, headers.as_deref())?;
                    self.stats.rows += 1;
                }
                continue;
            };
            // Held rows keep their headers: the first request row takes them when it is held.
            let headers = self.rows.take_headers(&row);
            if failed.push(row, headers, shown, outcome, &mut self.released) {
                for (row, headers) in self.released.drain(..) {
                    deliver_row(&mut self.sinks, &self.render, &row, headers.as_deref())?;
                    self.stats.rows += 1;
                }
            }
        }
        for id in self.conns.ended.drain(..) {
            if let Some(failed) = self.failed.as_mut() {
                failed.connection_ended(id);
            }
        }
        self.stats.failed = self.failed.as_ref().map(|f| f.counts);
        Ok(())
    }

    /// Counts an END row's call in the summary; returns how the call turned out.
    fn count_call(&mut self, row: &Row) -> Option<Outcome> {
        let CallEventKind::End {
            status, latency_ns, ..
        } = &row.event
        else {
            return None;
        };
        let http = row.conn.protocol == Some(Protocol::Http1);
        let outcome = status.outcome(http, self.stopping);
        self.stats
            .call_ended(row.method_name(), &client_label(row), outcome, *latency_ns);
        Some(outcome)
    }
}

/// Hands one row to every sink.
fn deliver_row(
    sinks: &mut [Box<dyn Sink>],
    render: &Renderer,
    row: &Row,
    headers: Option<&Headers>,
) -> io::Result<()> {
    for sink in sinks {
        sink.row(row, headers, render)?;
    }
    Ok(())
}

/// Hands one record to every sink.
fn deliver(sinks: &mut [Box<dyn Sink>], record: &Record<'_>) -> io::Result<()> {
    for sink in sinks {
        sink.record(record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, io::Write, rc::Rc};

    use super::*;
    use crate::{
        attribution::Attributor,
        output::{pcap::PcapSink, rows::Row, sink::Headers, time::Clock},
        pcap::PcapWriter,
        schema::{RenderOptions, Schema},
    };

    /// What a sink was given: the senders of records, and of rows.
    #[derive(Clone, Default)]
    struct Tap {
        records: Rc<RefCell<Vec<u32>>>,
        rows: Rc<RefCell<Vec<u32>>>,
    }

    impl Sink for Tap {
        fn record(&mut self, record: &Record<'_>) -> io::Result<()> {
            self.records.borrow_mut().push(record.chunk.tgid);
            Ok(())
        }
        fn row(&mut self, row: &Row, _: Option<&Headers>, _: &Renderer) -> io::Result<()> {
            self.rows.borrow_mut().push(row.pid);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A write of `data` by `pid` on connection `conn` at stream position `pos`.
    fn send(conn: u64, pid: u32, peer: u32, pos: u64, data: &[u8]) -> Chunk {
        let side = u64::from(pid > peer);
        Chunk {
            ts_ns: 1_000 + pos,
            sock_ino: 100 + 2 * conn + side,
            peer_ino: 101 + 2 * conn - side,
            sock_id: 0x1000 + 2 * conn + side,
            peer_id: 0x1001 + 2 * conn - side,
            stream_pos: pos,
            call_len: data.len() as u32,
            chunk_off: 0,
            span_len: data.len() as u32,
            flags: 0,
            tgid: pid,
            tid: pid,
            peer_tgid: peer,
            lost_records: 0,
            pattern: 0,
            sock_type: 1,
            comm: format!("p{pid}"),
            process_comm: format!("p{pid}"),
            path: "/run/x.sock".into(),
            data: data.to_vec(),
        }
    }

    /// Two raw connections (10 <-> 20, 30 <-> 40), each side writing twice.
    fn traffic() -> Vec<Chunk> {
        let junk = b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":[1,2,3,4,5,6,7,8,9,10]}\n";
        let n = junk.len() as u64;
        let mut v = Vec::new();
        for pos in [0, n] {
            for (conn, a, b) in [(0, 10, 20), (1, 30, 40)] {
                v.push(send(conn, a, b, pos, junk));
                v.push(send(conn, b, a, pos, junk));
            }
        }
        v
    }

    fn pipeline(unit: Unit, pids: Vec<u32>, taps: &[Tap]) -> Pipeline {
        let plan = Plan {
            unit,
            filter: Filter {
                pids,
                ..Filter::default()
            },
            limit: None,
            failed_only: false,
        };
        let sinks = taps
            .iter()
            .map(|t| Box::new(t.clone()) as Box<dyn Sink>)
            .collect();
        let schema = Schema::embedded().expect("schema");
        Pipeline::new(Renderer::new(schema, RenderOptions::default()), plan, sinks)
    }

    #[test]
    fn the_filter_applies_once_for_every_sink() {
        for unit in [Unit::Rows, Unit::Records] {
            let taps = [Tap::default(), Tap::default()];
            let mut p = pipeline(unit, vec![20], &taps);
            for c in traffic() {
                p.push(&c).expect("push");
            }
            p.finish(u64::MAX, ConnEnd::CaptureEnded).expect("finish");
            for tap in &taps {
                let records = tap.records.borrow();
                assert_eq!(*records, [10, 20, 10, 20], "{unit:?}");
                let rows = tap.rows.borrow();
                match unit {
                    Unit::Rows => {
                        assert!(!rows.is_empty());
                        assert!(rows.iter().all(|&p| p == 10 || p == 20), "{rows:?}");
                    }
                    Unit::Records => assert!(rows.is_empty(), "--raw decodes nothing"),
                }
            }
            let counted = match unit {
                Unit::Rows => taps[0].rows.borrow().len(),
                Unit::Records => taps[0].records.borrow().len(),
            };
            assert_eq!(p.stats.rows, counted as u64, "-n counts what sinks get");
        }
    }

    #[test]
    fn the_limit_stops_every_sink_at_once() {
        let tap = Tap::default();
        let mut p = pipeline(Unit::Records, vec![], std::slice::from_ref(&tap));
        p.plan.limit = Some(3);
        let pushed = traffic()
            .iter()
            .take_while(|c| p.push(c).expect("push"))
            .count();
        assert_eq!(pushed, 2, "the third record reached the limit");
        assert_eq!(tap.records.borrow().len(), 3);
    }

    /// Pid 10 runs in pod `web` (namespace `prod`); everyone else on the host. Counts questions.
    struct PodOfTen(Rc<RefCell<u64>>);

    impl Attributor for PodOfTen {
        fn container(&mut self, pid: u32) -> crate::attribution::Attribution {
            *self.0.borrow_mut() += 1;
            (pid == 10).then(|| {
                std::sync::Arc::new(crate::attribution::Container {
                    id: "0123456789abcdef".into(),
                    name: Some("app".into()),
                    pod: Some("web".into()),
                    pod_namespace: Some("prod".into()),
                    ..Default::default()
                })
            })
        }
    }

    /// A row as (sender, its container id, the peer's container id).
    type SeenRow = (u32, Option<String>, Option<String>);

    /// The rows a sink was given.
    #[derive(Clone, Default)]
    struct ContainerTap(Rc<RefCell<Vec<SeenRow>>>, Rc<RefCell<Vec<u32>>>);

    impl Sink for ContainerTap {
        fn record(&mut self, record: &Record<'_>) -> io::Result<()> {
            self.1.borrow_mut().push(record.chunk.tgid);
            Ok(())
        }
        fn row(&mut self, row: &Row, _: Option<&Headers>, _: &Renderer) -> io::Result<()> {
            let id = |c: &crate::attribution::Attribution| c.as_ref().map(|c| c.id.clone());
            assert!(row.attributed);
            self.0
                .borrow_mut()
                .push((row.pid, id(&row.container), id(&row.peer_container)));
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_attributor_names_both_ends_before_the_filter() {
        for (pods, containers) in [
            (
                vec![crate::attribution::PodSelector("web.prod".into())],
                vec![],
            ),
            (vec![], vec!["0123".to_string()]),
            (vec![], vec!["app".to_string()]),
        ] {
            let tap = ContainerTap::default();
            let plan = Plan {
                filter: Filter {
                    pods,
                    containers,
                    ..Filter::default()
                },
                ..Plan::default()
            };
            let schema = Schema::embedded().expect("schema");
            let mut p = Pipeline::new(
                Renderer::new(schema, RenderOptions::default()),
                plan,
                vec![Box::new(tap.clone())],
            );
            let asked = Rc::new(RefCell::new(0));
            p.set_attributor(Box::new(PodOfTen(asked.clone())));
            for c in traffic() {
                p.push(&c).expect("push");
            }
            p.finish(u64::MAX, ConnEnd::CaptureEnded).expect("finish");
            let rows = tap.0.borrow();
            assert!(!rows.is_empty());
            assert_eq!(
                *tap.1.borrow(),
                [10, 20, 10, 20],
                "records of the pod's connection"
            );
            let pod = Some("0123456789abcdef".to_string());
            for (pid, mine, peer) in rows.iter() {
                match pid {
                    10 => assert_eq!((mine, peer), (&pod, &None)),
                    20 => assert_eq!((mine, peer), (&None, &pod)),
                    other => panic!("pid {other} has no pod at either end"),
                }
            }
            // Two questions per row built (passed or filtered out), none per record.
            let asked = *asked.borrow();
            assert!(
                asked.is_multiple_of(2) && asked as usize > 2 * rows.len(),
                "{asked}"
            );
        }
    }

    /// Without a container filter, and with no sink that shows records' containers (the pcap
    /// export does), records are not attributed: only rows are, two questions each.
    #[test]
    fn records_are_attributed_only_when_something_uses_it() {
        let tap = ContainerTap::default();
        let schema = Schema::embedded().expect("schema");
        let mut p = Pipeline::new(
            Renderer::new(schema, RenderOptions::default()),
            Plan::default(),
            vec![Box::new(tap.clone())],
        );
        let asked = Rc::new(RefCell::new(0));
        p.set_attributor(Box::new(PodOfTen(asked.clone())));
        for c in traffic() {
            p.push(&c).expect("push");
        }
        p.finish(u64::MAX, ConnEnd::CaptureEnded).expect("finish");
        let rows = tap.0.borrow().len();
        assert!(rows > 0);
        assert_eq!(*asked.borrow(), 2 * rows as u64);
    }

    use crate::testutil::Shared;

    /// Runs `traffic()` through one sink, with or without the attributor; returns its output.
    fn printed(sink: impl FnOnce(Shared) -> Box<dyn Sink>, attribute: bool) -> String {
        let out = Shared::default();
        let schema = Schema::embedded().expect("schema");
        let mut p = Pipeline::new(
            Renderer::new(schema, RenderOptions::default()),
            Plan::default(),
            vec![sink(out.clone())],
        );
        if attribute {
            p.set_attributor(Box::new(PodOfTen(Rc::default())));
        }
        for c in traffic() {
            p.push(&c).expect("push");
        }
        p.finish(u64::MAX, ConnEnd::CaptureEnded).expect("finish");
        String::from_utf8(out.0.borrow().clone()).expect("utf-8")
    }

    #[test]
    fn containers_in_the_table_and_json() {
        use crate::output::{json::JsonPrinter, table::TablePrinter};
        let table = printed(
            |o| Box::new(TablePrinter::new(o, Clock::identity(), None).with_containers()),
            true,
        );
        let mut lines = table.lines();
        let header = lines.next().expect("header");
        assert!(header.contains(" PEER    CONTAINER "), "{header}");
        assert!(header.contains(" PEER_CONTAINER "), "{header}");
        for line in lines {
            let cells: Vec<&str> = line.split_whitespace().collect();
            let (pid, mine, peer) = (cells[2], cells[5], cells[6]);
            match pid {
                "10" => assert_eq!((mine, peer), ("web/app", "-"), "{line}"),
                "20" => assert_eq!((mine, peer), ("-", "web/app"), "{line}"),
                _ => assert_eq!((mine, peer), ("-", "-"), "{line}"),
            }
        }
        let plain = printed(
            |o| Box::new(TablePrinter::new(o, Clock::identity(), None)),
            true,
        );
        assert_eq!(
            plain.lines().next(),
            Some(crate::output::table::HEADER),
            "default unchanged"
        );

        let json = printed(|o| Box::new(JsonPrinter::new(o, Clock::identity())), true);
        for line in json.lines() {
            let row: serde_json::Value = serde_json::from_str(line).expect("json");
            let (mine, peer) = (&row["container"], &row["peer_container"]);
            assert!(row.get("container").is_some() && row.get("peer_container").is_some());
            match row["pid"].as_u64() {
                Some(10) => {
                    assert_eq!(mine["pod"], "web");
                    assert_eq!(mine["pod_namespace"], "prod");
                    assert_eq!(mine["name"], "app");
                    assert_eq!(mine["id"], "0123456789abcdef");
                    assert!(peer.is_null());
                }
                Some(20) => assert_eq!(peer["pod"], "web"),
                _ => assert!(mine.is_null() && peer.is_null(), "{line}"),
            }
        }
        // Capture files (no attributor): the fields are absent, not null.
        let offline = printed(|o| Box::new(JsonPrinter::new(o, Clock::identity())), false);
        assert!(
            !offline.is_empty() && !offline.contains("\"container\""),
            "{offline}"
        );
    }

    #[test]
    fn pcapng_comments_name_the_containers() {
        let out = Shared::default();
        let writer = PcapWriter::new(out.clone()).expect("header");
        let schema = Schema::embedded().expect("schema");
        let mut p = Pipeline::new(
            Renderer::new(schema, RenderOptions::default()),
            Plan::default(),
            vec![Box::new(PcapSink::new(writer, Clock::identity()))],
        );
        p.set_attributor(Box::new(PodOfTen(Rc::default())));
        for c in traffic() {
            p.push(&c).expect("push");
        }
        p.finish(u64::MAX, ConnEnd::CaptureEnded).expect("finish");
        let bytes = out.0.borrow();
        let count = |needle: &str| {
            bytes
                .windows(needle.len())
                .filter(|w| *w == needle.as_bytes())
                .count()
        };
        // Pid 10 sends twice, pid 20 twice: each data packet names the pod at its end.
        assert_eq!(count("\ncontainer: web/app (0123456789abcdef)"), 2);
        assert_eq!(count("\npeer_container: web/app (0123456789abcdef)"), 2);
    }

    /// A pipe that takes the pcapng header, then loses its reader.
    struct ClosesAfter(usize);

    impl Write for ClosesAfter {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0 < b.len() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn regression_pcap_to_closed_pipe_mid_run_is_broken_pipe() {
        let mut header = Vec::new();
        PcapWriter::new(&mut header).expect("header");
        let writer = PcapWriter::new(ClosesAfter(header.len())).expect("header fits");
        let sink = PcapSink::new(writer, Clock::identity());
        let schema = Schema::embedded().expect("schema");
        let mut p = Pipeline::new(
            Renderer::new(schema, RenderOptions::default()),
            Plan::default(),
            vec![Box::new(sink)],
        );
        let err = p
            .push(&traffic()[0])
            .expect_err("the export's reader is gone");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        let err = p
            .finish(u64::MAX, ConnEnd::CaptureEnded)
            .expect_err("finishing writes too");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
    }
}

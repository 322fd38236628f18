//! Counters of everything that can go missing or wrong (drops, truncations, gaps,
//! desynchronisations, evictions), per-method and per-client call statistics, and what `-x`
//! held back, printed as the exit summary.

use std::collections::BTreeMap;

use tabled::{Table, Tabled, settings::Style};

use crate::{output::failed::FailedCounts, protocol::call::Outcome};

/// Latency histogram with logarithmic buckets (about 4% wide): bounded memory whatever the
/// number of calls, percentiles within a bucket's width.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    buckets: BTreeMap<u32, u64>,
    count: u64,
}

const BUCKET_BASE: f64 = 1.04;

impl Latencies {
    pub fn add(&mut self, ns: u64) {
        let b = ((ns.max(1) as f64).ln() / BUCKET_BASE.ln()) as u32;
        *self.buckets.entry(b).or_default() += 1;
        self.count += 1;
    }

    /// The `q` quantile (0..=1) in ns, at the upper edge of its bucket.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (&b, &n) in &self.buckets {
            seen += n;
            if seen >= target {
                return Some(BUCKET_BASE.powi(b as i32 + 1) as u64);
            }
        }
        None
    }
}

/// Calls, errors and latencies of one method, or of one client.
#[derive(Clone, Debug, Default)]
pub struct MethodStats {
    pub calls: u64,
    pub errors: u64,
    pub latency: Latencies,
}

/// Most distinct methods kept; the rest are summed under `(other)`.
pub const MAX_METHODS: usize = 1024;
/// Most distinct clients kept; the rest are summed under `(other)`.
pub const MAX_CLIENTS: usize = 256;

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub records: u64,
    pub malformed_records: u64,
    pub captured_bytes: u64,
    /// Records the kernel's ring buffer refused, and the bytes they covered.
    pub lost_records: u64,
    pub lost_bytes: u64,
    /// Stream bytes that arrived as gaps in user space (lost records, seen by position).
    pub gap_bytes: u64,
    /// Bytes of spans that were not captured (truncated by --max-call-bytes, unreadable, or
    /// sent without a user buffer), and how many records had such spans.
    pub missing_bytes: u64,
    pub truncated_records: u64,
    pub overlap_bytes: u64,
    pub missed_entries: u64,
    pub desynchronised: u64,
    pub evicted_connections: u64,
    /// Connection ends the kernel reported (live capture).
    pub connection_ends: u64,
    /// Connection ends the ring buffer refused: those calls ended later than they did.
    pub lost_connection_ends: u64,
    /// Exiting processes whose descriptor table was too large to scan whole for sockets.
    pub exit_scans_cut: u64,
    pub evicted_directions: u64,
    /// Size of the kernel ring buffer (live capture; 0 otherwise): kernel memory, mapped twice
    /// into the tracer, so it counts twice in its RSS.
    pub ring_bytes: u64,
    pub rows: u64,
    pub methods: BTreeMap<String, MethodStats>,
    /// Per client (`output::client::client_label`).
    pub clients: BTreeMap<String, MethodStats>,
    /// What `-x` showed and dropped (None without `-x`).
    pub failed: Option<FailedCounts>,
}

impl Stats {
    /// Counts a finished call of `method` made by `client`. Failed calls are errors; the
    /// latency of calls that were still open at the end (`Unfinished`) is not a latency.
    pub fn call_ended(
        &mut self,
        method: Option<&str>,
        client: &str,
        outcome: Outcome,
        latency_ns: Option<u64>,
    ) {
        let latency_ns = latency_ns.filter(|_| outcome != Outcome::Unfinished);
        let failed = outcome == Outcome::Failed;
        count(
            &mut self.methods,
            MAX_METHODS,
            method.unwrap_or("(unknown)"),
            failed,
            latency_ns,
        );
        count(&mut self.clients, MAX_CLIENTS, client, failed, latency_ns);
    }

    /// The exit summary: per-method table, then the loss counters.
    pub fn summary(&self) -> String {
        #[derive(Tabled)]
        struct Line {
            #[tabled(rename = "METHOD")]
            method: String,
            #[tabled(rename = "CALLS")]
            calls: u64,
            #[tabled(rename = "ERRORS")]
            errors: u64,
            #[tabled(rename = "P50")]
            p50: String,
            #[tabled(rename = "P99")]
            p99: String,
        }
        let fmt = |v: Option<u64>| v.map_or("-".to_string(), crate::output::rows::format_latency);
        let lines: Vec<Line> = self
            .methods
            .iter()
            .map(|(name, m)| Line {
                method: crate::escape::escape_str(name),
                calls: m.calls,
                errors: m.errors,
                p50: fmt(m.latency.quantile(0.5)),
                p99: fmt(m.latency.quantile(0.99)),
            })
            .collect();
        let mut out = String::new();
        if !lines.is_empty() {
            out.push_str(&Table::new(lines).with(Style::psql()).to_string());
            out.push('\n');
        }
        if !self.clients.is_empty() {
            out.push_str(&self.clients_table());
            out.push('\n');
        }
        out.push_str(&format!(
            "{} rows; captured {} records, {} bytes; lost {} records ({} bytes) in the kernel, \
             {} bytes as stream gaps; {} bytes not captured in {} records (truncated or \
             unavailable); {} malformed records; {} desynchronised connections; {} evicted \
             connections, {} evicted streams; {} missed kprobe entries",
            self.rows,
            self.records,
            self.captured_bytes,
            self.lost_records,
            self.lost_bytes,
            self.gap_bytes,
            self.missing_bytes,
            self.truncated_records,
            self.malformed_records,
            self.desynchronised,
            self.evicted_connections,
            self.evicted_directions,
            self.missed_entries,
        ));
        if self.ring_bytes > 0 {
            out.push_str(&format!(
                "\nring buffer: {} MiB of kernel memory, mapped twice into the tracer ({} MiB of \
                 its RSS)",
                self.ring_bytes >> 20,
                (2 * self.ring_bytes) >> 20,
            ));
        }
        if self.lost_connection_ends > 0 || self.exit_scans_cut > 0 {
            out.push_str(&format!(
                "\nconnection ends: {} seen, {} lost in the kernel (ring buffer full), {} exiting \
                 processes with more than {} fds not fully scanned; their calls ended later",
                self.connection_ends,
                self.lost_connection_ends,
                self.exit_scans_cut,
                containerdsnoop_common::EXIT_SCAN_MAX_FDS,
            ));
        }
        if let Some(f) = &self.failed {
            out.push_str(&format!(
                "\n-x: {} failed calls shown ({} of them without rows that did not fit); {} calls \
                 did not fit in what -x holds ({} calls, {} MiB) and lost their held rows; not \
                 shown, as not known to have failed: {} calls still open at the end, {} calls \
                 whose status the capture did not see",
                f.shown,
                f.incomplete,
                f.overflowed,
                crate::output::failed::MAX_HELD_CALLS,
                crate::output::failed::MAX_HELD_BYTES >> 20,
                f.unfinished,
                f.unseen,
            ));
        }
        out
    }

    /// The clients table: who called, how often, how many failed, the p99 latency of their
    /// calls; busiest first, `(other)` last.
    fn clients_table(&self) -> String {
        #[derive(Tabled)]
        struct Line {
            #[tabled(rename = "CLIENT")]
            client: String,
            #[tabled(rename = "CALLS")]
            calls: u64,
            #[tabled(rename = "ERRORS")]
            errors: u64,
            #[tabled(rename = "P99")]
            p99: String,
        }
        let mut clients: Vec<(&String, &MethodStats)> = self.clients.iter().collect();
        clients.sort_by_key(|(name, c)| (*name == OTHER, std::cmp::Reverse(c.calls)));
        let lines: Vec<Line> = clients
            .into_iter()
            .map(|(name, c)| Line {
                client: crate::escape::escape_str(name),
                calls: c.calls,
                errors: c.errors,
                p99: c
                    .latency
                    .quantile(0.99)
                    .map_or("-".to_string(), crate::output::rows::format_latency),
            })
            .collect();
        Table::new(lines).with(Style::psql()).to_string()
    }
}

/// The key under which what no longer fits a bounded table is summed.
const OTHER: &str = "(other)";

/// Counts one call under `name` in `table`, or under [`OTHER`] once `table` has `max` names.
fn count(
    table: &mut BTreeMap<String, MethodStats>,
    max: usize,
    name: &str,
    failed: bool,
    latency_ns: Option<u64>,
) {
    let key = if table.contains_key(name) || table.len() < max {
        name
    } else {
        OTHER
    };
    let m = match table.get_mut(key) {
        Some(m) => m,
        None => table.entry(key.to_string()).or_default(),
    };
    m.calls += 1;
    if failed {
        m.errors += 1;
    }
    if let Some(l) = latency_ns {
        m.latency.add(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut l = Latencies::default();
        for i in 1..=1000u64 {
            l.add(i * 1000);
        }
        let p50 = l.quantile(0.5).expect("p50") as f64;
        let p99 = l.quantile(0.99).expect("p99") as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.05, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.05, "{p99}");
        assert_eq!(Latencies::default().quantile(0.5), None);
    }

    #[test]
    fn summary_lists_methods_and_losses() {
        let mut s = Stats::default();
        let ok = Outcome::Succeeded;
        s.call_ended(Some("/a.B/C"), "ctr", ok, Some(1_000_000));
        s.call_ended(Some("/a.B/C"), "ctr", Outcome::Failed, Some(3_000_000));
        s.call_ended(Some("GET /v1.41/version"), "docker", ok, Some(1_000_000));
        s.call_ended(
            Some("GET /v1.41/nope"),
            "docker",
            Outcome::Failed,
            Some(1_000_000),
        );
        s.lost_records = 3;
        let text = s.summary();
        assert!(text.contains("/a.B/C"));
        assert!(text.contains("lost 3 records"));
        let line = text.lines().find(|l| l.contains("/a.B/C")).expect("row");
        assert!(line.contains(" 2 ") && line.contains(" 1 "), "{line}");
        assert_eq!(
            s.methods["GET /v1.41/version"].errors, 0,
            "HTTP 200 is a success"
        );
        assert_eq!(s.methods["GET /v1.41/nope"].errors, 1);
    }

    #[test]
    fn the_clients_table_is_bounded_busiest_first_and_counts_only_finished_latencies() {
        let mut s = Stats::default();
        for i in 0..MAX_CLIENTS + 10 {
            s.call_ended(
                Some("/a.B/C"),
                &format!("client-{i}"),
                Outcome::Succeeded,
                Some(1_000),
            );
        }
        for _ in 0..3 {
            s.call_ended(Some("/a.B/C"), "kubelet", Outcome::Failed, Some(2_000_000));
        }
        // Open when the tracer stopped: a call, not an error, and its time is no latency.
        s.call_ended(
            Some("/a.B/C"),
            "client-0",
            Outcome::Unfinished,
            Some(9_000_000_000),
        );
        assert_eq!(s.clients.len(), MAX_CLIENTS + 1, "the rest under (other)");
        assert_eq!(
            s.clients[OTHER].calls, 13,
            "10 clients, then kubelet's 3 calls"
        );
        assert_eq!(s.clients[OTHER].errors, 3);
        let c0 = &s.clients["client-0"];
        assert_eq!((c0.calls, c0.errors), (2, 0));
        let mut finished_only = Latencies::default();
        finished_only.add(1_000);
        assert_eq!(
            c0.latency.quantile(0.99),
            finished_only.quantile(0.99),
            "the 1 µs call only"
        );
        let table = s.clients_table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with(" CLIENT "), "{table}");
        assert!(
            lines[2].starts_with(" client-0 "),
            "busiest first: {}",
            lines[2]
        );
        let cells: Vec<&str> = lines[2].split('|').map(str::trim).collect();
        assert_eq!(cells, ["client-0", "2", "0", "1.0us"]);
        assert!(
            lines.last().is_some_and(|l| l.starts_with(" (other) ")),
            "(other) last, however busy: {table}"
        );
        assert_eq!(lines.len(), 2 + MAX_CLIENTS + 1);
    }
}

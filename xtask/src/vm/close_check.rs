//! Host-side verdicts on a guest's `close_session` (tests/vm/init.sh, issue #12): each call
//! whose client died or closed mid-call ends with an END row stamped with the kernel time of that
//! exit or close (between the times the client printed, before the next client's request) and
//! with its latency measured to it; the call still open at the end says "tracer stopped".

use serde_json::Value;

/// How long after a client's self-SIGKILL its exit may be stamped (TCG guests are slow).
const EXIT_WITHIN_NS: u64 = 2_000_000_000;

fn rows(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// The first row of `kind` whose method contains `target`.
fn find<'a>(rows: &'a [Value], kind: &str, target: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["type"] == kind && r["method"].as_str().is_some_and(|m| m.contains(target)))
}

/// `key` from any JSON line a client printed.
fn peer_value(peer_out: &str, key: &str) -> Option<u64> {
    rows(peer_out).iter().find_map(|v| v[key].as_u64())
}

/// Checks of one close session. `peer(case)` is what that client printed.
pub fn verdicts(
    tracer_rc: Option<&str>,
    tracer_out: &str,
    tracer_err: &str,
    peer: impl Fn(&str) -> String,
) -> Vec<(&'static str, Result<String, String>)> {
    if tracer_rc != Some("0") {
        let tail: Vec<&str> = tracer_err.lines().rev().take(10).collect();
        return vec![(
            "close: tracer",
            Err(format!(
                "exit {tracer_rc:?}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )),
        )];
    }
    let rows = rows(tracer_out);
    let later = find(&rows, "REQ", "/later").and_then(|r| r["ts_ns"].as_u64());
    let mut out = Vec::new();
    for (test, target, case) in [
        ("close: unary call, client killed", "/killed", "killed"),
        ("close: client closed first", "/closed", "closed"),
        (
            "close: stream, client killed",
            "/streamkilled",
            "streamkilled",
        ),
    ] {
        let printed = peer(case);
        let window = match case {
            "closed" => {
                peer_value(&printed, "close_started_ns").zip(peer_value(&printed, "closed_ns"))
            }
            _ => peer_value(&printed, "abort_ns").map(|t| (t, t + EXIT_WITHIN_NS)),
        };
        out.push((test, ended_live(&rows, target, window, later)));
    }
    out.push((
        "close: open at tracer stop",
        match find(&rows, "END", "/open") {
            Some(end)
                if end["abnormal"]
                    .as_str()
                    .is_some_and(|a| a.contains("tracer stopped")) =>
            {
                Ok("END says \"tracer stopped\"".into())
            }
            Some(end) => Err(format!("wrong reason: {end}")),
            None => Err("no END row for the call open at tracer stop".into()),
        },
    ));
    out
}

fn ended_live(
    rows: &[Value],
    target: &str,
    window: Option<(u64, u64)>,
    later_req: Option<u64>,
) -> Result<String, String> {
    let (from, to) = window.ok_or("the client printed no times")?;
    let req = find(rows, "REQ", target).ok_or(format!("no REQ row for {target}"))?;
    let end = find(rows, "END", target).ok_or(format!("no END row for {target}"))?;
    let ts = end["ts_ns"].as_u64().ok_or("END without ts_ns")?;
    let abnormal = end["abnormal"].as_str().unwrap_or("");
    // "connection closed before the response", or "body cut short: connection closed".
    if !abnormal.contains("connection closed") {
        return Err(format!(
            "reason {abnormal:?}, want \"connection closed\": {end}"
        ));
    }
    if !(from <= ts && ts <= to) {
        return Err(format!(
            "END stamped {ts}, not within [{from}, {to}]: {end}"
        ));
    }
    if let Some(later) = later_req
        && ts >= later
    {
        return Err(format!(
            "END stamped {ts}, after a later request at {later}"
        ));
    }
    let req_ts = req["ts_ns"].as_u64().ok_or("REQ without ts_ns")?;
    let latency = end["latency_ns"].as_u64().ok_or("END without latency")?;
    if latency.abs_diff(ts.saturating_sub(req_ts)) > 1_000_000 {
        return Err(format!(
            "latency {latency} ns, REQ to close {} ns",
            ts.saturating_sub(req_ts)
        ));
    }
    Ok(format!(
        "END {} us after the client's {}, {abnormal}, latency {} us",
        (ts - from) / 1000,
        if target == "/closed" { "close" } else { "kill" },
        latency / 1000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(kind: &str, method: &str, ts: u64, extra: Value) -> String {
        let mut v = json!({"type": kind, "method": format!("POST {method}"), "ts_ns": ts});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        format!("{v}\n")
    }

    fn end(method: &str, ts: u64, req: u64, why: &str) -> String {
        row(
            "END",
            method,
            ts,
            json!({"abnormal": why, "latency_ns": ts - req}),
        )
    }

    fn good_rows() -> String {
        [
            row("REQ", "/killed", 1_000, json!({})),
            end(
                "/killed",
                5_000,
                1_000,
                "connection closed before the response",
            ),
            row("REQ", "/closed", 10_000, json!({})),
            end(
                "/closed",
                20_500,
                10_000,
                "connection closed before the response",
            ),
            row("REQ", "/streamkilled", 30_000, json!({})),
            end(
                "/streamkilled",
                40_000,
                30_000,
                "body cut short: connection closed",
            ),
            row("REQ", "/later", 50_000, json!({})),
            row("REQ", "/open", 60_000, json!({})),
            end("/open", 90_000, 60_000, "tracer stopped"),
        ]
        .concat()
    }

    fn peer(case: &str) -> String {
        match case {
            "killed" => r#"{"pid":1,"sent_ns":900}"#.to_string() + "\n{\"abort_ns\":4000}\n",
            "closed" => "{\"close_started_ns\":20000,\"closed_ns\":21000}\n".into(),
            "streamkilled" => "{\"abort_ns\":39000}\n".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn live_ends_pass() {
        let v = verdicts(Some("0"), &good_rows(), "", peer);
        assert_eq!(v.len(), 4);
        for (test, r) in v {
            assert!(r.is_ok(), "{test}: {r:?}");
        }
    }

    #[test]
    fn late_or_mislabelled_ends_fail() {
        // The killed call ended at tracer stop: after the later request, wrong reason.
        let rows = good_rows().replace(
            &end(
                "/killed",
                5_000,
                1_000,
                "connection closed before the response",
            ),
            &end(
                "/killed",
                95_000,
                1_000,
                "tracer stopped before the response",
            ),
        );
        let v = verdicts(Some("0"), &rows, "", peer);
        assert!(v[0].1.is_err(), "{:?}", v[0]);
        // Stamped outside the close(2) window.
        let rows = good_rows().replace(
            &end(
                "/closed",
                20_500,
                10_000,
                "connection closed before the response",
            ),
            &end(
                "/closed",
                45_000,
                10_000,
                "connection closed before the response",
            ),
        );
        assert!(verdicts(Some("0"), &rows, "", peer)[1].1.is_err());
        // The open call must say "tracer stopped".
        let rows = good_rows().replace("\"tracer stopped\"", "\"connection closed\"");
        assert!(verdicts(Some("0"), &rows, "", peer)[3].1.is_err());
        // A failed tracer is one failure, with its stderr.
        let v = verdicts(Some("1"), "", "boom", peer);
        assert!(v.len() == 1 && v[0].1.as_ref().unwrap_err().contains("boom"));
    }
}

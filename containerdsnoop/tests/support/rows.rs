//! Checks over the tracer's `-o json` rows that hold for any runtime: every call named, every
//! message decoded with its schema, no connection lost its framing.

use serde_json::Value;

/// Parses JSON Lines output.
pub fn json_rows(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON row {l}: {e}")))
        .collect()
}

/// Rows of `kind` (`REQ`, `RESP`, `END`) for `method`.
pub fn rows_of<'a>(rows: &'a [Value], kind: &str, method: &str) -> Vec<&'a Value> {
    rows.iter()
        .filter(|r| r["type"] == kind && r["method"] == method)
        .collect()
}

/// Methods seen in `REQ` rows, sorted and deduplicated.
pub fn methods(rows: &[Value]) -> Vec<String> {
    let mut m: Vec<String> = rows
        .iter()
        .filter(|r| r["type"] == "REQ")
        .filter_map(|r| r["method"].as_str().map(str::to_string))
        .collect();
    m.sort();
    m.dedup();
    m
}

/// Whether a decoded message holds a part decoded without a schema: an `Any` whose type is
/// unknown shows as `{"@type": url, "@raw": {...}}`.
fn has_raw_any(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("@raw") || m.values().any(has_raw_any),
        Value::Array(a) => a.iter().any(has_raw_any),
        _ => false,
    }
}

/// What is wrong with `rows` for a run that traced every connection from its start: gRPC and
/// ttrpc rows without a method, with an inferred method, or with a message decoded without a
/// schema (`message_type` null: the method's types are unknown or the bytes did not fit them;
/// or an `Any` inside whose type is unknown); any connection not `synced` (`decoding`) and any
/// connection notice (desynchronised, lost bytes) except an HTTP/1.1 upgrade. Empty when all
/// is well.
pub fn undecoded(rows: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for r in rows {
        let kind = r["type"].as_str().unwrap_or("");
        if kind == "NOTE" {
            // An HTTP/1.1 connection that `docker exec`/`attach` hijacks for the raw stream is
            // announced, not lost: the one notice that is no problem.
            let notice = r["notice"].as_str().unwrap_or("");
            let switched = r["protocol"] == "http1" && notice.starts_with("connection switched to");
            if !switched {
                problems.push(format!("notice: {notice} ({r})"));
            }
            continue;
        }
        if let Some(d) = r["decoding"].as_str()
            && d != "synced"
        {
            problems.push(format!("connection {} is {d}: {r}", r["connection"]));
        }
        let proto = r["protocol"].as_str().unwrap_or("");
        if !matches!(proto, "grpc" | "ttrpc") || !matches!(kind, "REQ" | "RESP" | "END") {
            continue;
        }
        let method = r["method"].as_str();
        if method.is_none() {
            problems.push(format!("{proto} {kind} without a method: {r}"));
            continue;
        }
        if r["method_inferred"] == true {
            problems.push(format!("{proto} {kind} with an inferred method: {r}"));
        }
        if kind != "END" && r["message_type"].is_null() {
            problems.push(format!(
                "{proto} {kind} {} decoded without a schema: {}",
                method.unwrap_or(""),
                r["message_text"]
            ));
        } else if has_raw_any(&r["message"]) {
            problems.push(format!(
                "{proto} {kind} {} holds an Any of unknown type: {}",
                method.unwrap_or(""),
                r["message_text"]
            ));
        }
    }
    problems
}

/// Panics listing every problem `undecoded` finds (at most 20 shown).
pub fn assert_all_decoded(rows: &[Value], what: &str) {
    let problems = undecoded(rows);
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s) in {} rows:\n{}",
        problems.len(),
        rows.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

//! A one-line text form of call events, so that tests read like protocol traces and a failing
//! assertion shows the whole exchange:
//!
//! ```text
//! A#1 START GET /_ping
//! A#1 MSG req[0] text()
//! B#1 MSG resp[0] text({"ApiVersion":"1.41"})
//! B#1 END 200 OK latency=1000ns
//! ```
//!
//! `A#1` is the sending side and the stream (request sequence number for HTTP/1.1). Bodies
//! are shown whole and escaped but for double quotes (JSON stays readable in assertions),
//! protobuf bodies by length: this is for tests and debugging, not for users (that is
//! `output::rows`).

use crate::protocol::call::{Body, CallEvent, CallEventKind, Method, Role, Side};

/// The terminal-safe escape of `s`, double quotes left as they are.
fn escape_str(s: &str) -> String {
    crate::escape::escape_str(s).replace("\\\"", "\"")
}

fn escape_bytes(b: &[u8]) -> String {
    crate::escape::escape_bytes(b).replace("\\\"", "\"")
}

fn method_name(m: Option<&Method>) -> String {
    match m {
        Some(m) if m.inferred => format!("{}?", escape_str(&m.name)),
        Some(m) => escape_str(&m.name),
        None => "?".to_string(),
    }
}

fn body_text(b: &Body) -> String {
    match b {
        Body::Protobuf(p) => format!("pb({} bytes)", p.len()),
        Body::Text { text, .. } => format!("text({})", escape_str(text)),
        Body::Raw(r) => format!("raw({})", escape_bytes(r)),
        Body::Unavailable { reason, len } => {
            format!("unavailable({}; {len} bytes)", escape_str(reason))
        }
    }
}

/// One event as one line (see the module documentation).
pub fn trace_line(e: &CallEvent) -> String {
    let side = match e.side {
        Side::A => "A",
        Side::B => "B",
    };
    let head = format!("{side}#{}", e.stream);
    match &e.kind {
        CallEventKind::Start { method, .. } => {
            format!("{head} START {}", method_name(method.as_ref()))
        }
        CallEventKind::Message {
            role, index, body, ..
        } => {
            let role = match role {
                Role::Request => "req",
                Role::Response => "resp",
            };
            format!("{head} MSG {role}[{index}] {}", body_text(body))
        }
        CallEventKind::End {
            status, latency_ns, ..
        } => {
            let mut s = format!("{head} END ");
            match status.code {
                Some(c) => s.push_str(&c.to_string()),
                None => s.push('?'),
            }
            if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
                s.push(' ');
                s.push_str(&escape_str(m));
            }
            if let Some(a) = &status.abnormal {
                s.push_str(&format!(" [{}]", escape_str(a)));
            }
            if let Some(l) = latency_ns {
                s.push_str(&format!(" latency={l}ns"));
            }
            s
        }
        CallEventKind::Notice { text } => format!("{head} NOTE {}", escape_str(text)),
    }
}

/// Every event as a line.
pub fn trace(events: &[CallEvent]) -> Vec<String> {
    events.iter().map(trace_line).collect()
}

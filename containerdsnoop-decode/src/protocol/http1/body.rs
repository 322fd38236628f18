//! Turning HTTP/1.1 body bytes into `Body` values: a size cap, compact JSON (also JSON lines,
//! as docker's `/events` sends), text, or raw bytes.

use crate::protocol::call::Body;

/// Whether a content type is JSON: `application/json`, `…+json`, `text/json`, with or
/// without parameters.
pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Bytes of one message being collected: the first `max` kept, all counted.
#[derive(Debug, Default)]
pub struct Collector {
    kept: Vec<u8>,
    total: u64,
    /// The last byte seen, kept or not: JSON streams are flushed at newlines.
    last: Option<u8>,
}

impl Collector {
    pub fn push(&mut self, bytes: &[u8], max: usize) {
        if bytes.is_empty() {
            return;
        }
        self.total += bytes.len() as u64;
        self.last = bytes.last().copied();
        if self.total <= max as u64 {
            self.kept.extend_from_slice(bytes);
        } else if !self.kept.is_empty() {
            // Over the cap: the body will be reported unavailable, so stop keeping bytes.
            self.kept = Vec::new();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn ends_line(&self) -> bool {
        self.last == Some(b'\n')
    }

    pub fn held(&self) -> usize {
        self.kept.len()
    }

    /// The collected message as a `Body`; the collector is empty afterwards.
    pub fn take(&mut self, content_type: Option<&str>, max: usize) -> Body {
        let total = std::mem::take(&mut self.total);
        let data = std::mem::take(&mut self.kept);
        self.last = None;
        if total > data.len() as u64 {
            return Body::Unavailable {
                reason: format!("body over the {max}-byte limit"),
                len: total,
            };
        }
        to_body(content_type, data)
    }
}

/// Classifies a complete body. JSON that parses is re-serialised compactly (one line per
/// value for JSON lines); valid UTF-8 without control characters other than tab, CR and LF is
/// text; anything else is raw.
pub fn to_body(content_type: Option<&str>, data: Vec<u8>) -> Body {
    let ct = content_type.map(str::to_string);
    if is_json(content_type)
        && let Some(text) = compact_json(&data)
    {
        return Body::Text {
            content_type: ct,
            text,
        };
    }
    match String::from_utf8(data) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')) =>
        {
            Body::Text {
                content_type: ct,
                text,
            }
        }
        Ok(text) => Body::Raw(text.into_bytes()),
        Err(e) => Body::Raw(e.into_bytes()),
    }
}

/// Every JSON value in `data` (whitespace-separated), compacted and joined by newlines;
/// `None` if any part does not parse.
fn compact_json(data: &[u8]) -> Option<String> {
    let mut out = String::new();
    for value in serde_json::Deserializer::from_slice(data).into_iter::<serde_json::Value>() {
        let value = value.ok()?;
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&serde_json::to_string(&value).ok()?);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_compacted_and_json_lines_kept_apart() {
        let b = to_body(
            Some("application/json; charset=utf-8"),
            b"{ \"a\" : [1, 2],\n \"b\": null }\n".to_vec(),
        );
        assert_eq!(
            b,
            Body::Text {
                content_type: Some("application/json; charset=utf-8".into()),
                text: r#"{"a":[1,2],"b":null}"#.into()
            }
        );
        let b = to_body(Some("application/json"), b"{\"x\":1}\n{\"y\":2}\n".to_vec());
        assert!(matches!(b, Body::Text { text, .. } if text == "{\"x\":1}\n{\"y\":2}"));
        // Broken JSON stays as sent.
        let b = to_body(Some("application/json"), b"{\"x\":".to_vec());
        assert!(matches!(b, Body::Text { text, .. } if text == "{\"x\":"));
    }

    #[test]
    fn text_raw_and_cap() {
        assert!(matches!(to_body(None, b"OK".to_vec()), Body::Text { .. }));
        assert!(matches!(
            to_body(None, b"\x01\x00\x00\x00".to_vec()),
            Body::Raw(_)
        ));
        assert!(matches!(
            to_body(Some("text/plain"), vec![0xff, 0xfe]),
            Body::Raw(_)
        ));
        let mut c = Collector::default();
        c.push(b"0123456789", 8);
        assert_eq!(c.held(), 0);
        assert_eq!(
            c.take(None, 8),
            Body::Unavailable {
                reason: "body over the 8-byte limit".into(),
                len: 10
            }
        );
        assert!(c.is_empty());
    }
}

//! HTTP/1.x message heads (RFC 9112 §2–5): the request or status line and the header fields,
//! parsed from a complete head (everything up to the empty line). Lines may end in CRLF or a
//! bare LF, as Go's `textproto` accepts; a lone CR inside a line stays part of it, so a value
//! cannot smuggle a second header past us.

use std::fmt;

/// Longest method token accepted.
const MAX_METHOD: usize = 32;

/// Header fields kept per message; more are counted and dropped.
pub const MAX_HEADERS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: String,
        /// The request-target as sent (path and query, or `*`, or an absolute URI).
        target: String,
        /// Minor version: 0 or 1.
        minor: u8,
    },
    Status {
        minor: u8,
        code: u16,
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub start: StartLine,
    /// Fields in wire order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Fields beyond [`MAX_HEADERS`].
    pub dropped_headers: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    BadStartLine(String),
    BadHeaderLine(String),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::BadStartLine(l) => write!(f, "malformed start line {l:?}"),
            HeadError::BadHeaderLine(l) => write!(f, "malformed header line {l:?}"),
        }
    }
}

/// A short, lossy preview of a bad line for error messages (the renderer escapes it).
fn preview(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned()
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Parses `HTTP/1.0` or `HTTP/1.1`.
fn version(v: &[u8]) -> Option<u8> {
    match v {
        b"HTTP/1.1" => Some(1),
        b"HTTP/1.0" => Some(0),
        _ => None,
    }
}

/// `METHOD SP target SP HTTP/1.x` (without the line end). The method must be upper-case
/// letters, which every real method is: it keeps detection from matching arbitrary words.
pub fn parse_request_line(line: &[u8]) -> Option<(String, String, u8)> {
    let mut parts = line.split(|&c| c == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let minor = version(parts.next()?)?;
    if parts.next().is_some()
        || method.is_empty()
        || method.len() > MAX_METHOD
        || !method.iter().all(|c| c.is_ascii_uppercase())
        || target.is_empty()
        // No controls: a target with CR, LF or NUL in it is not one a server would take.
        || target.iter().any(|&c| c < 0x21 || c == 0x7f)
    {
        return None;
    }
    Some((
        String::from_utf8_lossy(method).into_owned(),
        String::from_utf8_lossy(target).into_owned(),
        minor,
    ))
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`.
pub fn parse_status_line(line: &[u8]) -> Option<(u8, u16, String)> {
    let minor = version(line.get(..8)?)?;
    let rest = line.get(8..)?;
    let rest = rest.strip_prefix(b" ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let reason = match rest.get(3..) {
        None | Some(b"") => "",
        Some(r) => std::str::from_utf8(r.strip_prefix(b" ")?).unwrap_or(""),
    };
    // A reason with control characters is not one a server wrote.
    if reason.chars().any(|c| c.is_control() && c != '\t') {
        return None;
    }
    Some((minor, code, reason.to_string()))
}

pub fn is_request_line(line: &[u8]) -> bool {
    parse_request_line(line).is_some()
}

pub fn is_status_line(line: &[u8]) -> bool {
    parse_status_line(line).is_some()
}

/// Splits a head into lines, dropping the line ends (CRLF or LF).
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Parses a complete head (start line, fields, without the final empty line).
pub fn parse(head: &[u8]) -> Result<Head, HeadError> {
    let mut it = lines(head);
    let first = it.next().unwrap_or_default();
    let start = if let Some((method, target, minor)) = parse_request_line(first) {
        StartLine::Request {
            method,
            target,
            minor,
        }
    } else if let Some((minor, code, reason)) = parse_status_line(first) {
        StartLine::Status {
            minor,
            code,
            reason,
        }
    } else {
        return Err(HeadError::BadStartLine(preview(first)));
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut dropped_headers = 0;
    for line in it {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // obs-fold (RFC 9112 §5.2): a continuation of the previous value.
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(String::from_utf8_lossy(line).trim());
                    continue;
                }
                None if dropped_headers > 0 => continue,
                None => return Err(HeadError::BadHeaderLine(preview(line))),
            }
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            return Err(HeadError::BadHeaderLine(preview(line)));
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
            return Err(HeadError::BadHeaderLine(preview(line)));
        }
        if headers.len() >= MAX_HEADERS {
            dropped_headers += 1;
            continue;
        }
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim_matches([' ', '\t'])
            .to_string();
        headers.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(Head {
        start,
        headers,
        dropped_headers,
    })
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header (`Connection`, `Transfer-Encoding`) lists `token`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// `Transfer-Encoding` ends in `chunked` (RFC 9112 §6.3: then the body is chunked, whatever
    /// Content-Length says).
    pub fn is_chunked(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    }

    /// `Content-Length`: `Ok(None)` when absent, an error when invalid or when several
    /// values disagree (a request-smuggling shape, RFC 9112 §6.3).
    pub fn content_length(&self) -> Result<Option<u64>, String> {
        let mut found: Option<u64> = None;
        for (_, v) in self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            for part in v.split(',') {
                let part = part.trim();
                if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("invalid Content-Length {v:?}"));
                }
                let n: u64 = part
                    .parse()
                    .map_err(|_| format!("Content-Length {v:?} out of range"))?;
                match found {
                    Some(f) if f != n => {
                        return Err(format!("conflicting Content-Length values {f} and {n}"));
                    }
                    _ => found = Some(n),
                }
            }
        }
        Ok(found)
    }

    pub fn content_type(&self) -> Option<&str> {
        self.get("content-type")
    }
}

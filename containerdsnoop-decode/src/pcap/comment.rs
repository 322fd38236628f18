//! The process metadata an export attaches to each packet as a pcapng comment (`opt_comment`),
//! readable in Wireshark's packet details and parsed back by `-r` so that reading our own export
//! reproduces the live capture's chunks. One `key: value` per line, after a tag line, in the
//! spirit of ptcpdump's comments; values escape `\`, CR and LF.

use crate::{protocol::Protocol, record::Chunk};

/// First line of our metadata comments; comments without it are someone else's.
pub const TAG: &str = "containerdsnoop";

/// Longest comment parsed back (ours are a few hundred bytes).
pub const MAX_COMMENT_LEN: usize = 8192;

/// Metadata of the packet's sender, as the live capture saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub comm: String,
    pub process_comm: String,
    pub tgid: u32,
    pub tid: u32,
    pub peer_tgid: u32,
    pub path: String,
    pub sock_ino: u64,
    pub peer_ino: u64,
    /// The sockets' opaque identities (`Chunk::sock_id`/`peer_id`).
    pub sock_id: u64,
    pub peer_id: u64,
    /// Stream position of the packet's first payload byte.
    pub stream_pos: Option<u64>,
    pub flags: u32,
    pub lost_records: u32,
    /// Bytes right after this packet's payload that belong to the same record but were not
    /// captured (a truncated or unreadable span): not a loss, part of the record.
    pub missing: u64,
    /// Bytes right before this packet's payload that the capture lost: the hole in the
    /// sequence space is final, no retransmission will fill it.
    pub gap: u64,
    /// The connection's protocol (on handshake packets); a name we do not know reads as None.
    pub protocol: Option<Protocol>,
    /// The sender's and the peer's containers (`pod/name (id)`), when the capture named them.
    pub container: Option<String>,
    pub peer_container: Option<String>,
}

impl Meta {
    pub fn from_chunk(c: &Chunk) -> Meta {
        Meta {
            comm: c.comm.clone(),
            process_comm: c.process_comm.clone(),
            tgid: c.tgid,
            tid: c.tid,
            peer_tgid: c.peer_tgid,
            path: c.path.clone(),
            sock_ino: c.sock_ino,
            peer_ino: c.peer_ino,
            sock_id: c.sock_id,
            peer_id: c.peer_id,
            stream_pos: None,
            flags: c.flags,
            lost_records: c.lost_records,
            missing: 0,
            gap: 0,
            protocol: None,
            container: None,
            peer_container: None,
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(256);
        s.push_str(TAG);
        let mut line = |k: &str, v: &str| {
            s.push('\n');
            s.push_str(k);
            s.push_str(": ");
            escape_into(&mut s, v);
        };
        line("comm", &self.comm);
        line("process", &self.process_comm);
        line("pid", &self.tgid.to_string());
        line("tid", &self.tid.to_string());
        line("peer_pid", &self.peer_tgid.to_string());
        line("path", &self.path);
        line("sock_ino", &self.sock_ino.to_string());
        line("peer_ino", &self.peer_ino.to_string());
        line("sock_id", &format!("{:#x}", self.sock_id));
        line("peer_id", &format!("{:#x}", self.peer_id));
        if let Some(p) = self.stream_pos {
            line("stream_pos", &p.to_string());
        }
        line("flags", &format!("{:#x}", self.flags));
        if self.lost_records > 0 {
            line("lost_records", &self.lost_records.to_string());
        }
        if self.missing > 0 {
            line("missing", &self.missing.to_string());
        }
        if self.gap > 0 {
            line("gap", &self.gap.to_string());
        }
        if let Some(p) = self.protocol {
            line("protocol", p.name());
        }
        if let Some(c) = &self.container {
            line("container", c);
        }
        if let Some(c) = &self.peer_container {
            line("peer_container", c);
        }
        s
    }

    /// Parses one of our comments; `None` for anyone else's (or an oversized one).
    pub fn parse(text: &str) -> Option<Meta> {
        if text.len() > MAX_COMMENT_LEN {
            return None;
        }
        let mut lines = text.split('\n');
        if lines.next()? != TAG {
            return None;
        }
        let mut m = Meta::default();
        for l in lines {
            let Some((k, v)) = l.split_once(": ") else {
                continue;
            };
            let v = unescape(v);
            let num = |v: &str| v.parse::<u64>().ok();
            let hex = |v: &str| {
                v.strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
            };
            match k {
                "comm" => m.comm = v,
                "process" => m.process_comm = v,
                "pid" => m.tgid = num(&v).unwrap_or(0) as u32,
                "tid" => m.tid = num(&v).unwrap_or(0) as u32,
                "peer_pid" => m.peer_tgid = num(&v).unwrap_or(0) as u32,
                "path" => m.path = v,
                "sock_ino" => m.sock_ino = num(&v).unwrap_or(0),
                "peer_ino" => m.peer_ino = num(&v).unwrap_or(0),
                "sock_id" => m.sock_id = hex(&v).unwrap_or(0),
                "peer_id" => m.peer_id = hex(&v).unwrap_or(0),
                "stream_pos" => m.stream_pos = num(&v),
                "flags" => m.flags = hex(&v).and_then(|f| u32::try_from(f).ok()).unwrap_or(0),
                "lost_records" => m.lost_records = num(&v).unwrap_or(0) as u32,
                "missing" => m.missing = num(&v).unwrap_or(0),
                "gap" => m.gap = num(&v).unwrap_or(0),
                "protocol" => m.protocol = Protocol::from_name(&v),
                "container" => m.container = Some(v),
                "peer_container" => m.peer_container = Some(v),
                _ => {}
            }
        }
        Some(m)
    }
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_awkward_values() {
        let m = Meta {
            comm: "event engine".into(),
            process_comm: "python3".into(),
            tgid: 10,
            tid: 11,
            peer_tgid: 12,
            path: "@weird\\name\nwith: newline".into(),
            sock_ino: 100,
            peer_ino: 101,
            sock_id: 0xdead_beef_0000_0001,
            peer_id: 0x1234,
            stream_pos: Some(24),
            flags: 0x210,
            lost_records: 2,
            missing: 7,
            gap: 9,
            protocol: Some(Protocol::Grpc),
            container: Some("web/app (0123456789ab)".into()),
            peer_container: None,
        };
        let text = m.encode();
        assert_eq!(text.lines().next(), Some(TAG));
        assert_eq!(Meta::parse(&text), Some(m));
    }

    #[test]
    fn foreign_comments_are_ignored() {
        assert_eq!(Meta::parse("PID: 1\nCmd: curl"), None);
        assert_eq!(Meta::parse(""), None);
        let huge = format!("{TAG}\n{}", "x".repeat(MAX_COMMENT_LEN));
        assert_eq!(Meta::parse(&huge), None);
    }
}

//! gRPC Length-Prefixed-Message framing (gRPC over HTTP/2, "Requests"/"Responses"): cuts one
//! direction of one stream's DATA bytes into messages, wherever the DATA frames were cut.

/// `Compressed-Flag (1) | Message-Length (4, big endian)`.
pub const PREFIX_LEN: usize = 5;

/// What the deframer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deframed {
    Message {
        compressed: bool,
        data: Vec<u8>,
    },
    /// A message longer than the limit: reported as soon as its prefix is seen, then its bytes
    /// are skipped so the messages after it still frame correctly.
    Oversize {
        compressed: bool,
        len: u64,
    },
    /// A prefix whose flag byte is neither 0 nor 1: the bytes are not gRPC framing, so this
    /// direction of the stream is not framed any further.
    Invalid {
        flag: u8,
    },
}

#[derive(Debug)]
enum State {
    Prefix {
        buf: [u8; PREFIX_LEN],
        have: usize,
    },
    Body {
        compressed: bool,
        len: usize,
        data: Vec<u8>,
    },
    Skip {
        remaining: u64,
    },
    Invalid,
}

#[derive(Debug)]
pub struct Deframer {
    state: State,
    max_message: usize,
}

impl Deframer {
    pub fn new(max_message: usize) -> Deframer {
        Deframer {
            state: State::Prefix {
                buf: [0; PREFIX_LEN],
                have: 0,
            },
            max_message,
        }
    }

    /// Consumes `data`, appending every piece it completes to `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Deframed>) {
        // Each iteration consumes at least one byte or completes a zero-length message.
        loop {
            match &mut self.state {
                State::Invalid => return,
                State::Prefix { buf, have } => {
                    if data.is_empty() {
                        return;
                    }
                    let take = (PREFIX_LEN - *have).min(data.len());
                    buf[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    data = &data[take..];
                    if *have < PREFIX_LEN {
                        return;
                    }
                    let flag = buf[0];
                    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                    if flag > 1 {
                        out.push(Deframed::Invalid { flag });
                        self.state = State::Invalid;
                        return;
                    }
                    let compressed = flag == 1;
                    self.state = match usize::try_from(len) {
                        Ok(len) if len <= self.max_message => {
                            // Reserve what this chunk can supply, not what the prefix claims.
                            State::Body {
                                compressed,
                                len,
                                data: Vec::with_capacity(len.min(data.len())),
                            }
                        }
                        _ => {
                            out.push(Deframed::Oversize {
                                compressed,
                                len: u64::from(len),
                            });
                            State::Skip {
                                remaining: u64::from(len),
                            }
                        }
                    };
                }
                State::Body {
                    compressed,
                    len,
                    data: body,
                } => {
                    let take = (*len - body.len()).min(data.len());
                    body.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if body.len() < *len {
                        return;
                    }
                    out.push(Deframed::Message {
                        compressed: *compressed,
                        data: std::mem::take(body),
                    });
                    self.state = State::Prefix {
                        buf: [0; PREFIX_LEN],
                        have: 0,
                    };
                }
                State::Skip { remaining } => {
                    let take = (*remaining).min(data.len() as u64);
                    *remaining -= take;
                    data = &data[take as usize..];
                    if *remaining > 0 {
                        return;
                    }
                    self.state = State::Prefix {
                        buf: [0; PREFIX_LEN],
                        have: 0,
                    };
                }
            }
        }
    }

    /// Bytes of an incomplete message held in memory.
    pub fn held(&self) -> usize {
        match &self.state {
            State::Body { data, .. } => data.len(),
            _ => 0,
        }
    }

    /// Gives up the message being assembled (its memory is needed elsewhere): returns its
    /// claimed length and skips the rest of it, so framing continues after it.
    pub fn abandon(&mut self) -> Option<u64> {
        let State::Body { len, data, .. } = &self.state else {
            return None;
        };
        let (len, seen) = (*len as u64, data.len() as u64);
        self.state = State::Skip {
            remaining: len - seen,
        };
        Some(len)
    }

    /// When the stream ends inside a message: `(claimed length, bytes seen)`.
    pub fn partial(&self) -> Option<(u64, u64)> {
        match &self.state {
            State::Prefix { have: 0, .. } | State::Invalid => None,
            State::Prefix { have, .. } => Some((0, *have as u64)),
            State::Body { len, data, .. } => Some((*len as u64, data.len() as u64)),
            State::Skip { .. } => None,
        }
    }
}

/// A DATA payload that fills a frame of this size may end inside a message: grpc-go cuts
/// messages into frames of `http2MaxFrameLen` = 16384 bytes.
pub const FULL_FRAME: usize = 16384;

/// Whether a DATA payload seen without what came before it (late join, lost bytes) plausibly
/// starts a message: its prefixes chain to exactly the end of the payload, or the payload fills
/// a whole frame and its first prefix is plausible. gRPC writers start each message in a new
/// DATA frame, so the first such frame resumes framing.
pub fn starts_messages(payload: &[u8], max_message: usize) -> bool {
    let mut rest = payload;
    let mut first = true;
    while !rest.is_empty() {
        let Some(prefix) = rest.get(..PREFIX_LEN) else {
            return false;
        };
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if prefix[0] > 1 || len > max_message {
            return false;
        }
        let Some(after) = rest.get(PREFIX_LEN + len..) else {
            return first && payload.len() >= FULL_FRAME;
        };
        rest = after;
        first = false;
    }
    !first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn run(chunks: &[&[u8]], max: usize) -> Vec<Deframed> {
        let mut d = Deframer::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out);
        }
        out
    }

    fn m(data: &[u8]) -> Deframed {
        Deframed::Message {
            compressed: false,
            data: data.to_vec(),
        }
    }

    #[test]
    fn several_per_chunk_and_zero_length() {
        let mut b = msg(0, b"one");
        b.extend(msg(0, b""));
        b.extend(msg(0, b"three"));
        assert_eq!(run(&[&b], 100), vec![m(b"one"), m(b""), m(b"three")]);
    }

    #[test]
    fn split_anywhere_including_prefix_alone() {
        let mut b = msg(0, b"hello world");
        b.extend(msg(1, b"zz"));
        let want = run(&[&b], 100);
        for cut in 0..=b.len() {
            for cut2 in cut..=b.len() {
                assert_eq!(
                    run(&[&b[..cut], &b[cut..cut2], &b[cut2..]], 100),
                    want,
                    "{cut} {cut2}"
                );
            }
        }
        assert_eq!(run(&[&b[..5], &b[5..]], 100), want);
    }

    #[test]
    fn oversize_is_reported_and_skipped() {
        let mut b = msg(0, &[7; 50]);
        b.extend(msg(0, b"next"));
        assert_eq!(
            run(&[&b[..3], &b[3..20], &b[20..]], 10),
            vec![
                Deframed::Oversize {
                    compressed: false,
                    len: 50
                },
                m(b"next")
            ]
        );
    }

    #[test]
    fn claim_of_4_gib_allocates_nothing() {
        let mut d = Deframer::new(16 << 20);
        let mut out = Vec::new();
        d.push(&[0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3], &mut out);
        assert_eq!(
            out,
            vec![Deframed::Oversize {
                compressed: false,
                len: u32::MAX as u64
            }]
        );
        assert_eq!(d.partial(), None);
    }

    #[test]
    fn invalid_flag_stops_framing() {
        assert_eq!(
            run(&[&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]], 10),
            vec![Deframed::Invalid { flag: 2 }]
        );
    }

    #[test]
    fn abandoned_message_is_skipped() {
        let mut b = msg(0, b"hello");
        b.extend(msg(0, b"next"));
        let mut d = Deframer::new(100);
        let mut out = Vec::new();
        d.push(&b[..7], &mut out);
        assert_eq!(d.held(), 2);
        assert_eq!(d.abandon(), Some(5));
        assert_eq!(d.held(), 0);
        d.push(&b[7..], &mut out);
        assert_eq!(out, vec![m(b"next")]);
    }

    #[test]
    fn message_starts_are_recognised() {
        let two = [msg(0, b"one"), msg(1, b"")].concat();
        assert!(starts_messages(&two, 100));
        assert!(!starts_messages(&two[1..], 100));
        assert!(!starts_messages(&two[..two.len() - 1], 100));
        assert!(!starts_messages(&[], 100));
        assert!(!starts_messages(&msg(2, b"x"), 100));
        let big = msg(0, &[7; 20000]);
        assert!(starts_messages(&big[..FULL_FRAME], 100_000));
        assert!(!starts_messages(&big[..FULL_FRAME - 1], 100_000));
        assert!(!starts_messages(&big[..FULL_FRAME], 1000));
    }

    #[test]
    fn partial_message_is_visible() {
        let b = msg(0, b"hello");
        let mut d = Deframer::new(100);
        let mut out = Vec::new();
        d.push(&b[..7], &mut out);
        assert_eq!(d.partial(), Some((5, 2)));
    }
}

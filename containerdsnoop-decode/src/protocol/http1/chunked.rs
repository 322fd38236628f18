//! The chunked transfer coding (RFC 9112 §7.1) as an incremental decoder: feed any slice of
//! the body, get data pieces and chunk boundaries back, without buffering more than one chunk
//! size line. Extensions are ignored; trailers are skipped (their size is bounded).

use std::fmt;

/// Longest chunk size line (size and extensions) accepted.
pub const MAX_SIZE_LINE: usize = 4096;
/// Longest trailer section accepted.
pub const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a size line (the part seen so far is in `Dechunker::line`).
    Size,
    /// Inside chunk data, `left` bytes to go.
    Data {
        left: u64,
    },
    /// After chunk data: expecting CR LF (`seen_cr` when the CR came).
    DataEnd {
        seen_cr: bool,
    },
    /// After the last chunk: trailer lines until an empty line.
    Trailers,
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkError {
    BadSize(String),
    SizeLineTooLong,
    MissingCrlf(u8),
    TrailersTooLong,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::BadSize(l) => write!(f, "invalid chunk size line {l:?}"),
            ChunkError::SizeLineTooLong => {
                write!(f, "chunk size line longer than {MAX_SIZE_LINE} bytes")
            }
            ChunkError::MissingCrlf(c) => {
                write!(f, "chunk data not followed by CRLF (got {c:#04x})")
            }
            ChunkError::TrailersTooLong => write!(f, "trailers longer than {MAX_TRAILERS} bytes"),
        }
    }
}

/// What a step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Dechunked<'a> {
    /// Body bytes.
    Data(&'a [u8]),
    /// A chunk's data ended: a boundary the sender chose (a flush), used to emit streams.
    ChunkEnd,
    /// The last chunk and the trailers were read: the body is complete.
    End,
}

#[derive(Debug)]
pub struct Dechunker {
    state: State,
    line: Vec<u8>,
    /// Bytes of trailer section read so far.
    trailers: usize,
}

impl Default for Dechunker {
    fn default() -> Dechunker {
        Dechunker {
            state: State::Size,
            line: Vec::new(),
            trailers: 0,
        }
    }
}

impl Dechunker {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes held (a partial size or trailer line).
    pub fn held(&self) -> usize {
        self.line.len()
    }

    /// Decodes from `input`, returning how many bytes were used and what they gave. Call
    /// repeatedly until `input` is used up or the body is `End`.
    pub fn step<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Dechunked<'a>>), ChunkError> {
        match self.state {
            State::Done => Ok((0, None)),
            State::Data { left } => {
                let n = (input.len() as u64).min(left) as usize;
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataEnd { seen_cr: false }
                } else {
                    State::Data { left }
                };
                Ok((n, (n > 0).then_some(Dechunked::Data(&input[..n]))))
            }
            State::DataEnd { seen_cr } => {
                let Some(&c) = input.first() else {
                    return Ok((0, None));
                };
                match (seen_cr, c) {
                    (false, b'\r') => {
                        self.state = State::DataEnd { seen_cr: true };
                        Ok((1, None))
                    }
                    // Tolerate a bare LF, as Go's reader does.
                    (_, b'\n') => {
                        self.state = State::Size;
                        Ok((1, Some(Dechunked::ChunkEnd)))
                    }
                    (_, other) => Err(ChunkError::MissingCrlf(other)),
                }
            }
            State::Size => {
                let Some((used, line)) = self.take_line(input, MAX_SIZE_LINE)? else {
                    return Ok((input.len(), None));
                };
                let size = parse_size(&line)?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::Data { left: size }
                };
                Ok((used, None))
            }
            State::Trailers => {
                let room = MAX_TRAILERS.saturating_sub(self.trailers).max(1);
                let Some((used, line)) = self.take_line(input, room)? else {
                    self.trailers += input.len();
                    return Ok((input.len(), None));
                };
                self.trailers += used;
                if self.trailers > MAX_TRAILERS {
                    return Err(ChunkError::TrailersTooLong);
                }
                if line.is_empty() {
                    self.state = State::Done;
                    return Ok((used, Some(Dechunked::End)));
                }
                Ok((used, None))
            }
        }
    }

    /// Collects one line (without its CRLF or LF). `Ok(None)`: all of `input` was taken and
    /// the line goes on.
    fn take_line(
        &mut self,
        input: &[u8],
        max: usize,
    ) -> Result<Option<(usize, Vec<u8>)>, ChunkError> {
        let nl = input.iter().position(|&c| c == b'\n');
        let take = nl.map_or(input.len(), |p| p + 1);
        if self.line.len() + take > max + 2 {
            return Err(if self.state == State::Trailers {
                ChunkError::TrailersTooLong
            } else {
                ChunkError::SizeLineTooLong
            });
        }
        self.line.extend_from_slice(&input[..take]);
        if nl.is_none() {
            return Ok(None);
        }
        let mut line = std::mem::take(&mut self.line);
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some((take, line)))
    }
}

/// `1*HEXDIG [; extensions]`, at most 15 hex digits (no size near `u64::MAX`).
fn parse_size(line: &[u8]) -> Result<u64, ChunkError> {
    let bad =
        || ChunkError::BadSize(String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned());
    let end = line
        .iter()
        .position(|&c| c == b';' || c == b' ' || c == b'\t')
        .unwrap_or(line.len());
    let digits = &line[..end];
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad());
    }
    let mut n: u64 = 0;
    for &d in digits {
        let v = (d as char).to_digit(16).ok_or_else(bad)?;
        n = n << 4 | u64::from(v);
    }
    let rest = &line[end..];
    let rest_trimmed: &[u8] = {
        let mut r = rest;
        while let [b' ' | b'\t', tail @ ..] = r {
            r = tail;
        }
        r
    };
    if !rest_trimmed.is_empty() && rest_trimmed[0] != b';' {
        return Err(bad());
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step`, returning the body and the number of chunk
    /// boundaries, and whether it ended.
    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = Dechunker::default();
        let mut body = Vec::new();
        let mut ends = 0;
        let mut done = false;
        for piece in input.chunks(step.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() && !done {
                let (used, p) = d.step(rest)?;
                rest = &rest[used..];
                match p {
                    Some(Dechunked::Data(b)) => body.extend_from_slice(b),
                    Some(Dechunked::ChunkEnd) => ends += 1,
                    Some(Dechunked::End) => done = true,
                    None => {}
                }
                if used == 0 && p.is_none() {
                    break;
                }
            }
        }
        Ok((body, ends, done))
    }

    #[test]
    fn chunks_extensions_and_trailers() {
        let wire = b"4;name=value\r\nWiki\r\n5 ; x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\nX: y\r\n\r\n";
        for step in [1, 2, 3, 7, 1000] {
            let (body, ends, done) = decode(wire, step).unwrap();
            assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
            assert_eq!(ends, 3);
            assert!(done);
        }
    }

    #[test]
    fn bad_sizes_and_missing_crlf() {
        assert!(matches!(decode(b"zz\r\n", 10), Err(ChunkError::BadSize(_))));
        assert!(matches!(decode(b"-1\r\n", 10), Err(ChunkError::BadSize(_))));
        assert!(matches!(
            decode(b"1234567890abcdef0\r\n", 10),
            Err(ChunkError::BadSize(_))
        ));
        assert!(matches!(
            decode(b"2\r\nabX", 10),
            Err(ChunkError::MissingCrlf(b'X'))
        ));
        let long = vec![b'1'; MAX_SIZE_LINE + 10];
        assert_eq!(decode(&long, 100), Err(ChunkError::SizeLineTooLong));
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b'a', MAX_TRAILERS + 10));
        assert_eq!(decode(&trailers, 1000), Err(ChunkError::TrailersTooLong));
    }

    #[test]
    fn bare_lf_is_tolerated() {
        let (body, _, done) = decode(b"3\nabc\n0\n\n", 1).unwrap();
        assert_eq!(body, b"abc");
        assert!(done);
    }
}

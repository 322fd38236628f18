//! Capture file containers: pcap (either byte order, micro- or nanosecond timestamps) and
//! pcapng (any number of sections and interfaces, either byte order, any `if_tsresol`), read
//! as a sequence of [`Frame`]s. Every length is checked against a named limit before anything
//! is allocated for it, so a hostile file costs at most [`MAX_BLOCK_LEN`] bytes of buffer.

use std::io::Read;

use super::Error;
use super::ng;

/// Largest captured packet accepted: libpcap's maximum snap length.
pub const MAX_PACKET_LEN: u32 = 262_144;
/// Largest pcapng block accepted (a maximal packet plus generous options).
pub const MAX_BLOCK_LEN: u32 = 1 << 20;
/// Most interfaces one pcapng section may describe.
pub const MAX_INTERFACES: usize = 4096;
/// Most comments kept per packet (the rest are skipped).
pub const MAX_COMMENTS: usize = 8;

const PCAP_MAGIC_US: u32 = 0xA1B2_C3D4;
const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Wall-clock time, nanoseconds since the epoch.
    pub ts_ns: u64,
    pub linktype: u32,
    pub data: Vec<u8>,
    /// Length on the wire (>= `data.len()` when the snap length cut it).
    pub orig_len: u32,
    /// pcapng `opt_comment`s (lossily decoded).
    pub comments: Vec<String>,
}

#[derive(Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Timestamp unit: 10^-n (`pow2` false) or 2^-n seconds.
    resol: u8,
    pow2: bool,
    offset_s: i64,
}

impl Iface {
    fn ts_ns(&self, ticks: u64) -> u64 {
        let ns = if self.pow2 {
            ((ticks as u128 * 1_000_000_000) >> self.resol.min(127)) as u64
        } else if self.resol <= 9 {
            ticks.saturating_mul(10u64.pow(9 - self.resol as u32))
        } else {
            let div = 10u128
                .checked_pow(self.resol as u32 - 9)
                .unwrap_or(u128::MAX);
            (ticks as u128 / div) as u64
        };
        let off = self.offset_s.saturating_mul(1_000_000_000);
        ns.saturating_add_signed(off)
    }
}

enum Kind {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        big: bool,
        ifaces: Vec<Iface>,
    },
}

enum Block {
    Packet(Frame),
    Other,
    End,
}

/// Reads frames from a pcap or pcapng stream.
pub struct CaptureFile<R: Read> {
    r: R,
    kind: Kind,
    buf: Vec<u8>,
    /// Blocks of types we do not read (name resolution, statistics, ...).
    pub skipped_blocks: u64,
}

fn u16_at(b: &[u8], off: usize, big: bool) -> Option<u16> {
    let s = b.get(off..off + 2)?;
    let a = [s[0], s[1]];
    Some(if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    })
}

fn u32_at(b: &[u8], off: usize, big: bool) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    let a = [s[0], s[1], s[2], s[3]];
    Some(if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    })
}

fn too_large(what: &'static str, len: u32, limit: u32) -> Error {
    Error::TooLarge {
        what,
        len: len as u64,
        limit: limit as u64,
    }
}

/// `read_exact` that tells a clean end of file (nothing read) from a cut one.
fn read_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(Error::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
    Ok(true)
}

impl<R: Read> CaptureFile<R> {
    /// Reads the file header and tells the format from its magic number.
    pub fn new(mut r: R) -> Result<Self, Error> {
        let mut magic = [0u8; 4];
        if !read_or_eof(&mut r, &mut magic)? {
            return Err(Error::Truncated);
        }
        let le = u32::from_le_bytes(magic);
        let mut f = CaptureFile {
            r,
            kind: Kind::PcapNg {
                big: false,
                ifaces: Vec::new(),
            },
            buf: Vec::new(),
            skipped_blocks: 0,
        };
        if le == ng::BLOCK_SHB {
            let mut len_raw = [0u8; 4];
            if !read_or_eof(&mut f.r, &mut len_raw)? {
                return Err(Error::Truncated);
            }
            f.section_header(len_raw)?;
            return Ok(f);
        }
        let (big, nanos) = match le {
            PCAP_MAGIC_US => (false, false),
            PCAP_MAGIC_NS => (false, true),
            m if m.swap_bytes() == PCAP_MAGIC_US => (true, false),
            m if m.swap_bytes() == PCAP_MAGIC_NS => (true, true),
            m => return Err(Error::NotACapture { magic: m }),
        };
        let mut rest = [0u8; 20];
        if !read_or_eof(&mut f.r, &mut rest)? {
            return Err(Error::Truncated);
        }
        // version(4) thiszone(4) sigfigs(4) snaplen(4) network(4). The snap length is not
        // trusted for anything: each record's length is checked on its own.
        let network = u32_at(&rest, 16, big).unwrap_or(0);
        f.kind = Kind::Pcap {
            big,
            nanos,
            // The upper bits carry FCS information.
            linktype: network & 0x03FF_FFFF,
        };
        Ok(f)
    }

    /// The next packet, `None` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        match self.kind {
            Kind::Pcap {
                big,
                nanos,
                linktype,
            } => self.pcap_record(big, nanos, linktype),
            Kind::PcapNg { .. } => loop {
                match self.ng_block()? {
                    Block::Packet(f) => return Ok(Some(f)),
                    Block::Other => {}
                    Block::End => return Ok(None),
                }
            },
        }
    }

    fn pcap_record(
        &mut self,
        big: bool,
        nanos: bool,
        linktype: u32,
    ) -> Result<Option<Frame>, Error> {
        let mut h = [0u8; 16];
        if !read_or_eof(&mut self.r, &mut h)? {
            return Ok(None);
        }
        let field = |i: usize| u32_at(&h, i * 4, big).unwrap_or(0);
        let (sec, frac, caplen, orig_len) = (field(0), field(1), field(2), field(3));
        if caplen > MAX_PACKET_LEN {
            return Err(too_large("pcap record", caplen, MAX_PACKET_LEN));
        }
        let mut data = vec![0u8; caplen as usize];
        if !read_or_eof(&mut self.r, &mut data)? && caplen > 0 {
            return Err(Error::Truncated);
        }
        let frac_ns = if nanos {
            frac as u64
        } else {
            frac as u64 * 1000
        };
        Ok(Some(Frame {
            ts_ns: (sec as u64) * 1_000_000_000 + frac_ns,
            linktype,
            data,
            orig_len: orig_len.max(caplen),
            comments: Vec::new(),
        }))
    }

    /// Reads the rest of a Section Header Block whose type and (raw) length were just read.
    fn section_header(&mut self, len_raw: [u8; 4]) -> Result<(), Error> {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&len_raw);
        if !read_or_eof(&mut self.r, &mut h[4..])? {
            return Err(Error::Truncated);
        }
        let big = match u32::from_le_bytes([h[4], h[5], h[6], h[7]]) {
            ng::BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == ng::BYTE_ORDER_MAGIC => true,
            _ => {
                return Err(Error::Malformed(
                    "pcapng section header: bad byte-order magic",
                ));
            }
        };
        let len = u32_at(&h, 0, big).unwrap_or(0);
        if len < 28 || !len.is_multiple_of(4) {
            return Err(Error::Malformed("pcapng section header: bad block length"));
        }
        if len > MAX_BLOCK_LEN {
            return Err(too_large("pcapng section header", len, MAX_BLOCK_LEN));
        }
        // The rest: version, section length, options, trailing length.
        self.buf.resize(len as usize - 12, 0);
        if !read_or_eof(&mut self.r, &mut self.buf)? {
            return Err(Error::Truncated);
        }
        let major = u16_at(&self.buf, 0, big).unwrap_or(0);
        if major != 1 {
            return Err(Error::Malformed(
                "pcapng section header: unsupported major version",
            ));
        }
        if u32_at(&self.buf, self.buf.len() - 4, big) != Some(len) {
            return Err(Error::Malformed("pcapng block: trailing length differs"));
        }
        self.kind = Kind::PcapNg {
            big,
            ifaces: Vec::new(),
        };
        Ok(())
    }

    /// Reads one block.
    fn ng_block(&mut self) -> Result<Block, Error> {
        let mut h = [0u8; 8];
        if !read_or_eof(&mut self.r, &mut h)? {
            return Ok(Block::End);
        }
        let Kind::PcapNg { big, .. } = self.kind else {
            return Ok(Block::End);
        };
        let ty = u32_at(&h, 0, big).unwrap_or(0);
        if ty == ng::BLOCK_SHB {
            self.section_header([h[4], h[5], h[6], h[7]])?;
            return Ok(Block::Other);
        }
        let len = u32_at(&h, 4, big).unwrap_or(0);
        if len < 12 || !len.is_multiple_of(4) {
            return Err(Error::Malformed("pcapng block: bad block length"));
        }
        if len > MAX_BLOCK_LEN {
            return Err(too_large("pcapng block", len, MAX_BLOCK_LEN));
        }
        self.buf.resize(len as usize - 8, 0);
        if !read_or_eof(&mut self.r, &mut self.buf)? {
            return Err(Error::Truncated);
        }
        let body_len = self.buf.len() - 4;
        if u32_at(&self.buf, body_len, big) != Some(len) {
            return Err(Error::Malformed("pcapng block: trailing length differs"));
        }
        let Kind::PcapNg { ifaces, .. } = &mut self.kind else {
            return Ok(Block::End);
        };
        let body = &self.buf[..body_len];
        let short = || Error::Malformed("pcapng block shorter than its fields");
        match ty {
            ng::BLOCK_IDB => {
                let linktype = u16_at(body, 0, big).ok_or_else(short)? as u32;
                let opts = body.get(8..).ok_or_else(short)?;
                let mut iface = Iface {
                    linktype,
                    resol: 6,
                    pow2: false,
                    offset_s: 0,
                };
                for (code, v) in options(opts, big) {
                    match code {
                        ng::IF_TSRESOL if !v.is_empty() => {
                            iface.pow2 = v[0] & 0x80 != 0;
                            iface.resol = v[0] & 0x7f;
                        }
                        ng::IF_TSOFFSET if v.len() == 8 => {
                            let a = [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
                            iface.offset_s = if big {
                                i64::from_be_bytes(a)
                            } else {
                                i64::from_le_bytes(a)
                            };
                        }
                        _ => {}
                    }
                }
                if ifaces.len() >= MAX_INTERFACES {
                    return Err(Error::TooLarge {
                        what: "pcapng interface count",
                        len: ifaces.len() as u64 + 1,
                        limit: MAX_INTERFACES as u64,
                    });
                }
                ifaces.push(iface);
                Ok(Block::Other)
            }
            ng::BLOCK_EPB | ng::BLOCK_PB => {
                // EPB: iface(4) ts(8) caplen(4) len(4); obsolete PB: iface(2) drops(2) ...
                let iface_id = if ty == ng::BLOCK_EPB {
                    u32_at(body, 0, big).ok_or_else(short)? as usize
                } else {
                    u16_at(body, 0, big).ok_or_else(short)? as usize
                };
                let hi = u32_at(body, 4, big).ok_or_else(short)? as u64;
                let lo = u32_at(body, 8, big).ok_or_else(short)? as u64;
                let caplen = u32_at(body, 12, big).ok_or_else(short)?;
                let orig_len = u32_at(body, 16, big).ok_or_else(short)?;
                if caplen > MAX_PACKET_LEN {
                    return Err(too_large("pcapng packet", caplen, MAX_PACKET_LEN));
                }
                let end = 20 + caplen as usize;
                let data = body.get(20..end).ok_or(Error::Malformed(
                    "pcapng packet: captured length exceeds its block",
                ))?;
                let iface = *ifaces
                    .get(iface_id)
                    .ok_or(Error::Malformed("pcapng packet: unknown interface"))?;
                let opts_start = (end + 3) & !3;
                let mut comments = Vec::new();
                for (code, v) in options(body.get(opts_start..).unwrap_or(&[]), big) {
                    if code == ng::OPT_COMMENT && comments.len() < MAX_COMMENTS {
                        comments.push(String::from_utf8_lossy(v).into_owned());
                    }
                }
                Ok(Block::Packet(Frame {
                    ts_ns: iface.ts_ns((hi << 32) | lo),
                    linktype: iface.linktype,
                    data: data.to_vec(),
                    orig_len: orig_len.max(caplen),
                    comments,
                }))
            }
            ng::BLOCK_SPB => {
                let orig_len = u32_at(body, 0, big).ok_or_else(short)?;
                let iface = *ifaces.first().ok_or(Error::Malformed(
                    "pcapng simple packet before any interface",
                ))?;
                let caplen = orig_len.min(body.len() as u32 - 4);
                if caplen > MAX_PACKET_LEN {
                    return Err(too_large("pcapng packet", caplen, MAX_PACKET_LEN));
                }
                Ok(Block::Packet(Frame {
                    ts_ns: 0,
                    linktype: iface.linktype,
                    data: body[4..4 + caplen as usize].to_vec(),
                    orig_len,
                    comments: Vec::new(),
                }))
            }
            _ => {
                self.skipped_blocks += 1;
                Ok(Block::Other)
            }
        }
    }
}

/// The (code, value) options of a pcapng block, up to `opt_endofopt` or the first malformed one.
fn options(mut b: &[u8], big: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let code = u16_at(b, 0, big)?;
        let len = u16_at(b, 2, big)? as usize;
        if code == ng::OPT_END {
            return None;
        }
        let v = b.get(4..4 + len)?;
        let next = (4 + len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
        Some((code, v))
    })
}

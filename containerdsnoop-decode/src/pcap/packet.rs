//! Link, IP and TCP headers: building the Ethernet/IPv4/TCP frames of an export, and finding
//! the TCP segment in a captured frame of any link type we read. Every read is length-checked;
//! a frame that is not a whole TCP header is a [`Skip`] value, counted by the caller.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Link types (<https://www.tcpdump.org/linktypes.html>).
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// `DLT_RAW` as some platforms wrote it into files before LINKTYPE_RAW existed.
    pub const RAW_DLT12: u32 = 12;
    pub const RAW_DLT14: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const IPPROTO_TCP: u8 = 6;
/// Stacked VLAN tags followed before giving up.
const MAX_VLAN_TAGS: usize = 4;
/// IPv6 extension headers followed before giving up.
const MAX_IPV6_EXT_HEADERS: usize = 8;

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const TCP_LEN: usize = 20;

/// One TCP segment found in a frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The payload bytes present in the capture.
    pub payload: &'a [u8],
    /// Payload bytes the segment carried on the wire (from the IP length): more than
    /// `payload.len()` when the capture's snap length cut the packet.
    pub wire_len: u32,
}

/// Why a frame yields no TCP segment.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Skip {
    /// Not IP, or IP but not TCP.
    NotTcp,
    /// An IP fragment (not reassembled).
    Fragment,
    /// A link type this reader does not decode.
    Linktype(u32),
    /// A header is cut short or inconsistent.
    Malformed(&'static str),
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The network-layer packet of a frame, and its ethertype (IPv4 or IPv6).
fn network_layer(linktype: u32, frame: &[u8]) -> Result<(u16, &[u8]), Skip> {
    let short = Skip::Malformed("frame shorter than its link header");
    match linktype {
        linktype::ETHERNET => {
            let mut ty = be16(frame, 12).ok_or(short)?;
            let mut off = ETH_LEN;
            let mut tags = 0;
            while ETHERTYPE_VLAN.contains(&ty) {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(Skip::Malformed("too many VLAN tags"));
                }
                ty = be16(frame, off + 2).ok_or(short)?;
                off += 4;
            }
            Ok((ty, frame.get(off..).ok_or(short)?))
        }
        linktype::RAW | linktype::RAW_DLT12 | linktype::RAW_DLT14 => match frame.first() {
            Some(v) if v >> 4 == 4 => Ok((ETHERTYPE_IPV4, frame)),
            Some(v) if v >> 4 == 6 => Ok((ETHERTYPE_IPV6, frame)),
            _ => Err(Skip::NotTcp),
        },
        linktype::IPV4 => Ok((ETHERTYPE_IPV4, frame)),
        linktype::IPV6 => Ok((ETHERTYPE_IPV6, frame)),
        linktype::LINUX_SLL => Ok((be16(frame, 14).ok_or(short)?, frame.get(16..).ok_or(short)?)),
        linktype::LINUX_SLL2 => Ok((be16(frame, 0).ok_or(short)?, frame.get(20..).ok_or(short)?)),
        linktype::NULL | linktype::LOOP => {
            let raw = frame.get(..4).ok_or(short)?;
            // NULL stores the family in the capturing host's byte order, LOOP in big endian.
            let fam = if linktype == linktype::LOOP {
                u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]])
            } else {
                let le = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                if le < 0x100 { le } else { le.swap_bytes() }
            };
            let ty = match fam {
                2 => ETHERTYPE_IPV4,
                // AF_INET6 on Linux, the BSDs, macOS.
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                _ => return Err(Skip::NotTcp),
            };
            Ok((ty, &frame[4..]))
        }
        other => Err(Skip::Linktype(other)),
    }
}

/// Finds the TCP segment in a captured frame.
pub fn parse_frame(linktype: u32, frame: &[u8]) -> Result<Segment<'_>, Skip> {
    let (ty, ip) = network_layer(linktype, frame)?;
    // (src, dst, tcp bytes present, tcp bytes on the wire)
    let (src, dst, tcp, tcp_wire_len) = match ty {
        ETHERTYPE_IPV4 => {
            let short = Skip::Malformed("IPv4 header cut short");
            let vihl = *ip.first().ok_or(short)?;
            if vihl >> 4 != 4 {
                return Err(Skip::Malformed("IPv4 version field is not 4"));
            }
            let ihl = (vihl & 0x0f) as usize * 4;
            if ihl < IPV4_LEN || ip.len() < ihl {
                return Err(short);
            }
            let total = be16(ip, 2).ok_or(short)? as usize;
            let frag = be16(ip, 6).ok_or(short)?;
            if frag & 0x3fff != 0 {
                return Err(Skip::Fragment);
            }
            if ip[9] != IPPROTO_TCP {
                return Err(Skip::NotTcp);
            }
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            // A total length of 0 is what TSO/GSO captures show: trust the capture.
            let wire = if total == 0 {
                ip.len() - ihl
            } else if total < ihl {
                return Err(Skip::Malformed("IPv4 total length below header length"));
            } else {
                total - ihl
            };
            // Ethernet pads short frames: never read past the IP length.
            let end = (ihl + wire).min(ip.len());
            (src, dst, &ip[ihl..end], wire)
        }
        ETHERTYPE_IPV6 => {
            let short = Skip::Malformed("IPv6 header cut short");
            if ip.len() < 40 {
                return Err(short);
            }
            if ip[0] >> 4 != 6 {
                return Err(Skip::Malformed("IPv6 version field is not 6"));
            }
            let payload_len = be16(ip, 4).ok_or(short)? as usize;
            let mut next = ip[6];
            let mut s = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&ip[24..40]);
            let mut off = 40;
            let mut hops = 0;
            loop {
                match next {
                    IPPROTO_TCP => break,
                    44 => return Err(Skip::Fragment),
                    // hop-by-hop, routing, destination options
                    0 | 43 | 60 => {
                        hops += 1;
                        if hops > MAX_IPV6_EXT_HEADERS {
                            return Err(Skip::Malformed("too many IPv6 extension headers"));
                        }
                        let nh = *ip.get(off).ok_or(short)?;
                        let len = (*ip.get(off + 1).ok_or(short)? as usize + 1) * 8;
                        next = nh;
                        off += len;
                    }
                    _ => return Err(Skip::NotTcp),
                }
            }
            if off > ip.len() {
                return Err(short);
            }
            // Payload length 0 means a jumbogram (or a GSO capture): trust the capture.
            let wire = if payload_len == 0 {
                ip.len() - off
            } else {
                (40 + payload_len)
                    .checked_sub(off)
                    .ok_or(Skip::Malformed("IPv6 payload length below its headers"))?
            };
            let end = (off + wire).min(ip.len());
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                &ip[off..end],
                wire,
            )
        }
        _ => return Err(Skip::NotTcp),
    };
    let short = Skip::Malformed("TCP header cut short");
    let data_off = (*tcp.get(12).ok_or(short)? >> 4) as usize * 4;
    if data_off < TCP_LEN || tcp.len() < data_off || tcp_wire_len < data_off {
        return Err(short);
    }
    let sport = be16(tcp, 0).ok_or(short)?;
    let dport = be16(tcp, 2).ok_or(short)?;
    Ok(Segment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        seq: be32(tcp, 4).ok_or(short)?,
        ack: be32(tcp, 8).ok_or(short)?,
        flags: tcp[13],
        payload: &tcp[data_off..],
        wire_len: u32::try_from(tcp_wire_len - data_off).unwrap_or(u32::MAX),
    })
}

/// The fields of one synthetic IPv4 TCP segment.
pub struct Tcp4<'a> {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// TCP options, a multiple of 4 bytes.
    pub options: &'a [u8],
}

/// Ones' complement sum of 16-bit words, folded.
fn sum16(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut it = bytes.chunks_exact(2);
    for w in &mut it {
        acc += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    if let [last] = it.remainder() {
        acc += (*last as u32) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// Appends an Ethernet + IPv4 + TCP frame carrying `payload` (at most
/// [`MAX_IPV4_PAYLOAD`] bytes) to `out`, checksums included.
pub fn build_ipv4_frame(out: &mut Vec<u8>, h: &Tcp4<'_>, payload: &[u8], mac: ([u8; 6], [u8; 6])) {
    let tcp_len = TCP_LEN + h.options.len();
    let total = (IPV4_LEN + tcp_len + payload.len()).min(u16::MAX as usize) as u16;
    out.extend_from_slice(&mac.1);
    out.extend_from_slice(&mac.0);
    out.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());

    let ip_start = out.len();
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    // id 0, don't fragment, ttl 64, TCP, checksum placeholder
    out.extend_from_slice(&[0, 0, 0x40, 0, 64, IPPROTO_TCP, 0, 0]);
    out.extend_from_slice(&h.src);
    out.extend_from_slice(&h.dst);
    let ip_sum = !(sum16(0, &out[ip_start..]) as u16);
    out[ip_start + 10..ip_start + 12].copy_from_slice(&ip_sum.to_be_bytes());

    let tcp_start = out.len();
    out.extend_from_slice(&h.sport.to_be_bytes());
    out.extend_from_slice(&h.dport.to_be_bytes());
    out.extend_from_slice(&h.seq.to_be_bytes());
    out.extend_from_slice(&h.ack.to_be_bytes());
    out.push(((tcp_len / 4) as u8) << 4);
    out.push(h.flags);
    out.extend_from_slice(&h.window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(h.options);
    out.extend_from_slice(payload);
    let seg_len = (out.len() - tcp_start) as u32;
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&h.src);
    pseudo[4..8].copy_from_slice(&h.dst);
    pseudo[9] = IPPROTO_TCP;
    pseudo[10..12].copy_from_slice(&(seg_len as u16).to_be_bytes());
    let tcp_sum = !(sum16(sum16(0, &pseudo), &out[tcp_start..]) as u16);
    out[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_sum.to_be_bytes());
}

/// Largest payload of one IPv4 TCP segment without options (65535 - 20 - 20).
pub const MAX_IPV4_PAYLOAD: usize = u16::MAX as usize - IPV4_LEN - TCP_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        build_ipv4_frame(
            &mut out,
            &Tcp4 {
                src: [127, 1, 0, 1],
                dst: [127, 0, 0, 1],
                sport: 40000,
                dport: 50051,
                seq: 7,
                ack: 9,
                flags: tcp_flags::ACK | tcp_flags::PSH,
                window: 65535,
                options: &[],
            },
            payload,
            ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]),
        );
        out
    }

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let f = frame(b"hello");
        assert_eq!(sum16(0, &f[ETH_LEN..ETH_LEN + IPV4_LEN]), 0xffff);
        let s = parse_frame(linktype::ETHERNET, &f).expect("tcp");
        assert_eq!(s.src, "127.1.0.1:40000".parse().unwrap());
        assert_eq!(s.dst, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(
            (s.seq, s.ack, s.payload, s.wire_len),
            (7, 9, &b"hello"[..], 5)
        );
    }

    #[test]
    fn every_prefix_of_a_frame_is_an_error_or_a_short_segment() {
        let f = frame(b"hello");
        for n in 0..f.len() {
            match parse_frame(linktype::ETHERNET, &f[..n]) {
                Ok(s) => assert!(s.payload.len() < 5 && s.wire_len == 5),
                Err(Skip::Malformed(_)) => {}
                Err(e) => panic!("{n}: {e:?}"),
            }
        }
    }

    #[test]
    fn other_link_types() {
        let f = frame(b"xy");
        let ip = &f[ETH_LEN..];
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(ip);
        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(ip);
        let mut null_be = 2u32.to_be_bytes().to_vec();
        null_be.extend_from_slice(ip);
        let mut vlan = f[..12].to_vec();
        vlan.extend_from_slice(&[0x81, 0, 0, 5]);
        vlan.extend_from_slice(&f[12..]);
        for (lt, fr) in [
            (linktype::RAW, ip.to_vec()),
            (linktype::IPV4, ip.to_vec()),
            (linktype::LINUX_SLL, sll),
            (linktype::LINUX_SLL2, sll2),
            (linktype::NULL, null),
            (linktype::NULL, null_be.clone()),
            (linktype::LOOP, null_be),
            (linktype::ETHERNET, vlan),
        ] {
            let s = parse_frame(lt, &fr).unwrap_or_else(|e| panic!("{lt}: {e:?}"));
            assert_eq!(s.payload, b"xy", "{lt}");
        }
        assert_eq!(parse_frame(147, &f), Err(Skip::Linktype(147)));
    }

    #[test]
    fn ipv6_with_extension_header() {
        let mut ip = vec![0x60, 0, 0, 0];
        let tcp = {
            let f = frame(b"v6");
            f[ETH_LEN + IPV4_LEN..].to_vec()
        };
        ip.extend_from_slice(&((tcp.len() + 8) as u16).to_be_bytes());
        ip.push(0); // hop-by-hop
        ip.push(64);
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        ip.extend_from_slice(&tcp);
        let s = parse_frame(linktype::RAW, &ip).expect("tcp");
        assert_eq!(s.payload, b"v6");
        assert_eq!(s.src, "[::1]:40000".parse().unwrap());
    }

    #[test]
    fn fragments_and_other_protocols_are_skipped() {
        let mut f = frame(b"x");
        f[ETH_LEN + 6] = 0x20; // more fragments
        assert_eq!(parse_frame(linktype::ETHERNET, &f), Err(Skip::Fragment));
        let mut f = frame(b"x");
        f[ETH_LEN + 9] = 17;
        assert_eq!(parse_frame(linktype::ETHERNET, &f), Err(Skip::NotTcp));
        assert!(parse_frame(linktype::ETHERNET, &[]).is_err());
    }
}

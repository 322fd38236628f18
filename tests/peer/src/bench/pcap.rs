//! A minimal classic pcap writer (nanosecond timestamps, Ethernet/IPv4/TCP), so that tshark can
//! read the generated gRPC capture: each unix connection becomes a TCP connection with a
//! handshake and exact sequence numbers.

use std::io::{self, Write};

const SERVER_PORT: u16 = 50051;
/// Payload per segment, under the 65,535-byte IPv4 packet limit.
pub const MAX_SEGMENT: usize = 32 * 1024;

pub struct PcapWriter<W: Write> {
    out: W,
    /// Per connection: next sequence number of client and server.
    seqs: Vec<[u32; 2]>,
    frame: Vec<u8>,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        // Magic for nanosecond timestamps, version 2.4, snaplen, LINKTYPE_ETHERNET.
        out.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&[0; 8])?;
        out.write_all(&262_144u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?;
        Ok(PcapWriter {
            out,
            seqs: Vec::new(),
            frame: Vec::with_capacity(70_000),
        })
    }

    /// Writes `data` sent by one end of connection `conn`, opening the connection first.
    pub fn write(&mut self, ts_ns: u64, conn: u32, server: bool, data: &[u8]) -> io::Result<()> {
        let c = conn as usize;
        while self.seqs.len() <= c {
            let n = self.seqs.len() as u32;
            let isn = [1000 + n * 7919, 5000 + n * 104_729];
            self.seqs.push(isn);
            // SYN, SYN-ACK, ACK.
            let client = Segment {
                ts_ns,
                conn: n,
                server: false,
            };
            let server = Segment {
                server: true,
                ..client
            };
            self.segment(client, (isn[0], 0), 0x02, &[])?;
            self.segment(server, (isn[1], isn[0] + 1), 0x12, &[])?;
            self.seqs[n as usize] = [isn[0] + 1, isn[1] + 1];
            self.segment(client, (isn[0] + 1, isn[1] + 1), 0x10, &[])?;
        }
        for piece in data.chunks(MAX_SEGMENT) {
            let [cs, ss] = self.seqs[c];
            let (seq, ack) = if server { (ss, cs) } else { (cs, ss) };
            self.segment(
                Segment {
                    ts_ns,
                    conn,
                    server,
                },
                (seq, ack),
                0x18,
                piece,
            )?;
            let next = seq.wrapping_add(piece.len() as u32);
            self.seqs[c][server as usize] = next;
        }
        Ok(())
    }

    /// One TCP segment of `at`'s connection and direction, with `(seq, ack)` and `flags`.
    fn segment(
        &mut self,
        at: Segment,
        (seq, ack): (u32, u32),
        flags: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let Segment {
            ts_ns,
            conn,
            server,
        } = at;
        let client_ip = [10, 1, (conn >> 8) as u8, conn as u8];
        let server_ip = [10, 2, 0, 1];
        let client_port = 40_000u16.wrapping_add(conn as u16);
        let (src, dst, sport, dport) = if server {
            (server_ip, client_ip, SERVER_PORT, client_port)
        } else {
            (client_ip, server_ip, client_port, SERVER_PORT)
        };
        let f = &mut self.frame;
        f.clear();
        f.extend_from_slice(&[2, 0, 0, 0, 0, if server { 1 } else { 2 }]);
        f.extend_from_slice(&[2, 0, 0, 0, 0, if server { 2 } else { 1 }]);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (20 + 20 + payload.len()) as u16;
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let sum = checksum(&f[ip_start..ip_start + 20]);
        f[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let len = f.len() as u32;
        self.out
            .write_all(&((ts_ns / 1_000_000_000) as u32).to_le_bytes())?;
        self.out
            .write_all(&((ts_ns % 1_000_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(f)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Which connection and direction a segment belongs to, and when it was sent.
#[derive(Clone, Copy)]
struct Segment {
    ts_ns: u64,
    conn: u32,
    server: bool,
}

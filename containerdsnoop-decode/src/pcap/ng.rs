//! pcapng blocks as an export writes them: one section, one interface (Ethernet, nanosecond
//! timestamps), Enhanced Packet Blocks with comments. Little endian, as the host writes it.
//! Layouts follow draft-ietf-opsawg-pcapng.

pub const BLOCK_SHB: u32 = 0x0A0D_0D0A;
pub const BLOCK_IDB: u32 = 1;
pub const BLOCK_PB: u32 = 2;
pub const BLOCK_SPB: u32 = 3;
pub const BLOCK_EPB: u32 = 6;
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

pub const OPT_END: u16 = 0;
pub const OPT_COMMENT: u16 = 1;
pub const SHB_USERAPPL: u16 = 4;
pub const IF_NAME: u16 = 2;
pub const IF_TSRESOL: u16 = 9;
pub const IF_TSOFFSET: u16 = 14;

/// Snap length advertised for the export's interface: libpcap's maximum.
pub const EXPORT_SNAPLEN: u32 = 262_144;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Appends one option (code, length, value, padding).
fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Values longer than an option can say are cut (comments are far shorter).
    let value = &value[..value.len().min(u16::MAX as usize - 3)];
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    body.resize(body.len() + pad4(value.len()), 0);
}

fn end_options(body: &mut Vec<u8>) {
    body.extend_from_slice(&OPT_END.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
}

/// Wraps `body` into a block of type `ty`, appended to `out`.
fn block(out: &mut Vec<u8>, ty: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// Section Header Block and the Interface Description Block of the single interface.
pub fn file_header(out: &mut Vec<u8>, linktype: u16, app: &str, if_name: &str) {
    let mut body = Vec::new();
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    // Section length unknown: we stream.
    body.extend_from_slice(&u64::MAX.to_le_bytes());
    option(&mut body, SHB_USERAPPL, app.as_bytes());
    end_options(&mut body);
    block(out, BLOCK_SHB, &body);

    let mut body = Vec::new();
    body.extend_from_slice(&linktype.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&EXPORT_SNAPLEN.to_le_bytes());
    option(&mut body, IF_NAME, if_name.as_bytes());
    option(&mut body, IF_TSRESOL, &[9]);
    end_options(&mut body);
    block(out, BLOCK_IDB, &body);
}

/// An Enhanced Packet Block on interface 0 with a nanosecond timestamp and comments.
pub fn enhanced_packet(out: &mut Vec<u8>, ts_ns: u64, frame: &[u8], comments: &[&str]) {
    let mut body =
        Vec::with_capacity(24 + frame.len() + comments.iter().map(|c| c.len() + 8).sum::<usize>());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ts_ns as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    body.extend_from_slice(frame);
    body.resize(body.len() + pad4(frame.len()), 0);
    if !comments.is_empty() {
        for c in comments {
            option(&mut body, OPT_COMMENT, c.as_bytes());
        }
        end_options(&mut body);
    }
    block(out, BLOCK_EPB, &body);
}

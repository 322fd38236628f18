//! HPACK prefixed integers (RFC 7541 §5.1), with the overflow checks the RFC leaves to us.

use super::HpackError;

/// Largest value accepted: every HPACK integer we need (indices, lengths, table sizes) fits 32
/// bits, and rejecting more keeps lengths from wrapping.
const MAX_VALUE: u64 = u32::MAX as u64;
/// 5 continuation bytes carry 35 bits, enough for 32; more is either overflow or a padding
/// attack of zero continuation bytes.
const MAX_CONTINUATION: u32 = 5;

/// Decodes an integer whose first byte is `buf[*pos]` with an N-bit prefix; advances `pos`.
pub fn decode(buf: &[u8], pos: &mut usize, prefix_bits: u8) -> Result<usize, HpackError> {
    let mask = ((1u16 << prefix_bits) - 1) as u8;
    let first = *buf.get(*pos).ok_or(HpackError::IntegerTruncated)? & mask;
    *pos += 1;
    if first < mask {
        return Ok(usize::from(first));
    }
    let mut value = u64::from(mask);
    for i in 0..MAX_CONTINUATION {
        let b = *buf.get(*pos).ok_or(HpackError::IntegerTruncated)?;
        *pos += 1;
        value += u64::from(b & 0x7f) << (7 * i);
        if value > MAX_VALUE {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| HpackError::IntegerOverflow);
        }
    }
    Err(HpackError::IntegerOverflow)
}

#[cfg(test)]
pub fn encode(value: usize, prefix_bits: u8, first_byte_flags: u8) -> Vec<u8> {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        return vec![first_byte_flags | value as u8];
    }
    let mut out = vec![first_byte_flags | mask as u8];
    let mut rest = value - mask;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8], n: u8) -> Result<(usize, usize), HpackError> {
        let mut pos = 0;
        decode(b, &mut pos, n).map(|v| (v, pos))
    }

    #[test]
    fn rfc7541_c1_examples() {
        assert_eq!(dec(&[0b01010], 5), Ok((10, 1))); // C.1.1
        assert_eq!(dec(&[0b11111, 0b10011010, 0b00001010], 5), Ok((1337, 3))); // C.1.2
        assert_eq!(dec(&[42], 8), Ok((42, 1))); // C.1.3
    }

    #[test]
    fn truncated_and_overflowing() {
        assert_eq!(dec(&[], 5), Err(HpackError::IntegerTruncated));
        assert_eq!(dec(&[0x1f, 0x9a], 5), Err(HpackError::IntegerTruncated));
        assert_eq!(
            dec(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x7f], 5),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(
            dec(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Err(HpackError::IntegerOverflow)
        );
        // 4 GiB - 1 is the largest accepted value.
        let max = encode(u32::MAX as usize, 5, 0x20);
        assert_eq!(dec(&max, 5), Ok((u32::MAX as usize, max.len())));
        let over = encode(u32::MAX as usize + 1, 5, 0x20);
        assert_eq!(dec(&over, 5), Err(HpackError::IntegerOverflow));
    }

    #[test]
    fn round_trip() {
        for n in 1..=8u8 {
            for v in [
                0usize,
                1,
                30,
                31,
                126,
                127,
                128,
                255,
                256,
                1337,
                65535,
                1 << 24,
            ] {
                let b = encode(v, n, 0);
                assert_eq!(dec(&b, n), Ok((v, b.len())), "{v} with {n}-bit prefix");
            }
        }
    }
}

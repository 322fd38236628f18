//! HPACK Huffman string decoding (RFC 7541 §5.2, code table from Appendix B). Strict: an
//! encoded EOS symbol, padding longer than 7 bits or padding that is not the EOS prefix is an
//! error, because a decoder that guesses here would silently desynchronise.

use std::sync::OnceLock;

use super::HpackError;

/// RFC 7541 Appendix B: `(code, bit length)` for symbols 0..=255 and EOS (256), in order.
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

const EOS: u16 = 256;
/// Marks a child slot as a leaf holding a symbol rather than a node index.
const LEAF: u16 = 0x8000;

/// A binary decoding tree: node `i` has children `[zero, one]`; 0 means no child (root is
/// never a child), `LEAF | sym` a symbol.
struct Tree {
    nodes: Vec<[u16; 2]>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        // 257 leaves need exactly 256 internal nodes; the table is a complete prefix code.
        let mut nodes: Vec<[u16; 2]> = Vec::with_capacity(256);
        nodes.push([0, 0]);
        for (sym, &(code, len)) in CODES.iter().enumerate() {
            let mut node = 0usize;
            for bit_pos in (0..len).rev() {
                let bit = ((code >> bit_pos) & 1) as usize;
                if bit_pos == 0 {
                    nodes[node][bit] = LEAF | sym as u16;
                } else {
                    let next = nodes[node][bit];
                    node = if next == 0 {
                        nodes.push([0, 0]);
                        let idx = nodes.len() - 1;
                        nodes[node][bit] = idx as u16;
                        idx
                    } else {
                        usize::from(next)
                    };
                }
            }
        }
        Tree { nodes }
    })
}

/// Appends the decoding of `src` to `dst`. Fails with `StringTooLong` rather than produce more
/// than `max_out` bytes in total in `dst`.
pub fn decode(src: &[u8], dst: &mut Vec<u8>, max_out: usize) -> Result<(), HpackError> {
    let t = tree();
    let mut node = 0usize;
    // Bits consumed since the last complete symbol, and whether they were all ones: the only
    // legal padding is a prefix of EOS (all ones) shorter than 8 bits.
    let mut pending_bits = 0u32;
    let mut pending_ones = true;
    for &byte in src {
        for shift in (0..8).rev() {
            let bit = usize::from((byte >> shift) & 1);
            pending_bits += 1;
            pending_ones &= bit == 1;
            let next = t.nodes.get(node).map(|n| n[bit]).unwrap_or(0);
            if next & LEAF != 0 {
                let sym = next & !LEAF;
                if sym == EOS {
                    return Err(HpackError::HuffmanEos);
                }
                if dst.len() >= max_out {
                    return Err(HpackError::StringTooLong);
                }
                dst.push(sym as u8);
                node = 0;
                pending_bits = 0;
                pending_ones = true;
            } else if next == 0 {
                // Unreachable with a complete code, kept so malformed tables cannot loop.
                return Err(HpackError::HuffmanInvalid);
            } else {
                node = usize::from(next);
            }
        }
    }
    if pending_bits > 7 || !pending_ones {
        return Err(HpackError::HuffmanPadding);
    }
    Ok(())
}

/// Encodes `src` (tests build Huffman literals with it).
#[cfg(test)]
pub fn encode(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc: u64 = 0;
    let mut bits = 0u32;
    for &b in src {
        let (code, len) = CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(src: &[u8]) -> Result<Vec<u8>, HpackError> {
        let mut v = Vec::new();
        decode(src, &mut v, 1 << 20).map(|()| v)
    }

    #[test]
    fn table_is_a_complete_canonical_code() {
        // Kraft sum of exactly 1 means every bit string decodes or is a proper prefix.
        let sum: f64 = CODES.iter().map(|&(_, l)| 2f64.powi(-i32::from(l))).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert_eq!(tree().nodes.len(), 256);
        assert_eq!(CODES[usize::from(b'0')], (0x0, 5));
        assert_eq!(CODES[usize::from(b'a')], (0x3, 5));
        assert_eq!(CODES[256], (0x3fffffff, 30));
    }

    #[test]
    fn rfc7541_c4_strings() {
        let www = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        assert_eq!(dec(&www).unwrap(), b"www.example.com");
        assert_eq!(
            dec(&[0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]).unwrap(),
            b"no-cache"
        );
        assert_eq!(encode(b"www.example.com"), www);
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(dec(&encode(&all)).unwrap(), all);
    }

    #[test]
    fn rejects_eos_and_bad_padding() {
        // 30 one-bits = EOS, padded with ones to 32 bits.
        assert_eq!(dec(&[0xff, 0xff, 0xff, 0xff]), Err(HpackError::HuffmanEos));
        // 'a' (00011) followed by 3 zero bits of padding: not an EOS prefix.
        assert_eq!(dec(&[0x18]), Err(HpackError::HuffmanPadding));
        // A full byte of ones as padding after a symbol boundary: padding longer than 7 bits.
        assert_eq!(dec(&[0x1f, 0xff]), Err(HpackError::HuffmanPadding));
        assert_eq!(dec(&[]).unwrap(), b"");
    }

    #[test]
    fn output_is_capped() {
        let mut v = Vec::new();
        assert_eq!(
            decode(&encode(b"aaaaaaaa"), &mut v, 4),
            Err(HpackError::StringTooLong)
        );
        assert!(v.len() <= 4);
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 17) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf.push(x as u8);
            }
            let _ = dec(&buf);
        }
    }
}

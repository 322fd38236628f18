//! A cursor over fuzzer input. Reads never fail: past the end they return zeros and empty
//! slices, so every input is a valid sequence of operations and the fuzzer never wastes
//! executions on "input too short" rejections.

pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Little endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// The sizes to cut `len` bytes into, derived from `seed`: a mix of tiny and larger pieces, so
/// that split-invariance checks hit frame and prefix boundaries.
pub fn splits(seed: u8, len: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut state = u32::from(seed) | 1;
    let mut left = len;
    while left > 0 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = match (state >> 16) % 4 {
            0 => 1,
            1 => 2 + (state >> 20) as usize % 8,
            2 => 9 + (state >> 20) as usize % 32,
            _ => 64 + (state >> 20) as usize % 1024,
        };
        let n = n.min(left);
        out.push(n);
        left -= n;
    }
    out
}

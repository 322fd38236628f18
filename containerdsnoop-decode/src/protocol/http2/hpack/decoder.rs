//! The HPACK block decoder: representations (RFC 7541 §6), string literals (§5.2) and table
//! updates, with the size limits that keep a hostile block from costing more than `Limits`.

use std::sync::Arc;

use super::table::{DynamicTable, ENTRY_OVERHEAD, Entry, Lookup};
use super::{HpackError, huffman, integer};
use crate::protocol::http2::frame::settings::DEFAULT_HEADER_TABLE_SIZE;

/// Resource limits for one decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of dynamic table kept at most, whatever the peer announces; beyond it older
    /// entries are dropped and looked up as unknown.
    pub table_hard_cap: usize,
    /// Decoded header list size (RFC 7541 §4.1 accounting) kept per block; fields beyond it are
    /// dropped and the list is marked truncated, while table updates still apply.
    pub max_header_list: usize,
    /// Longest decoded string kept; a longer one decodes as unknown.
    pub max_string: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            table_hard_cap: 64 * 1024,
            max_header_list: 64 * 1024,
            max_string: 64 * 1024,
        }
    }
}

/// One decoded header field. A `None` name or value comes from a table entry this decoder never
/// saw, or a string over `Limits::max_string`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Option<Arc<[u8]>>,
    pub value: Option<Arc<[u8]>>,
    /// Sent as "never indexed" (RFC 7541 §6.2.3): the sender marked it sensitive.
    pub sensitive: bool,
    /// For an indexed field whose table entry predates a late join: the entry's stable slot
    /// (`DynamicTable::unknown_slot`), so repeated references to one unknown entry can be told
    /// apart from references to another.
    pub unknown_slot: Option<usize>,
}

impl Field {
    pub fn name_str(&self) -> Option<&str> {
        self.name
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|b| std::str::from_utf8(b).ok())
    }

    fn size(&self) -> usize {
        let len = |p: &Option<Arc<[u8]>>| p.as_ref().map_or(0, |b| b.len());
        len(&self.name) + len(&self.value) + super::table::ENTRY_OVERHEAD
    }
}

/// A decoded header block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderList {
    pub fields: Vec<Field>,
    /// Fields were dropped because the list exceeded `Limits::max_header_list`.
    pub truncated: bool,
}

impl HeaderList {
    /// The value of the first field named `name`, if known and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.as_deref() == Some(name.as_bytes()))
            .and_then(Field::value_str)
    }
}

/// Decodes the header blocks one side sends; one per direction of a connection.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    /// The receiver's SETTINGS_HEADER_TABLE_SIZE: the largest size update allowed. `None` when
    /// the receiver's settings cannot be known (its direction was lost), so any size is allowed
    /// and the hard cap alone protects us.
    protocol_max: Option<usize>,
    limits: Limits,
}

impl Decoder {
    /// A decoder for a connection seen from its start (default 4096-byte table).
    pub fn new(limits: Limits) -> Decoder {
        Decoder::with_table_size(DEFAULT_HEADER_TABLE_SIZE as usize, limits)
    }

    /// A decoder whose peer announced `size` as SETTINGS_HEADER_TABLE_SIZE from the start.
    pub fn with_table_size(size: usize, limits: Limits) -> Decoder {
        Decoder {
            table: DynamicTable::new(size, limits.table_hard_cap),
            protocol_max: Some(size),
            limits,
        }
    }

    /// A decoder that starts mid-connection: dynamic indices it has not seen inserted decode as
    /// unknown fields.
    pub fn late_join(limits: Limits) -> Decoder {
        Decoder {
            table: DynamicTable::late_join(
                DEFAULT_HEADER_TABLE_SIZE as usize,
                limits.table_hard_cap,
            ),
            protocol_max: None,
            limits,
        }
    }

    /// Forgets the dynamic table: the bytes that follow come after an unknown number of header
    /// blocks (lost bytes), so every entry held may have moved. Decodes on as after a late join.
    pub fn rejoin(&mut self) {
        self.table = DynamicTable::late_join(
            DEFAULT_HEADER_TABLE_SIZE as usize,
            self.limits.table_hard_cap,
        );
        self.protocol_max = None;
    }

    /// True while table entries from before a late join or a loss may still be referenced.
    pub fn is_late(&self) -> bool {
        self.table.is_late()
    }

    /// Sets the bound on size updates (`None`: unknown, do not enforce).
    pub fn set_protocol_max(&mut self, max: Option<usize>) {
        self.protocol_max = max;
    }

    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Decodes one complete header block. On error the table may be half-updated: the caller
    /// must treat this direction as desynchronised.
    pub fn decode(&mut self, block: &[u8]) -> Result<HeaderList, HpackError> {
        let mut list = HeaderList::default();
        let mut list_size = 0usize;
        let mut pos = 0usize;
        let mut seen_field = false;
        while let Some(&b) = block.get(pos) {
            // Every branch consumes at least one byte (the integer's first byte), so the loop
            // always makes progress.
            let field = if b & 0x80 != 0 {
                // §6.1 indexed field.
                let index = integer::decode(block, &mut pos, 7)?;
                let (name, value) = self.lookup(index)?;
                let unknown_slot = if name.is_none() && value.is_none() {
                    self.table.unknown_slot(index)
                } else {
                    None
                };
                Field {
                    name,
                    value,
                    sensitive: false,
                    unknown_slot,
                }
            } else if b & 0x40 != 0 {
                // §6.2.1 literal with incremental indexing.
                let index = integer::decode(block, &mut pos, 6)?;
                let name = self.literal_name(block, &mut pos, index)?;
                let value = self.string(block, &mut pos)?;
                // An unknown part still occupies at least its wire length in the encoder's table.
                let size = name.min_len + value.min_len + ENTRY_OVERHEAD;
                self.table.insert(Entry::with_size(
                    name.bytes.clone(),
                    value.bytes.clone(),
                    size,
                ));
                Field {
                    name: name.bytes,
                    value: value.bytes,
                    sensitive: false,
                    unknown_slot: None,
                }
            } else if b & 0x20 != 0 {
                // §6.3 dynamic table size update.
                if seen_field {
                    return Err(HpackError::SizeUpdateNotAtStart);
                }
                let size = integer::decode(block, &mut pos, 5)?;
                if let Some(max) = self.protocol_max
                    && size > max
                {
                    return Err(HpackError::SizeUpdateTooLarge { size, max });
                }
                self.table.set_encoder_max(size);
                continue;
            } else {
                // §6.2.2 without indexing (0000), §6.2.3 never indexed (0001).
                let sensitive = b & 0x10 != 0;
                let index = integer::decode(block, &mut pos, 4)?;
                let name = self.literal_name(block, &mut pos, index)?;
                let value = self.string(block, &mut pos)?;
                Field {
                    name: name.bytes,
                    value: value.bytes,
                    sensitive,
                    unknown_slot: None,
                }
            };
            seen_field = true;
            let size = field.size();
            if !list.truncated && list_size + size <= self.limits.max_header_list {
                list_size += size;
                list.fields.push(field);
            } else {
                // Keep decoding so the table stays in step, but stop materialising fields: a
                // block that indexes one big entry thousands of times must not cost gigabytes.
                list.truncated = true;
            }
        }
        Ok(list)
    }

    #[allow(clippy::type_complexity)]
    fn lookup(&self, index: usize) -> Result<(Option<Arc<[u8]>>, Option<Arc<[u8]>>), HpackError> {
        if index == 0 {
            return Err(HpackError::IndexZero);
        }
        match self.table.get(index) {
            Some(Lookup::Static(n, v)) => {
                Ok((Some(n.as_bytes().into()), Some(v.as_bytes().into())))
            }
            Some(Lookup::Dynamic(e)) => Ok((e.name, e.value)),
            Some(Lookup::Unknown) => Ok((None, None)),
            None => Err(HpackError::IndexOutOfRange(index)),
        }
    }

    fn literal_name(
        &self,
        block: &[u8],
        pos: &mut usize,
        index: usize,
    ) -> Result<Literal, HpackError> {
        if index == 0 {
            return self.string(block, pos);
        }
        let bytes = self.lookup(index)?.0;
        Ok(Literal {
            min_len: bytes.as_ref().map_or(0, |b| b.len()),
            bytes,
        })
    }

    /// Reads a string literal (§5.2). An over-long string is skipped and yields unknown bytes;
    /// a malformed one is an error.
    fn string(&self, block: &[u8], pos: &mut usize) -> Result<Literal, HpackError> {
        let huffman_coded = block.get(*pos).is_some_and(|b| b & 0x80 != 0);
        let len = integer::decode(block, pos, 7)?;
        let end = pos.checked_add(len).ok_or(HpackError::StringTruncated)?;
        let raw = block.get(*pos..end).ok_or(HpackError::StringTruncated)?;
        *pos = end;
        let max = self.limits.max_string;
        if !huffman_coded {
            let bytes = (raw.len() <= max).then(|| Arc::from(raw));
            return Ok(Literal {
                bytes,
                min_len: raw.len(),
            });
        }
        // Huffman output is at most 8/5 of the input (the shortest code has 5 bits) and at
        // least 8/30 of it (the longest has 30).
        let mut out = Vec::with_capacity((raw.len() * 8 / 5 + 1).min(max));
        match huffman::decode(raw, &mut out, max) {
            Ok(()) => Ok(Literal {
                min_len: out.len(),
                bytes: Some(out.into()),
            }),
            Err(HpackError::StringTooLong) => Ok(Literal {
                bytes: None,
                min_len: max.max(raw.len() * 8 / 30),
            }),
            Err(e) => Err(e),
        }
    }
}

/// A decoded string literal, or the lower bound of its length when it was not kept.
struct Literal {
    bytes: Option<Arc<[u8]>>,
    min_len: usize,
}

#[cfg(test)]
mod tests;

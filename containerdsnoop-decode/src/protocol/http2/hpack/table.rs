//! The HPACK static table (RFC 7541 Appendix A) and a dynamic table (§4) whose entries may be
//! partly or wholly unknown, so a decoder that joined late or keeps a smaller table than the
//! encoder can still say "this field exists, its value is unknown" instead of failing.

use std::collections::VecDeque;
use std::sync::Arc;

/// Per-entry overhead RFC 7541 §4.1 adds to name and value lengths.
pub const ENTRY_OVERHEAD: usize = 32;

pub const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// One table entry. `None` parts were never seen by this decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Option<Arc<[u8]>>,
    pub value: Option<Arc<[u8]>>,
    /// RFC 7541 size; for entries with an unknown part this is a lower bound.
    pub size: usize,
}

impl Entry {
    pub fn new(name: Option<Arc<[u8]>>, value: Option<Arc<[u8]>>) -> Entry {
        let len = |p: &Option<Arc<[u8]>>| p.as_ref().map_or(0, |b| b.len());
        let size = len(&name) + len(&value) + ENTRY_OVERHEAD;
        Entry { name, value, size }
    }

    /// An entry whose size is given because a part is unknown (`size` is then a lower bound).
    pub fn with_size(name: Option<Arc<[u8]>>, value: Option<Arc<[u8]>>, size: usize) -> Entry {
        Entry { name, value, size }
    }

    pub fn is_known(&self) -> bool {
        self.name.is_some() && self.value.is_some()
    }
}

/// The result of looking an index up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Static(&'static str, &'static str),
    Dynamic(Entry),
    /// A dynamic index this decoder cannot resolve because it does not hold the whole table.
    Unknown,
}

#[derive(Debug)]
pub struct DynamicTable {
    /// Newest first: index 62 is `entries[0]`.
    entries: VecDeque<Entry>,
    size: usize,
    /// Maximum size the encoder set with its last size update (RFC 7541 §4.2).
    encoder_max: usize,
    /// Bytes this decoder keeps at most, whatever the encoder says.
    hard_cap: usize,
    /// True while this table holds every entry the encoder's table holds. It becomes false after a
    /// late join or when the encoder's table is larger than `hard_cap`; an index beyond the
    /// entries held is then unknown rather than an error.
    complete: bool,
    /// Decoding started mid-connection and the entries from before are not all gone yet.
    late: bool,
    /// This table evicted an entry since `late` was set: the encoder has then evicted every
    /// entry from before too (it evicts oldest first), so the table has turned over.
    evicted_since_late: bool,
    /// Entries held whose size is only a lower bound (a part unknown).
    inexact: usize,
}

impl DynamicTable {
    pub fn new(encoder_max: usize, hard_cap: usize) -> DynamicTable {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            encoder_max,
            hard_cap,
            complete: encoder_max <= hard_cap,
            late: false,
            evicted_since_late: false,
            inexact: 0,
        }
    }

    /// A table for decoding that starts mid-connection: every index not inserted since is unknown.
    pub fn late_join(encoder_max: usize, hard_cap: usize) -> DynamicTable {
        DynamicTable {
            complete: false,
            late: true,
            ..DynamicTable::new(encoder_max, hard_cap)
        }
    }

    /// True while entries from before a late join may still be referenced (as unknown).
    pub fn is_late(&self) -> bool {
        self.late
    }

    /// For an index this table cannot resolve after a late join, a stable name for the entry it
    /// denotes: entries from before the join keep their order, and the ones inserted since sit
    /// in front of them, so `index - 62 - len` counts from the newest of the old entries. Two
    /// references with the same slot denote the same (unknown) field. `None` when that
    /// arithmetic no longer holds (this table has evicted since the join).
    pub fn unknown_slot(&self, index: usize) -> Option<usize> {
        if !self.late || self.evicted_since_late || index < 62 + self.entries.len() {
            return None;
        }
        Some(index - 62 - self.entries.len())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn encoder_max(&self) -> usize {
        self.encoder_max
    }

    fn capacity(&self) -> usize {
        self.encoder_max.min(self.hard_cap)
    }

    /// Applies a dynamic table size update (the caller has checked it against the protocol
    /// limit).
    pub fn set_encoder_max(&mut self, max: usize) {
        self.encoder_max = max;
        if max > self.hard_cap {
            // From here on we keep only the newest entries that fit our cap: the indices we hold
            // stay right (newest first), older ones become unknown.
            self.complete = false;
        }
        self.evict_to(self.capacity());
        self.check_turnover();
    }

    /// `None` for index 0 (always invalid) and for an index beyond the table when the table is
    /// complete (a compression error); `Some(Lookup::Unknown)` when we cannot know.
    pub fn get(&self, index: usize) -> Option<Lookup> {
        match index {
            0 => None,
            1..=61 => STATIC.get(index - 1).map(|&(n, v)| Lookup::Static(n, v)),
            _ => match self.entries.get(index - 62) {
                Some(e) => Some(Lookup::Dynamic(e.clone())),
                None if self.complete => None,
                None => Some(Lookup::Unknown),
            },
        }
    }

    pub fn insert(&mut self, entry: Entry) {
        let cap = self.capacity();
        if entry.size > cap {
            // RFC 7541 §4.4: an entry larger than the table empties it. If it fits the encoder's
            // larger table, the encoder now holds it at index 62 and we do not.
            self.evict_to(0);
            if self.late && entry.size > self.encoder_max && entry.is_known() {
                // The encoder emptied its table too: nothing from before the join is left.
                self.late = false;
                self.complete = self.encoder_max <= self.hard_cap;
            }
            if entry.size <= self.encoder_max || !entry.is_known() {
                self.complete = false;
            }
            return;
        }
        if !entry.is_known() {
            // Its true size is unknown, so from here on eviction is approximate.
            self.complete = false;
        }
        self.evict_to(cap - entry.size);
        self.size += entry.size;
        if !entry.is_known() {
            self.inexact += 1;
        }
        self.entries.push_front(entry);
        self.check_turnover();
    }

    /// After a late join, the table is whole again once no entry from before the join can be
    /// left: the entries inserted since fill the table so that not even a minimal (32-byte)
    /// older entry fits beside them, or this table had to evict. The encoder's size is assumed
    /// to be the last size update seen, else the default 4096 every gRPC peer uses.
    fn check_turnover(&mut self) {
        if !self.late {
            return;
        }
        let full = self.size + ENTRY_OVERHEAD > self.encoder_max && self.inexact == 0;
        if full || self.evicted_since_late {
            self.late = false;
            self.complete = self.inexact == 0 && self.encoder_max <= self.hard_cap;
        }
    }

    fn evict_to(&mut self, target: usize) {
        while self.size > target {
            match self.entries.pop_back() {
                Some(e) => {
                    self.size = self.size.saturating_sub(e.size);
                    if !e.is_known() {
                        self.inexact -= 1;
                    }
                    if self.late {
                        self.evicted_since_late = true;
                    }
                }
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: &str, v: &str) -> Entry {
        Entry::new(Some(n.as_bytes().into()), Some(v.as_bytes().into()))
    }

    #[test]
    fn static_indices() {
        let t = DynamicTable::new(4096, 65536);
        assert_eq!(t.get(1), Some(Lookup::Static(":authority", "")));
        assert_eq!(t.get(61), Some(Lookup::Static("www-authenticate", "")));
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(62), None);
    }

    #[test]
    fn newest_first_and_eviction() {
        let mut t = DynamicTable::new(100, 65536);
        t.insert(e("a", "1")); // 34
        t.insert(e("b", "2")); // 68
        assert_eq!(t.get(62), Some(Lookup::Dynamic(e("b", "2"))));
        assert_eq!(t.get(63), Some(Lookup::Dynamic(e("a", "1"))));
        t.insert(e("c", "3")); // would be 102: evicts a
        assert_eq!(t.len(), 2);
        assert_eq!(t.size(), 68);
        assert_eq!(t.get(64), None);
        t.set_encoder_max(0);
        assert!(t.is_empty());
    }

    #[test]
    fn table_larger_than_cap_keeps_newest_and_reports_unknown() {
        let mut t = DynamicTable::new(4096, 4096);
        t.set_encoder_max(1 << 20);
        t.insert(e("a", &"x".repeat(3000)));
        t.insert(e("b", &"y".repeat(3000)));
        assert_eq!(t.len(), 1);
        assert!(matches!(t.get(62), Some(Lookup::Dynamic(_))));
        assert_eq!(t.get(63), Some(Lookup::Unknown));
    }

    #[test]
    fn late_join_slots_are_stable_until_the_table_turns_over() {
        let mut t = DynamicTable::late_join(4096, 65536);
        assert_eq!(t.get(62), Some(Lookup::Unknown));
        assert_eq!(t.unknown_slot(62), Some(0));
        assert_eq!(t.unknown_slot(65), Some(3));
        t.insert(e("a", "1"));
        // The old entry that was at 62 is now at 63: same slot.
        assert_eq!(t.unknown_slot(63), Some(0));
        assert_eq!(t.unknown_slot(62), None);
        assert!(t.is_late() && !t.is_complete());
        // 4096 / 34 = 120 entries fill the table so that no 32-byte entry fits beside them.
        for i in 0..119 {
            t.insert(e("b", &format!("{:1}", i % 10)));
        }
        assert_eq!(t.size(), 120 * 34);
        assert!(!t.is_late() && t.is_complete());
        assert_eq!(t.get(62 + 120), None);
    }

    #[test]
    fn late_join_turns_over_on_eviction_or_size_update() {
        let mut t = DynamicTable::late_join(4096, 65536);
        t.insert(e("k", &"v".repeat(3000)));
        assert!(t.is_late());
        t.insert(e("k", &"w".repeat(3000)));
        assert!(!t.is_late() && t.is_complete());
        let mut t = DynamicTable::late_join(4096, 65536);
        t.set_encoder_max(0);
        assert!(!t.is_late() && t.is_complete());
        // An entry of unknown size keeps the table incomplete until it is evicted.
        let mut t = DynamicTable::late_join(200, 65536);
        t.insert(Entry::with_size(None, Some("x".as_bytes().into()), 40));
        t.insert(e("y", &"z".repeat(40)));
        t.insert(e("q", &"z".repeat(40)));
        assert_eq!(t.size(), 186);
        assert!(t.is_late());
        t.insert(e("r", &"z".repeat(40)));
        assert!(!t.is_late() && t.is_complete());
    }

    #[test]
    fn oversized_entry_empties_the_table() {
        let mut t = DynamicTable::new(64, 65536);
        t.insert(e("a", "1"));
        t.insert(e("big", &"z".repeat(100)));
        assert!(t.is_empty());
        assert!(t.is_complete());
        assert_eq!(t.get(62), None);
    }
}

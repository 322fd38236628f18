//! The one bounded table of the decoder: a hash map that holds at most `capacity` entries and,
//! to make room for a new one, hands back the least recently used entry so that its owner can
//! end it properly (emit END rows, count it) instead of dropping it silently.
//!
//! Written here rather than taken from the `lru` crate because eviction must return the evicted
//! value to the caller, and the hot path (a lookup per captured record) must cost no more than
//! a `HashMap` lookup plus a counter store: recency is a tick stamped on access, and the oldest
//! entry is found by a scan only when the table is full and a new key arrives, which is rare and
//! already bounded by `capacity`.

use std::{collections::HashMap, hash::Hash};

struct Slot<V> {
    value: V,
    last_used: u64,
}

/// A map of at most `capacity` entries; see the module documentation.
pub struct LruMap<K, V> {
    entries: HashMap<K, Slot<V>>,
    capacity: usize,
    clock: u64,
}

impl<K: Eq + Hash + Clone, V> LruMap<K, V> {
    /// A table that holds at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        LruMap {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// The value of `key`, without counting as a use.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|s| &s.value)
    }

    /// The value of `key`, marked as the most recently used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|s| {
            s.last_used = clock;
            &mut s.value
        })
    }

    /// Inserts or replaces `key`, as the most recently used. When a new key finds the table
    /// full, the least recently used entry is removed first and returned.
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        let evicted = if self.entries.contains_key(&key) {
            None
        } else {
            self.make_room()
        };
        self.clock += 1;
        self.entries.insert(
            key,
            Slot {
                value,
                last_used: self.clock,
            },
        );
        evicted
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|s| s.value)
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        let key = self
            .entries
            .iter()
            .min_by_key(|(_, s)| s.last_used)
            .map(|(k, _)| k.clone())?;
        let slot = self.entries.remove(&key)?;
        Some((key, slot.value))
    }

    fn make_room(&mut self) -> Option<(K, V)> {
        if self.entries.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.keys()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|s| &s.value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.values_mut().map(|s| &mut s.value)
    }

    /// Removes every entry, oldest first.
    pub fn drain_oldest_first(&mut self) -> Vec<(K, V)> {
        let mut all: Vec<(u64, K, V)> = self
            .entries
            .drain()
            .map(|(k, s)| (s.last_used, k, s.value))
            .collect();
        all.sort_by_key(|(t, _, _)| *t);
        all.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_and_returns_it() {
        let mut m = LruMap::new(2);
        assert!(m.insert("a", 1).is_none());
        assert!(m.insert("b", 2).is_none());
        // Using "a" makes "b" the oldest.
        assert_eq!(m.get_mut(&"a"), Some(&mut 1));
        assert_eq!(m.insert("c", 3), Some(("b", 2)));
        assert_eq!(m.len(), 2);
        assert!(m.contains_key(&"a") && m.contains_key(&"c"));
    }

    #[test]
    fn replacing_a_key_evicts_nothing() {
        let mut m = LruMap::new(1);
        assert!(m.insert(7, "x").is_none());
        assert!(m.insert(7, "y").is_none());
        assert_eq!(m.peek(&7), Some(&"y"));
    }

    #[test]
    fn peek_does_not_count_as_use() {
        let mut m = LruMap::new(2);
        m.insert(1, ());
        m.insert(2, ());
        let _ = m.peek(&1);
        assert_eq!(m.insert(3, ()), Some((1, ())));
    }

    #[test]
    fn zero_capacity_holds_one_and_drains_in_age_order() {
        let mut m = LruMap::new(0);
        assert_eq!(m.capacity(), 1);
        m.insert(1, 'a');
        assert_eq!(m.insert(2, 'b'), Some((1, 'a')));
        let mut m = LruMap::new(3);
        m.insert(1, 'a');
        m.insert(2, 'b');
        m.insert(3, 'c');
        let _ = m.get_mut(&1);
        assert_eq!(m.drain_oldest_first(), vec![(2, 'b'), (3, 'c'), (1, 'a')]);
        assert!(m.is_empty());
    }
}

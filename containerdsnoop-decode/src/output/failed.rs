//! `-x/--errors`: only the calls that failed. Every row of a call is held from its first row
//! until its END says how the call turned out ([`Outcome`]); the rows of a failed call then go
//! out together, in order, and those of any other call are dropped.
//!
//! A row that comes after its call's END (a request the server answered before it was all sent:
//! trailers-only `Unimplemented`) follows its call: printed at once if the call failed, dropped
//! if not; recently ended calls are remembered for that.
//!
//! Held in bounded memory ([`HoldLimits`]: calls and bytes). A call that does not fit loses
//! the rows held so far (the least recently active call goes first) and is remembered as
//! overflowed: if it fails, its END still shows and it is counted as shown incomplete. Calls
//! still open when the capture ends have not failed: they are dropped and counted. Rows that
//! belong to no call (connection notices, connections of no known protocol, the raw stream of
//! an upgraded HTTP connection) are not calls and are not shown. Nor are calls whose status the
//! capture did not see (lost bytes, a late join's header table): not known to have failed.
//! Everything dropped is counted in [`FailedCounts`], which the exit summary prints.

use std::{
    collections::{HashMap, VecDeque},
    mem::size_of,
};

use crate::{
    lru::LruMap,
    output::rows::{Row, RowKind},
    protocol::{
        Protocol,
        call::{Body, CallEventKind, Outcome},
    },
};

#[cfg(test)]
mod tests;

/// A call: its connection's id in this run, and its stream on that connection.
type CallKey = (u64, u64);

/// Request headers that go with a call's first request row (JSON shows them).
pub type HeldHeaders = Vec<(String, Option<String>)>;

/// A row and the request headers that go with it, as held and as released.
pub type HeldRow = (Row, Option<HeldHeaders>);

/// Most calls whose rows are held at once (and most overflowed calls remembered).
pub const MAX_HELD_CALLS: usize = 4096;
/// Most bytes of rows held at once (message bodies, names, headers; an estimate of what the
/// rows cost, see `row_bytes`).
pub const MAX_HELD_BYTES: usize = 64 << 20;

/// How much `-x` may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldLimits {
    pub calls: usize,
    pub bytes: usize,
}

impl Default for HoldLimits {
    fn default() -> Self {
        HoldLimits {
            calls: MAX_HELD_CALLS,
            bytes: MAX_HELD_BYTES,
        }
    }
}

/// What `-x` did with the calls it saw, for the exit summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailedCounts {
    /// Failed calls shown.
    pub shown: u64,
    /// Of those, shown without some of their rows (dropped to stay within the limits).
    pub incomplete: u64,
    /// Calls whose held rows were dropped to stay within the limits (those that then failed
    /// are also counted in `incomplete`).
    pub overflowed: u64,
    /// Calls still open when the capture ended, and streams that never ended before their
    /// connection did: dropped, not known to have failed.
    pub unfinished: u64,
    /// Calls whose status the capture did not see (lost bytes, a late join): dropped, not
    /// known to have failed.
    pub unseen: u64,
}

struct Held {
    rows: Vec<HeldRow>,
    bytes: usize,
}

/// The `-x` stage of the pipeline: see the module documentation.
pub struct FailedCalls {
    limits: HoldLimits,
    held: LruMap<CallKey, Held>,
    /// Calls whose rows were dropped for room: their later rows are not held as if the call
    /// were whole, and their END, if failed, still shows.
    overflowed: LruMap<CallKey, ()>,
    /// Calls that ended recently, and whether they failed: rows after the END follow it.
    ended: RecentEnds,
    /// Sum of `Held::bytes` over `held`.
    bytes: usize,
    pub counts: FailedCounts,
}

impl Default for FailedCalls {
    fn default() -> Self {
        FailedCalls::new(HoldLimits::default())
    }
}

impl FailedCalls {
    pub fn new(limits: HoldLimits) -> Self {
        FailedCalls {
            limits,
            held: LruMap::new(limits.calls),
            overflowed: LruMap::new(limits.calls),
            ended: RecentEnds::new(limits.calls),
            bytes: 0,
            counts: FailedCounts::default(),
        }
    }

    /// Takes one row of the pipeline. `shown`: whether it passed the filter (a row that did
    /// not is not held, but an END decides its call's fate either way). `outcome`: how the
    /// call turned out, for END rows. When the row is the END of a failed call, that call's
    /// rows go to `out` in order, as does a row that comes after the END of a failed call;
    /// returns whether any did.
    pub fn push(
        &mut self,
        row: Row,
        headers: Option<HeldHeaders>,
        shown: bool,
        outcome: Option<Outcome>,
        out: &mut Vec<HeldRow>,
    ) -> bool {
        let calls = matches!(
            row.conn.protocol,
            Some(Protocol::Grpc | Protocol::Ttrpc | Protocol::Http1)
        );
        if !calls {
            return false;
        }
        let key = (row.conn.id, row.stream);
        match row.kind {
            RowKind::Notice => false,
            RowKind::End => self.end(key, row, headers, shown, outcome, out),
            RowKind::Req | RowKind::Resp => match self.ended.failed(&key) {
                Some(failed) => {
                    if failed && shown {
                        out.push((row, headers));
                    }
                    failed && shown
                }
                None => {
                    if shown && !self.overflowed.contains_key(&key) {
                        self.hold(key, row, headers);
                    }
                    false
                }
            },
        }
    }

    fn end(
        &mut self,
        key: CallKey,
        row: Row,
        headers: Option<HeldHeaders>,
        shown: bool,
        outcome: Option<Outcome>,
        out: &mut Vec<HeldRow>,
    ) -> bool {
        let held = self.held.remove(&key);
        if let Some(h) = &held {
            self.bytes -= h.bytes;
        }
        let overflowed = self.overflowed.remove(&key).is_some();
        self.ended.push(key, outcome == Some(Outcome::Failed));
        match outcome {
            Some(Outcome::Failed) => {
                let before = out.len();
                out.extend(held.into_iter().flat_map(|h| h.rows));
                if shown {
                    out.push((row, headers));
                }
                let released = out.len() > before;
                if released {
                    self.counts.shown += 1;
                    if overflowed {
                        self.counts.incomplete += 1;
                    }
                }
                released
            }
            Some(Outcome::Unfinished) => {
                self.counts.unfinished += 1;
                false
            }
            Some(Outcome::Unseen) => {
                self.counts.unseen += 1;
                false
            }
            Some(Outcome::Succeeded) | None => false,
        }
    }

    fn hold(&mut self, key: CallKey, row: Row, headers: Option<HeldHeaders>) {
        let size = row_bytes(&row, headers.as_ref());
        self.bytes += size;
        match self.held.get_mut(&key) {
            Some(h) => {
                h.rows.push((row, headers));
                h.bytes += size;
            }
            None => {
                let fresh = Held {
                    rows: vec![(row, headers)],
                    bytes: size,
                };
                if let Some((old_key, old)) = self.held.insert(key, fresh) {
                    self.overflow(old_key, old);
                }
            }
        }
        while self.bytes > self.limits.bytes {
            let Some((old_key, old)) = self.held.pop_oldest() else {
                break;
            };
            self.overflow(old_key, old);
        }
    }

    /// Drops what `key` held to make room, and remembers that it did.
    fn overflow(&mut self, key: CallKey, dropped: Held) {
        self.bytes -= dropped.bytes;
        self.counts.overflowed += 1;
        // Forgetting the oldest overflowed call only costs its END the `incomplete` mark.
        self.overflowed.insert(key, ());
    }

    /// Connection `id` left the table: its calls have all had their END, so what it still
    /// holds are streams that never end (rows after an END that was forgotten). Its ended
    /// calls are not: connection ids are not reused, and the table forgets the oldest anyway.
    pub fn connection_ended(&mut self, id: u64) {
        let gone: Vec<CallKey> = self.held.keys().filter(|k| k.0 == id).copied().collect();
        for key in gone {
            if let Some(h) = self.held.remove(&key) {
                self.bytes -= h.bytes;
                self.counts.unfinished += 1;
            }
        }
        let forgotten: Vec<CallKey> = self
            .overflowed
            .keys()
            .filter(|k| k.0 == id)
            .copied()
            .collect();
        for key in forgotten {
            self.overflowed.remove(&key);
        }
    }

    /// Calls held right now, and the bytes they hold.
    pub fn held(&self) -> (usize, usize) {
        (self.held.len(), self.bytes)
    }
}

/// The last `capacity` calls that ended, first in first out (every END adds one, so the LRU
/// table's scan for its oldest entry would run on every call).
struct RecentEnds {
    failed: HashMap<CallKey, bool>,
    order: VecDeque<CallKey>,
    capacity: usize,
}

impl RecentEnds {
    fn new(capacity: usize) -> Self {
        RecentEnds {
            failed: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` ended failed, if it ended recently.
    fn failed(&self, key: &CallKey) -> Option<bool> {
        self.failed.get(key).copied()
    }

    fn push(&mut self, key: CallKey, failed: bool) {
        if self.failed.insert(key, failed).is_none() {
            if self.order.len() >= self.capacity
                && let Some(oldest) = self.order.pop_front()
            {
                self.failed.remove(&oldest);
            }
            self.order.push_back(key);
        }
    }
}

/// What a held row costs, roughly: the row itself and what it owns on the heap (bodies,
/// names, header lists); enough to bound memory, not an allocator's exact count.
fn row_bytes(row: &Row, headers: Option<&HeldHeaders>) -> usize {
    let event = match &row.event {
        CallEventKind::Message { body, .. } => match body {
            Body::Protobuf(b) | Body::Raw(b) => b.len(),
            Body::Text { content_type, text } => {
                text.len() + content_type.as_ref().map_or(0, String::len)
            }
            Body::Unavailable { reason, .. } => reason.len(),
        },
        CallEventKind::End { status, .. } => {
            status.message.as_ref().map_or(0, String::len)
                + status.abnormal.as_ref().map_or(0, String::len)
        }
        CallEventKind::Notice { text } => text.len(),
        CallEventKind::Start { metadata, .. } => header_bytes(metadata),
    };
    let ends: usize = row.conn.ends.iter().flatten().map(|e| e.comm.len()).sum();
    size_of::<Row>()
        + row.comm.len()
        + row.peer_comm.as_ref().map_or(0, String::len)
        + row.conn.path.len()
        + ends
        + event
        + headers.map_or(0, |h| header_bytes(h))
}

fn header_bytes(h: &[(String, Option<String>)]) -> usize {
    h.iter()
        .map(|(n, v)| {
            size_of::<(String, Option<String>)>() + n.len() + v.as_ref().map_or(0, String::len)
        })
        .sum()
}

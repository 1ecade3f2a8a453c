//! The replay ring: the last events of one stream, already encoded.
//!
//! The ring is also every subscriber's queue. Subscribers keep only a cursor (the sequence
//! number of the last event they wrote), so a slow client costs a few bytes, not a copy of
//! the backlog, and "bytes queued for this client" is the byte distance from its cursor to
//! the head — computed from offsets each event carries.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

/// An event as stored and written: its sequence number and wire bytes. Held in the ring by
/// value and cloned into a subscriber's batch (a reference count on its bytes); its id is
/// read from its bytes, not kept apart — an allocation per event, for what only a resume
/// asks.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Position in the stream, from 1.
    pub seq: u64,
    /// The encoded event, ready to write: an `id:` line first, or second after `event:`.
    pub wire: Bytes,
    /// Bytes of all earlier events of the stream.
    pub start_offset: u64,
    /// When the proxy received it from the upstream (for the delivery-latency histogram).
    pub received: Instant,
}

impl StoredEvent {
    /// The `id:` it was written with.
    pub fn id(&self) -> &str {
        let mut lines = self.wire.split(|&b| b == b'\n');
        let line = match lines.next() {
            Some(first) if first.starts_with(b"event") => lines.next(),
            first => first,
        };
        let value = line.and_then(|l| l.strip_prefix(b"id")).unwrap_or_default();
        let value = value.strip_prefix(b":").unwrap_or(value);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        std::str::from_utf8(value).unwrap_or_default()
    }
}

/// Fewest events held, so live delivery has room even with `replay: 0`.
const MIN_CAPACITY: usize = 64;

/// Events of one stream, oldest first, bounded in count.
#[derive(Debug)]
#[repr(C)]
pub struct Ring {
    // The counters first: an event through a private stream's outlet moves only them
    // (`repr(C)` keeps them in one cache line).
    head: u64,
    total_bytes: u64,
    /// The newest event written past the ring to a private stream's client (0 before any):
    /// that client's cursor is at least this, whatever it last took from the ring.
    passed: u64,
    events: VecDeque<StoredEvent>,
    capacity: usize,
    replay: usize,
}

/// Where a subscriber stands relative to the ring.
#[derive(Debug, PartialEq, Eq)]
pub enum Backlog {
    /// Bytes between the cursor and the head.
    Bytes(u64),
    /// The cursor is older than the oldest held event: events were lost to this client.
    Lost,
}

impl Ring {
    /// The bytes at its start that an event through a private stream's outlet moves.
    #[cfg(test)]
    pub(super) const COUNTER_BYTES: usize = std::mem::offset_of!(Ring, passed) + 8;

    /// A ring that serves resumes from the last `replay` events.
    pub fn new(replay: usize) -> Self {
        let capacity = replay.max(MIN_CAPACITY);
        Ring {
            // Grown on demand: an idle stream (one per client when unshared) holds no slots.
            events: VecDeque::new(),
            capacity,
            replay,
            head: 0,
            total_bytes: 0,
            passed: 0,
        }
    }

    /// Sequence number of the newest event (0 before the first).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Id of the newest event, if any.
    pub fn head_id(&self) -> Option<&str> {
        self.events.back().map(StoredEvent::id)
    }

    /// Appends an encoded event (see [`StoredEvent::wire`]) and returns its sequence number.
    pub fn push(&mut self, wire: Bytes, received: Instant) -> u64 {
        self.head += 1;
        let event = StoredEvent {
            seq: self.head,
            start_offset: self.total_bytes,
            wire,
            received,
        };
        self.total_bytes += event.wire.len() as u64;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
        self.head
    }

    /// Numbers an event of `len` bytes that went to a private stream's only client without
    /// being stored (see [`crate::stream::Outlet`]) and returns its sequence number: the
    /// numbering goes on (proxy ids come from it), and the client counts as past it.
    pub fn pass(&mut self, len: usize) -> u64 {
        self.head += 1;
        self.total_bytes += len as u64;
        self.passed = self.head;
        self.head
    }

    /// The sequence number of the event with `id` among the last `replay` events.
    pub fn find(&self, id: &str) -> Option<u64> {
        self.events
            .iter()
            .rev()
            .take(self.replay)
            .find(|e| e.id() == id)
            .map(|e| e.seq)
    }

    /// How far behind the head a cursor is.
    pub fn backlog(&self, cursor: u64) -> Backlog {
        let cursor = cursor.max(self.passed);
        if cursor >= self.head {
            return Backlog::Bytes(0);
        }
        match self.get(cursor + 1) {
            Some(next) => Backlog::Bytes(self.total_bytes - next.start_offset),
            None => Backlog::Lost,
        }
    }

    /// Appends to `batch` the events after `cursor`, up to about `max_bytes` (always at least
    /// one when any).
    pub fn after(&self, cursor: u64, max_bytes: usize, batch: &mut Vec<StoredEvent>) {
        let Some(first) = self.events.front().map(|e| e.seq) else {
            return;
        };
        let skip = (cursor + 1).saturating_sub(first) as usize;
        let mut taken = 0;
        let events = self.events.iter().skip(skip).take_while(|e| {
            let fits = taken == 0 || taken + e.wire.len() <= max_bytes;
            taken += e.wire.len();
            fits
        });
        batch.extend(events.cloned());
    }

    /// What a stream's only subscriber takes: the events after `cursor`, up to about
    /// `max_bytes` (always at least one when any), moved to `batch` and removed from the ring
    /// together with every event at or before `cursor`. Sequence numbers and byte offsets are
    /// unchanged.
    pub fn take_after(&mut self, cursor: u64, max_bytes: usize, batch: &mut Vec<StoredEvent>) {
        let cursor = cursor.max(self.passed);
        while self.events.front().is_some_and(|e| e.seq <= cursor) {
            self.events.pop_front();
        }
        let mut taken = 0;
        while let Some(next) = self.events.front() {
            if taken > 0 && taken + next.wire.len() > max_bytes {
                break;
            }
            taken += next.wire.len();
            batch.extend(self.events.pop_front());
        }
    }

    /// The newest cursor that leaves at most `max_bytes` queued — where `drop_oldest` moves
    /// a lagging client.
    pub fn cursor_within(&self, max_bytes: u64) -> u64 {
        let newest_allowed = self
            .events
            .iter()
            .find(|e| self.total_bytes - e.start_offset <= max_bytes)
            .map_or(self.head, |e| e.seq - 1);
        newest_allowed.max(self.events.front().map_or(0, |e| e.seq - 1))
    }

    fn get(&self, seq: u64) -> Option<&StoredEvent> {
        let first = self.events.front()?.seq;
        self.events.get(seq.checked_sub(first)? as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(ring: &Ring, cursor: u64, max_bytes: usize) -> Vec<StoredEvent> {
        let mut batch = Vec::new();
        ring.after(cursor, max_bytes, &mut batch);
        batch
    }

    /// A ring of events with ids from 0 whose wire forms are `wires` (not real events: what
    /// the ring counts is their length).
    fn ring_with(wires: &[&str], replay: usize) -> Ring {
        let mut ring = Ring::new(replay);
        for wire in wires {
            ring.push(Bytes::from(wire.to_string()), Instant::now());
        }
        ring
    }

    /// A ring of real events with ids from 0.
    fn ring_of_ids(count: usize, replay: usize) -> Ring {
        let mut ring = Ring::new(replay);
        for id in 0..count {
            let wire = format!("id: {id}\ndata: x\n\n");
            ring.push(Bytes::from(wire), Instant::now());
        }
        ring
    }

    #[test]
    fn an_events_id_is_read_from_its_bytes() {
        let stored = |wire: &'static str| StoredEvent {
            seq: 1,
            wire: Bytes::from_static(wire.as_bytes()),
            start_offset: 0,
            received: Instant::now(),
        };
        assert_eq!(stored("id: 7\ndata: x\n\n").id(), "7");
        assert_eq!(stored("event: tick\nid: a b\ndata\n\n").id(), "a b");
        assert_eq!(stored("event\nid: 8\ndata: id: 9\n\n").id(), "8");
        assert_eq!(stored("id\ndata: x\n\n").id(), "");
    }

    #[test]
    fn backlog_and_after() {
        let ring = ring_with(&["aa", "bbb", "c"], 10);
        assert_eq!(ring.head(), 3);
        assert_eq!(ring.backlog(0), Backlog::Bytes(6));
        assert_eq!(ring.backlog(2), Backlog::Bytes(1));
        assert_eq!(ring.backlog(3), Backlog::Bytes(0));
        let seqs: Vec<u64> = after(&ring, 1, 3).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2]);
        let seqs: Vec<u64> = after(&ring, 0, 1).iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            [1],
            "at least one event even when larger than the budget"
        );
    }

    #[test]
    fn eviction_makes_old_cursors_lost() {
        let ring = ring_of_ids(70, 0);
        assert_eq!(ring.backlog(0), Backlog::Lost);
        assert_eq!(
            ring.backlog(6),
            Backlog::Bytes(
                after(&ring, 6, usize::MAX)
                    .iter()
                    .map(|e| e.wire.len() as u64)
                    .sum()
            )
        );
        assert_eq!(ring.find("69"), None, "replay 0 serves no resumes");
    }

    #[test]
    fn take_after_removes_what_it_returns_and_what_came_before() {
        let mut ring = ring_with(&["aa", "bbb", "c", "dd"], 10);
        let mut take_after = |cursor, max_bytes| {
            let mut batch = Vec::new();
            ring.take_after(cursor, max_bytes, &mut batch);
            batch.iter().map(|e| e.seq).collect::<Vec<_>>()
        };
        assert_eq!(take_after(1, 4), [2, 3]);
        assert_eq!(take_after(3, 1), [4]);
        assert!(take_after(4, usize::MAX).is_empty());
        assert_eq!(ring.head(), 4);
        assert_eq!(ring.backlog(4), Backlog::Bytes(0), "offsets unchanged");
        assert_eq!(ring.backlog(1), Backlog::Lost, "taken events are gone");
    }

    #[test]
    fn passed_events_are_numbered_and_count_as_taken() {
        let mut ring = ring_with(&["aa"], 10);
        let mut batch = Vec::new();
        ring.take_after(0, usize::MAX, &mut batch);
        assert_eq!(ring.pass(3), 2);
        assert_eq!(ring.pass(4), 3);
        assert_eq!(ring.head(), 3);
        assert_eq!(ring.backlog(1), Backlog::Bytes(0), "past the passed events");
        ring.push(Bytes::from_static(b"bbbbb"), Instant::now());
        assert_eq!(ring.backlog(1), Backlog::Bytes(5));
        batch.clear();
        ring.take_after(1, usize::MAX, &mut batch);
        let seqs: Vec<u64> = batch.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [4]);
    }

    #[test]
    fn find_respects_the_replay_window() {
        let ring = ring_of_ids(4, 2);
        assert_eq!(ring.find("3"), Some(4));
        assert_eq!(ring.find("2"), Some(3));
        assert_eq!(ring.find("1"), None);
    }

    #[test]
    fn cursor_within_keeps_the_newest_bytes() {
        let ring = ring_with(&["aaaa", "bb", "c"], 10);
        assert_eq!(ring.cursor_within(3), 1, "'bb' and 'c' are exactly 3 bytes");
        assert_eq!(ring.cursor_within(2), 2);
        assert_eq!(ring.cursor_within(100), 0);
        assert_eq!(ring.cursor_within(0), 3);
    }
}

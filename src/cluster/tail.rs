//! What a node knows of the end of one stream's log: the last event's number, id and
//! document — updated by whoever publishes locally (the reader as a follower, the appender
//! as the holder), read when this node takes the stream over.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::entry::Entry;

/// The last event of a stream this node published.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Last {
    /// Its number (0 before the first).
    pub number: u64,
    /// The SSE id it was sent with.
    pub id: Option<String>,
    /// The full document after it (poll routes).
    pub document: Option<String>,
}

impl Last {
    fn record(&mut self, entry: &Entry) {
        self.number = entry.number;
        self.id.clone_from(&entry.event.id);
        if let Some((_, document)) = &entry.snapshot {
            self.document = Some(document.clone());
        }
    }
}

/// The shared end of one stream's log, as this node knows it.
#[derive(Debug, Default, Clone)]
pub struct Tail(Arc<Mutex<Last>>);

impl Tail {
    /// A copy of what is known.
    pub fn last(&self) -> Last {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records `entry` if it is newer than the last one; returns whether it was.
    pub fn advance(&self, entry: &Entry) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if entry.number <= last.number {
            return false;
        }
        last.record(entry);
        true
    }

    /// Records that the log went past `number` without an event (an end mark): the last
    /// event's id and document stay. Returns whether `number` was newer.
    pub fn pass(&self, number: u64) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = number > last.number;
        last.number = last.number.max(number);
        newer
    }

    /// Makes `entry` the last event, whatever was known before: after a split, this node
    /// follows the log from its end.
    pub fn jump_to(&self, entry: &Entry) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(entry);
    }

    /// The number of a new event: the time in µs, or one more than the last when that is
    /// later (a clock behind another node's, or two events in one µs). Increasing per
    /// stream across nodes and takeovers, and below 2^53 (until the year 2255).
    pub fn next_number(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let number = now.max(last.number + 1);
        last.number = number;
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Event;

    #[test]
    fn numbers_increase_past_anything_seen_and_stay_below_2_pow_53() {
        let tail = Tail::default();
        let first = tail.next_number();
        assert!(first < 1 << 53);
        let ahead = Entry::new(first + 10_000_000, "x", &Event::message("m"), None);
        assert!(tail.advance(&ahead));
        assert!(!tail.advance(&ahead), "an entry is applied once");
        assert_eq!(tail.next_number(), first + 10_000_001);
        assert_eq!(tail.last().id.as_deref(), Some("x"));
    }

    #[test]
    fn passing_an_end_mark_moves_the_number_and_keeps_the_last_event() {
        let tail = Tail::default();
        assert!(tail.advance(&Entry::new(5, "e5", &Event::message("m"), None)));
        assert!(tail.pass(6));
        assert!(!tail.pass(6), "a mark is passed once");
        assert_eq!(tail.last().number, 6);
        assert_eq!(tail.last().id.as_deref(), Some("e5"));
    }
}

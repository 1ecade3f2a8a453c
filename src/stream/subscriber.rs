//! One client's place in a shared stream: a cursor into the ring, nothing copied.
//!
//! Dropping the subscription — however the client's stream ended — tells the hub, so the
//! upstream stops after the last subscriber and nothing leaks.

use std::sync::Arc;

use tokio::sync::watch;

use super::hub::Hub;
use super::ring::{Backlog, StoredEvent};
use super::shared::{Joined, Stream};

/// A subscriber's view of a stream.
pub struct Subscription {
    hub: Arc<Hub>,
    key: String,
    stream: Arc<Stream>,
    head: watch::Receiver<u64>,
    cursor: u64,
    live_from: u64,
    preamble: bytes::BytesMut,
}

impl Subscription {
    pub(super) fn new(hub: Arc<Hub>, key: String, stream: Arc<Stream>, joined: Joined) -> Self {
        let head = stream.watch_head();
        Subscription {
            hub,
            key,
            stream,
            head,
            cursor: joined.cursor,
            live_from: joined.live_from,
            preamble: joined.preamble,
        }
    }

    /// Bytes to send before any event: the snapshot, reset or gap marker decided at join.
    pub fn take_preamble(&mut self) -> bytes::BytesMut {
        std::mem::take(&mut self.preamble)
    }

    /// Waits until there are events past the cursor. Cancel-safe.
    pub async fn ready(&mut self) {
        loop {
            let head = *self.head.borrow_and_update();
            if head > self.cursor {
                return;
            }
            if self.head.changed().await.is_err() {
                // The stream is gone; never resolve again.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Bytes queued for this client since it joined; replayed history does not count.
    pub fn backlog(&self) -> Backlog {
        self.stream.read(|ring| match ring.backlog(self.cursor) {
            Backlog::Lost => Backlog::Lost,
            Backlog::Bytes(_) => ring.backlog(self.cursor.max(self.live_from)),
        })
    }

    /// Whether the client is past `max_lag` (or has already lost events).
    pub fn is_lagging(&self, max_lag: u64) -> bool {
        match self.backlog() {
            Backlog::Lost => true,
            Backlog::Bytes(bytes) => bytes > max_lag,
        }
    }

    /// Resolves once the client is past `max_lag`; used while a write is blocked.
    pub async fn lagging(&mut self, max_lag: u64) {
        loop {
            if self.is_lagging(max_lag) {
                return;
            }
            if self.head.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The next events to write (about `max_bytes`), advancing the cursor past them.
    pub fn next_batch(&mut self, max_bytes: usize) -> Vec<Arc<StoredEvent>> {
        let batch = self.stream.read(|ring| ring.after(self.cursor, max_bytes));
        if let Some(last) = batch.last() {
            self.cursor = last.seq;
        }
        batch
    }

    /// Drops the oldest queued events so at most `max_lag` bytes remain (`drop_oldest`).
    pub fn skip_oldest(&mut self, max_lag: u64) {
        let newest = self.stream.read(|ring| ring.cursor_within(max_lag));
        self.cursor = self.cursor.max(newest);
        self.live_from = self.live_from.max(self.cursor);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .leave(std::mem::take(&mut self.key), self.stream.clone());
    }
}

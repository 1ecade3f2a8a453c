//! One client's place in a shared stream: a cursor into the ring, nothing copied.
//!
//! Dropping the subscription — however the client's stream ended — drops its membership,
//! so the upstream stops after the last subscriber and nothing leaks.
//!
//! The subscription of a private stream also holds the stream's feed and drives it whenever
//! the writer waits on it ([`Subscription::ready`], [`Subscription::lagging`],
//! [`Subscription::drive`]): its events are published and written in one task, and what it
//! has written leaves the ring at once, since nobody else will read it. While the writer
//! waits with nothing queued, what the feed receives goes straight to the client through
//! the stream's outlet ([`super::outlet`]).

use std::convert::Infallible;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::head::Registration;
use super::outlet::{Outlet, Passed};
use super::own_feed::OwnFeed;
use super::ring::{Backlog, StoredEvent};
use super::shared::{Feed, Joined, Stream};
use super::table::Membership;

/// A subscriber's view of a stream.
///
/// (`repr(C)`: what each wake-up of the client's task reads — the outlet flag, the cursor,
/// the feed and the stream — together in its first 64 bytes; `Membership` starts with its
/// stream.)
#[repr(C)]
pub struct Subscription {
    /// Whether the client connection is the stream's outlet (a private stream's only).
    outlet: bool,
    cursor: u64,
    /// A private stream's feed, run by this subscription; `None` for a shared stream (its feed
    /// has a task of its own) and once the feed has returned.
    feed: Option<OwnFeed>,
    membership: Membership,
    /// Where this subscriber's waker stands among the stream's waiters (a shared stream's).
    registration: Registration,
    live_from: u64,
    /// The head when the client joined: events up to it are replayed history.
    joined_at: u64,
    preamble: bytes::BytesMut,
}

impl Subscription {
    pub(super) fn new(membership: Membership, joined: Joined, feed: Option<Feed>) -> Self {
        Subscription {
            outlet: false,
            cursor: joined.cursor,
            feed: feed.map(OwnFeed::new),
            membership,
            registration: Registration::default(),
            live_from: joined.live_from,
            joined_at: joined.live_from,
            preamble: joined.preamble,
        }
    }

    /// Bytes to send before any event: the snapshot, reset or gap marker decided at join.
    pub fn take_preamble(&mut self) -> bytes::BytesMut {
        std::mem::take(&mut self.preamble)
    }

    /// Lets a private stream's events go straight to `outlet` (the client connection) while
    /// the writer waits with nothing queued; nothing for a shared stream or without one.
    pub fn attach_outlet(&mut self, outlet: Option<Arc<dyn Outlet>>) {
        if let (Some(feed), Some(_)) = (&mut self.feed, &outlet) {
            feed.wake_directly();
            self.outlet = true;
            self.stream().attach_outlet(outlet);
        }
    }

    /// What went to the client through the outlet so far (nothing without one).
    pub fn passed(&self) -> Passed {
        if !self.outlet {
            return Passed::default();
        }
        self.stream().passed()
    }

    /// Waits until there are events past the cursor, or the stream has finished. Cancel-safe.
    /// Meanwhile a private stream's events go straight to the client, if it has an outlet:
    /// the writer is waiting, with nothing queued.
    pub async fn ready(&mut self) {
        if self.feed.is_some() {
            return poll_fn(|cx| {
                if self.outlet {
                    self.stream().open_outlet(!self.has_news());
                }
                self.poll_own_feed(cx, |me| me.has_news())
            })
            .await;
        }
        poll_fn(|cx| self.poll_head(cx, Self::has_news)).await
    }

    /// Runs a private stream's feed until it is dropped (while a write to the client is
    /// blocked, say); never resolves. Cancel-safe.
    pub async fn drive(&mut self) -> Infallible {
        poll_fn(|cx| {
            self.close_outlet();
            let _ = self.poll_own_feed(cx, |_| false);
            Poll::Pending
        })
        .await
    }

    /// Keeps what the feed publishes from the outlet: the writer is writing.
    fn close_outlet(&self) {
        if self.outlet {
            self.stream().open_outlet(false);
        }
    }

    /// Polls this subscription's own feed, then resolves if `done` says so. Only that feed
    /// publishes into a private stream, so no other wake-up is needed; once the feed has
    /// returned, nothing will change again.
    fn poll_own_feed(&mut self, cx: &mut Context<'_>, done: impl Fn(&Self) -> bool) -> Poll<()> {
        if let Some(feed) = &mut self.feed {
            if feed.poll(cx).is_ready() {
                self.feed = None;
            }
        }
        if done(self) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Resolves if `done` says so, else waits for the head of a shared stream to move: the
    /// waker is registered (once), then `done` asked again, so no advance falls between.
    fn poll_head(&mut self, cx: &mut Context<'_>, done: impl Fn(&Self) -> bool) -> Poll<()> {
        if done(self) {
            return Poll::Ready(());
        }
        let head = self.membership.stream().head();
        head.register(&mut self.registration, cx.waker());
        if done(self) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Whether there are events past the cursor, or the stream has finished.
    fn has_news(&self) -> bool {
        let head = self.stream().head();
        head.seq() > self.cursor || head.is_finished()
    }

    /// The backend feeding the stream now, for the access log.
    pub fn backend(&self) -> Arc<str> {
        self.membership.stream().backend()
    }

    /// Whether the upstream ended the stream and every event has been taken.
    pub fn is_finished(&self) -> bool {
        let head = self.stream().head();
        head.is_finished() && head.seq() <= self.cursor
    }

    /// Whether `event` arrived after this client joined (replayed history is not).
    pub fn is_live(&self, event: &StoredEvent) -> bool {
        event.seq > self.joined_at
    }

    /// Bytes queued for this client since it joined; replayed history does not count.
    pub fn backlog(&self) -> Backlog {
        self.stream().read(|ring| match ring.backlog(self.cursor) {
            Backlog::Bytes(_) if self.cursor < self.live_from => ring.backlog(self.live_from),
            backlog => backlog,
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
        if self.feed.is_some() {
            return poll_fn(|cx| {
                self.close_outlet();
                self.poll_own_feed(cx, |me| me.is_lagging(max_lag))
            })
            .await;
        }
        poll_fn(|cx| self.poll_head(cx, |me| me.is_lagging(max_lag))).await
    }

    /// Appends to `batch` (the writer's, reused) the next events to write, about
    /// `max_bytes`, advancing the cursor past them. A private stream lets them go from its
    /// ring (nobody else will read them), after the rest of an event its outlet cut.
    pub fn next_batch(&mut self, max_bytes: usize, batch: &mut Vec<StoredEvent>) {
        let stream = self.membership.stream();
        if self.membership.is_private() {
            stream.take(self.cursor, max_bytes, batch);
        } else {
            stream.read(|ring| ring.after(self.cursor, max_bytes, batch));
        }
        if let Some(last) = batch.last() {
            self.cursor = last.seq;
        }
    }

    /// Drops the oldest queued events so at most `max_lag` bytes remain (`drop_oldest`).
    pub fn skip_oldest(&mut self, max_lag: u64) {
        let newest = self.stream().read(|ring| ring.cursor_within(max_lag));
        self.cursor = self.cursor.max(newest);
        self.live_from = self.live_from.max(self.cursor);
    }
}

impl Subscription {
    fn stream(&self) -> &Arc<Stream> {
        self.membership.stream()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stream().head().unregister(&self.registration);
        // The connection is the writer's alone again (its end may shut it down).
        if self.outlet {
            self.stream().attach_outlet(None);
        }
    }
}

#[cfg(test)]
mod tests;

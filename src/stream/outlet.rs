//! A private stream's way past its ring: an event for a client that has nothing queued goes
//! to the client's socket from the poll of the feed that received it.
//!
//! On a private stream the feed runs inside its one client's task, and the ring is only a
//! queue between the two. While the writer waits with nothing queued, it opens the outlet;
//! an event published then is written at once, without being stored, counted or woken for.
//! What the socket does not take goes the usual way: the rest of an event it took only part
//! of is the first thing the writer sends (so nothing can cut into an event), and the
//! events after it wait in the ring. The writer still owns the stream — its heartbeats,
//! slow-client policy and ends — and reads here what went through, for its access-log tally
//! and for when a heartbeat is due.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use tokio::time::Instant as WriterInstant;

use super::ring::StoredEvent;
use crate::metrics::DeliveryMetrics;

/// A client connection that takes bytes without waiting, from a holder other than the
/// writer (a plain TCP socket: `try_write` on a shared reference).
pub trait Outlet: Send + Sync {
    /// Writes what fits of `bytes` now and says how much; `WouldBlock` when nothing does.
    fn try_send(&self, bytes: &[u8]) -> io::Result<usize>;
}

/// What went through the outlet since the stream began.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Events written whole.
    pub events: u64,
    /// Bytes written (with the part of an event whose rest the writer sent).
    pub bytes: u64,
    /// When the last of them was written, on the writer's clock (tokio's, for heartbeats).
    pub last_write: Option<WriterInstant>,
}

/// A private stream's outlet, as its stream holds it. (`repr(C)`: what every event through
/// the outlet reads and writes first, in the cache line of the stream's lock.)
#[derive(Default)]
#[repr(C)]
pub(super) struct Direct {
    outlet: Option<Arc<dyn Outlet>>,
    passed: Passed,
    /// Where events are encoded while the outlet is open, kept between them.
    buffer: BytesMut,
    /// The rest of an event the socket took only part of: the writer sends it first.
    rest: Option<StoredEvent>,
}

/// The largest encoding buffer kept between events; a longer event's buffer is let go.
const KEPT_BUFFER: usize = 4096;

/// What became of an event offered to the outlet.
pub(super) enum Offered {
    /// Written whole.
    Written,
    /// Written in part: the rest is kept for the writer.
    Cut,
    /// Not written (no outlet, a full socket, or a client gone): it goes to the ring.
    Refused,
}

impl Direct {
    /// The bytes at its start that an event through the outlet reads and writes.
    #[cfg(test)]
    pub(super) const HOT_BYTES: usize =
        std::mem::offset_of!(Direct, passed) + std::mem::size_of::<Passed>();

    /// Attaches the client's outlet; `None` takes it away (the connection is the writer's
    /// alone again).
    pub(super) fn attach(&mut self, outlet: Option<Arc<dyn Outlet>>) {
        self.outlet = outlet;
    }

    /// Writes `wire`, the event numbered `seq`, received at `received`, to the outlet.
    pub(super) fn offer(
        &mut self,
        (seq, wire): (u64, &[u8]),
        received: Instant,
        metrics: &DeliveryMetrics,
    ) -> Offered {
        let Some(outlet) = &self.outlet else {
            return Offered::Refused;
        };
        // An error is a client gone: the writer's own send will find it and end the stream.
        let written = outlet.try_send(wire).unwrap_or(0);
        if written == 0 {
            return Offered::Refused;
        }
        let now = WriterInstant::now();
        self.passed.bytes += written as u64;
        self.passed.last_write = Some(now);
        metrics.bytes_sent.inc_by(written as u64);
        if written < wire.len() {
            self.rest = Some(StoredEvent {
                seq,
                wire: bytes::Bytes::copy_from_slice(&wire[written..]),
                start_offset: 0,
                received,
            });
            return Offered::Cut;
        }
        self.passed.events += 1;
        metrics.events_sent.inc();
        let delay = now.into_std().saturating_duration_since(received);
        metrics.event_delivery.observe(delay.as_secs_f64());
        Offered::Written
    }

    /// The encoding buffer, empty, for the next event (one that goes to the ring keeps it).
    pub(super) fn take_buffer(&mut self) -> BytesMut {
        std::mem::take(&mut self.buffer)
    }

    /// Keeps `buffer`, whose event went out, for the next event.
    pub(super) fn keep_buffer(&mut self, mut buffer: BytesMut) {
        if buffer.capacity() <= KEPT_BUFFER {
            buffer.clear();
            self.buffer = buffer;
        }
    }

    /// The rest of a cut event, once.
    pub(super) fn take_rest(&mut self) -> Option<StoredEvent> {
        self.rest.take()
    }

    /// What went through so far.
    pub(super) fn passed(&self) -> Passed {
        self.passed
    }
}

//! One stream: the replay ring and the current snapshot, with the publish side in
//! [`publisher`].
//!
//! A source publishes complete events through its [`Publisher`]; the stream assigns ids,
//! encodes each event once (whatever the number of subscribers), appends it to the ring and
//! wakes the subscribers waiting on its [`Head`] — except on a private stream, whose one
//! subscriber runs the feed itself and reads the head after every poll, and whose events
//! go past the ring to the client while it has nothing queued (see [`super::outlet`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockWriteGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

mod publisher;

pub use publisher::{Feed, Publisher, Relay};

use super::head::Head;
use super::outlet::{Direct, Offered, Outlet, Passed};
use super::ring::{Ring, StoredEvent};
use super::spec::StreamSpec;
use crate::metrics::{DeliveryMetrics, RouteMetrics};
use crate::sse::{AsSent, EncodeError, Event};

/// The document a late subscriber needs first (poll routes).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Event name for a subscriber that just arrived (`snapshot`, or the route's event).
    pub join_event: String,
    /// The full current document.
    pub data: String,
}

struct EncodedSnapshot {
    seq: u64,
    join: Bytes,
    reset: Bytes,
}

/// What the lock guards. (`repr(C)`: the outlet's state first, in the lock's cache line.)
#[repr(C)]
struct State {
    direct: Direct,
    ring: Ring,
    snapshot: Option<EncodedSnapshot>,
}

/// A stream shared by every subscriber with the same key.
///
/// Laid out for a private stream's delivery, which finds the stream evicted from the CPU's
/// caches by the kernel's receive and send around it, so that every line it touches is a
/// fetch from memory: the lock with the outlet's state in the first cache line, the ring's
/// counters in the second or third, and every field read outside the lock in a line of its
/// own ([`Hot`]) — three or four lines where the compiler's order touched eight
/// (docs/benchmarks.md, "Fewer lines of memory per delivery").
#[repr(C, align(64))]
pub struct Stream {
    state: RwLock<State>,
    hot: Hot,
    id_base: u64,
    metrics: RouteMetrics,
    /// The upstream feeding the stream now, as the `backend` label of its errors.
    backend: Mutex<Arc<str>>,
}

/// The fields of a stream every delivery reads outside its lock, in one cache line.
#[repr(C, align(64))]
struct Hot {
    /// Whether an event appended now may go straight to the client (see [`super::outlet`]):
    /// set by a private stream's subscriber before each poll of its feed.
    outlet_open: AtomicBool,
    failing: AtomicBool,
    /// Whether an append wakes the subscribers waiting on `head`: not on a private stream,
    /// whose one subscriber polls the feed itself and reads the head after every poll.
    wakes_on_append: bool,
    spec: Arc<StreamSpec>,
    delivery: DeliveryMetrics,
    /// Last: its sequence number and end flag come first, its waiters may spill over.
    head: Head,
}

/// How a joining subscriber's Last-Event-ID was answered.
pub(super) struct Joined {
    pub cursor: u64,
    pub live_from: u64,
    pub preamble: BytesMut,
}

impl Stream {
    /// A stream for `spec`; `private` when its only subscriber runs its feed.
    pub(super) fn new(spec: Arc<StreamSpec>, metrics: RouteMetrics, private: bool) -> Self {
        metrics.upstream_streams_active.inc();
        Stream {
            state: RwLock::new(State {
                direct: Direct::default(),
                ring: Ring::new(spec.replay),
                snapshot: None,
            }),
            hot: Hot {
                outlet_open: AtomicBool::new(false),
                failing: AtomicBool::new(false),
                wakes_on_append: !private,
                spec,
                delivery: metrics.delivery(),
                head: Head::default(),
            },
            id_base: id_base(),
            metrics,
            backend: Mutex::new(Arc::from("")),
        }
    }

    /// The backend feeding the stream now (empty before the first attempt).
    pub(super) fn backend(&self) -> Arc<str> {
        self.backend
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Counts an upstream error against the backend feeding the stream now.
    fn count_error(&self, reason: &'static str) {
        self.metrics.upstream_error(&self.backend(), reason);
    }

    pub(super) fn spec(&self) -> &StreamSpec {
        &self.hot.spec
    }

    /// The head its subscribers watch.
    pub(super) fn head(&self) -> &Head {
        &self.hot.head
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&Ring) -> T) -> T {
        f(&self
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .ring)
    }

    /// Attaches (or with `None` takes away) the client's outlet of a private stream.
    pub(super) fn attach_outlet(&self, outlet: Option<Arc<dyn Outlet>>) {
        self.lock().direct.attach(outlet);
    }

    /// Lets the next appends go to the outlet, or not: open only while the subscriber has
    /// nothing queued and is not writing.
    pub(super) fn open_outlet(&self, open: bool) {
        self.hot.outlet_open.store(open, Ordering::Relaxed);
    }

    /// What went through the outlet so far.
    pub(super) fn passed(&self) -> Passed {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.direct.passed()
    }

    /// What a private stream's subscriber writes next, moved to `batch`: the rest of an
    /// event the outlet cut, then the ring's events after `cursor` (see [`Ring::take_after`]).
    pub(super) fn take(&self, cursor: u64, max_bytes: usize, batch: &mut Vec<StoredEvent>) {
        let mut state = self.lock();
        batch.extend(state.direct.take_rest());
        state.ring.take_after(cursor, max_bytes, batch);
    }

    fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Proxy-assigned ids are `id_base + seq`: numeric, increasing, and distinct from the
    /// ids of an earlier stream with the same key (the base is the creation time in µs).
    fn proxy_id(&self, seq: u64) -> String {
        self.proxy_id_in(seq, &mut Digits::default()).to_string()
    }

    /// [`Stream::proxy_id`] written into `digits`, without an allocation (one per event).
    fn proxy_id_in<'d>(&self, seq: u64, digits: &'d mut Digits) -> &'d str {
        digits.decimal(self.id_base + seq)
    }

    /// Positions a new subscriber: replay after a known id, snapshot, or gap marker.
    pub(super) fn join(&self, last_event_id: Option<&str>, created: bool) -> Joined {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let head = state.ring.head();
        let mut joined = Joined {
            cursor: head,
            live_from: head,
            preamble: BytesMut::new(),
        };
        let Some(id) = last_event_id else {
            if let Some(snapshot) = &state.snapshot {
                joined.preamble.extend_from_slice(&snapshot.join);
                joined.cursor = snapshot.seq;
            }
            return joined;
        };
        if let Some(seq) = state.ring.find(id) {
            self.metrics.replay_hits.inc();
            joined.cursor = seq;
        } else if id == self.proxy_id(0) && state.ring.find(&self.proxy_id(1)).is_some() {
            self.metrics.replay_hits.inc();
            joined.cursor = 0;
        } else if created && head == 0 && self.hot.spec.resumes_upstream {
            // The upstream receives this id and resumes from it itself. (A new stream that
            // already holds events — a cluster's replay window — answers like any other.)
        } else if let Some(snapshot) = &state.snapshot {
            self.metrics.replay_misses.inc();
            joined.preamble.extend_from_slice(&snapshot.reset);
            joined.cursor = snapshot.seq;
        } else {
            self.metrics.replay_misses.inc();
            let marker_id = state
                .ring
                .head_id()
                .map_or_else(|| self.proxy_id(0), str::to_string);
            let data = serde_json::json!({ "reason": "last-event-id not in replay window", "last_event_id": id });
            let marker = Event::named("gap", data.to_string());
            if marker
                .encode_into(&marker_id, &mut joined.preamble)
                .is_err()
            {
                joined.preamble.clear();
            }
        }
        joined
    }

    /// Encodes `event` with `id` (the next proxy id when `None`; the event's own `id` field
    /// is not read) and appends it.
    fn append(
        &self,
        event: &Event,
        id: Option<&str>,
        snapshot: Option<Snapshot>,
    ) -> Result<(), EncodeError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let seq = state.ring.head() + 1;
        let mut digits = Digits::default();
        let id = id.unwrap_or_else(|| self.proxy_id_in(seq, &mut digits));
        let mut wire = self.wire_buffer(&mut state, event.wire_len(id));
        event.encode_into(id, &mut wire)?;
        if let Some(snapshot) = snapshot {
            let mut join = BytesMut::new();
            Event::named(snapshot.join_event, snapshot.data.as_str()).encode_into(id, &mut join)?;
            let mut reset = BytesMut::new();
            Event::named("reset", snapshot.data).encode_into(id, &mut reset)?;
            state.snapshot = Some(EncodedSnapshot {
                seq,
                join: join.freeze(),
                reset: reset.freeze(),
            });
        }
        self.push(state, wire, Instant::now());
        Ok(())
    }

    /// Appends an upstream event received in the encoder's form, as received: with its own
    /// id, or the next proxy id put in. One that lies whole in the read, with its own id,
    /// goes to an open outlet from there, encoded nowhere.
    fn append_as_sent(&self, event: &AsSent<'_>) {
        let mut state = self.lock();
        let received = Instant::now();
        if let Some(wire) = event.as_received() {
            if self.through_outlet(&mut state, wire, received) {
                return;
            }
        }
        let mut digits = Digits::default();
        let id = match event.id() {
            Some(id) => id,
            None => self.proxy_id_in(state.ring.head() + 1, &mut digits),
        };
        let mut wire = self.wire_buffer(&mut state, event.wire_len(id));
        event.encode_into(id, &mut wire);
        self.push(state, wire, received);
    }

    /// Room for an event of `len` bytes: the outlet's buffer, reused, while the outlet is
    /// open (an event written at once needs no allocation of its own); else exactly `len`,
    /// so that freezing it for the ring allocates nothing more.
    fn wire_buffer(&self, state: &mut State, len: usize) -> BytesMut {
        if self.hot.outlet_open.load(Ordering::Relaxed) {
            let mut buffer = state.direct.take_buffer();
            buffer.reserve(len);
            return buffer;
        }
        BytesMut::with_capacity(len)
    }

    /// Writes an encoded event to the open outlet, or puts it at the head of the ring and
    /// tells the subscribers.
    fn push(&self, mut state: RwLockWriteGuard<'_, State>, wire: BytesMut, received: Instant) {
        if self.through_outlet(&mut state, &wire, received) {
            state.direct.keep_buffer(wire);
            return;
        }
        let seq = state.ring.push(wire.freeze(), received);
        drop(state);
        self.hot.head.advance(seq, self.hot.wakes_on_append);
    }

    /// Offers `wire`, the next event, to the outlet if it is open. Whether the ring is not
    /// needed for it: written whole, or cut, its rest kept for the writer (whom the head
    /// wakes). A refusal closes the outlet: what follows queues behind it.
    fn through_outlet(&self, state: &mut State, wire: &[u8], received: Instant) -> bool {
        if !self.hot.outlet_open.load(Ordering::Relaxed) {
            return false;
        }
        let seq = state.ring.head() + 1;
        match state
            .direct
            .offer((seq, wire), received, &self.hot.delivery)
        {
            Offered::Written => {
                state.ring.pass(wire.len());
                true
            }
            Offered::Cut => {
                state.ring.pass(wire.len());
                self.open_outlet(false);
                self.hot.head.advance(seq, self.hot.wakes_on_append);
                true
            }
            Offered::Refused => {
                self.open_outlet(false);
                false
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.metrics.upstream_streams_active.dec();
    }
}

/// Room for a `u64` in decimal.
#[derive(Default)]
struct Digits([u8; 20]);

impl Digits {
    /// `n` in decimal, in this room.
    fn decimal(&mut self, mut n: u64) -> &str {
        let mut start = self.0.len();
        loop {
            start -= 1;
            self.0[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        std::str::from_utf8(&self.0[start..]).unwrap_or_default()
    }
}

fn id_base() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    // Keep ids exact in JavaScript numbers (below 2^53).
    micros % (1 << 52)
}

#[cfg(test)]
mod tests;

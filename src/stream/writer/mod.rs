//! The downstream writer: the one loop that turns a subscription into bytes on a client
//! connection, for every route kind.
//!
//! It writes the `retry:` line (jittered per client), then whole events only — so heartbeat
//! comments, sent after `heartbeat` of silence, always fall between events. It applies the
//! slow-client policy, ends the stream on lifetime expiry or shutdown with a final jittered
//! `retry:`, and stops the moment the client goes away.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{sleep_until, Instant, Sleep};

use super::ends::{Ends, RouteStop, StopSignal, StreamEnd};
use super::outlet::{Outlet, Passed};
use super::ring::StoredEvent;
use super::spec::{SlowClientPolicy, StreamSpec};
use super::subscriber::Subscription;
use crate::metrics::RouteMetrics;
use heartbeat::Heartbeat;

mod heartbeat;

/// Where the writer sends bytes: the client connection. (Plain `async fn`s, not boxed ones:
/// the writer calls both once per event.)
pub trait Downstream: Send {
    /// Writes and flushes `bytes`; an error means the client is gone.
    fn send(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), ClientGone>> + Send;
    /// Resolves when the client closes its side. Must be cancel-safe.
    fn closed(&mut self) -> impl Future<Output = ()> + Send;
    /// The connection as an [`Outlet`] a private stream's feed may write to while the
    /// writer waits with nothing queued; `None` (the default) when it cannot take bytes
    /// from outside the writer.
    fn outlet(&self) -> Option<Arc<dyn Outlet>> {
        None
    }
}

/// A write failed: the client has gone away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client has gone away")]
pub struct ClientGone;

/// What one client's stream delivered, for its access-log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Events written.
    pub events: u64,
    /// Event bytes written.
    pub bytes: u64,
}

impl Tally {
    /// Adds what went to the client through the subscription's outlet.
    fn add_passed(&mut self, passed: Passed) {
        self.events += passed.events;
        self.bytes += passed.bytes;
    }
}

/// Largest number of bytes coalesced into one write.
const BATCH_BYTES: usize = 64 * 1024;
const HEARTBEAT: &[u8] = b": hb\n\n";

/// Streams `subscription` to `downstream` until the client leaves or lags, its lifetime or
/// credential runs out, or the proxy stops the route.
pub async fn run(
    downstream: &mut impl Downstream,
    subscription: &mut Subscription,
    settings: &StreamSpec,
    ends: &mut Ends,
    metrics: &RouteMetrics,
    tally: &mut Tally,
) -> StreamEnd {
    if send_first(downstream, subscription, settings)
        .await
        .is_err()
    {
        return StreamEnd::ClientGone;
    }
    subscription.attach_outlet(downstream.outlet());
    let (deadline, expiry) = deadline_timer(settings, ends.expires);
    let mut waits = Waits::new(settings.heartbeat, &ends.stop);
    let heartbeat_timer = waits.heartbeat.timer();
    // Made once, not per wake: every stream of a route waits on the same stop signal, and
    // a fresh wait per event was a lock and a waiter-list insert per delivery.
    let stopping = route_stopped(&mut ends.stop);
    tokio::pin!(deadline, heartbeat_timer, stopping);
    // Reused for every write: no allocation per batch.
    let mut batch = Vec::new();
    let (heartbeat, polled, stop_seen) = waits.parts();
    let end = loop {
        let stop = (stopping.as_mut(), stop_seen);
        let wake = tokio::select! {
            biased;
            end = ended_from_outside(stop, (deadline.as_mut(), expiry), polled) => Wake::Stop(end),
            // Events before the check for a closed client: a wake with events to write then
            // polls the client's socket not at all (a write to a closed client fails anyway).
            _ = subscription.ready() => Wake::Events,
            _ = downstream.closed() => break StreamEnd::ClientGone,
            () = heartbeat.timer_fired(heartbeat_timer.as_mut()) => Wake::Heartbeat,
        };
        let written = match wake {
            Wake::Stop(end) => break farewell(downstream, settings, end).await,
            Wake::Heartbeat if heartbeat.waits_longer(heartbeat_timer.as_mut(), subscription) => {
                continue
            }
            Wake::Heartbeat => send_heartbeat(downstream, metrics)
                .await
                .map(|()| Some(Instant::now())),
            Wake::Events => {
                let client = (&mut *downstream, &mut *subscription);
                write_events(client, settings, metrics, tally, &mut batch).await
            }
        };
        match written {
            Err(end) => break end,
            Ok(Some(at)) => heartbeat.wrote(heartbeat_timer.as_mut(), at),
            Ok(None) => {}
        }
    };
    tally.add_passed(subscription.passed());
    end
}

/// What the writer reads on every wake-up to tell whether a wait it is not woken for is due
/// (the heartbeat, the route's stop, the deadline), together (`repr(C)`): a wake-up for an
/// event then reads one line of the writer's state for them, not one per wait.
#[repr(C)]
struct Waits {
    heartbeat: Heartbeat,
    /// Whether the stop signal and the deadline have been polled (and so are registered).
    polled: [bool; 2],
    /// The route's stop signal, looked at for a change.
    stop_seen: StopSignal,
}

impl Waits {
    fn new(heartbeat: Option<Duration>, stop: &StopSignal) -> Self {
        Waits {
            heartbeat: Heartbeat::new(heartbeat, Instant::now()),
            polled: [false; 2],
            stop_seen: stop.clone(),
        }
    }

    /// Each part on its own, for the waits that use them side by side.
    fn parts(&mut self) -> (&mut Heartbeat, &mut [bool; 2], &StopSignal) {
        (&mut self.heartbeat, &mut self.polled, &self.stop_seen)
    }
}

/// Resolves with the end that comes from outside the stream: the route's stop, or the
/// lifetime or credential deadline. A wait polled once stays registered and wakes the task
/// when it is due; until then a wake is for something else, and polling the two again (a
/// lock on the stop signal's waiters, a timer poll) was a tenth of a delivery's cost. So
/// each is polled first, then only when due — asked at every poll, since a `select!` is
/// polled again on each wake with the futures it was entered with.
fn ended_from_outside<'a>(
    (mut stopping, stop_seen): (Pin<&'a mut impl Future<Output = StreamEnd>>, &'a StopSignal),
    (mut deadline, expiry): (Pin<&'a mut Option<Sleep>>, StreamEnd),
    [stop_polled, deadline_polled]: &'a mut [bool; 2],
) -> impl Future<Output = StreamEnd> + 'a {
    poll_fn(move |cx| {
        let stop_due = stop_seen.has_changed().unwrap_or(true);
        if let Poll::Ready(end) = poll_when_due(stopping.as_mut(), cx, stop_polled, stop_due) {
            return Poll::Ready(end);
        }
        let Some(mut deadline) = deadline.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        let deadline_due = deadline.is_elapsed();
        poll_when_due(deadline.as_mut(), cx, deadline_polled, deadline_due).map(|()| expiry)
    })
}

/// Resolves when the route's stop signal is set (or its sender is gone).
async fn route_stopped(stop: &mut StopSignal) -> StreamEnd {
    let stop = stop.wait_for(Option::is_some).await;
    stop_reason(stop.ok().and_then(|s| *s))
}

/// Polls `wait` the first time, then only when `due`.
fn poll_when_due<F: Future>(
    wait: Pin<&mut F>,
    cx: &mut Context<'_>,
    polled: &mut bool,
    due: bool,
) -> Poll<F::Output> {
    if *polled && !due {
        return Poll::Pending;
    }
    *polled = true;
    wait.poll(cx)
}

enum Wake {
    Stop(StreamEnd),
    Events,
    Heartbeat,
}

/// Ends the stream with a final jittered `retry:` line, so that clients stopped together do
/// not come back together.
async fn farewell(
    downstream: &mut impl Downstream,
    settings: &StreamSpec,
    end: StreamEnd,
) -> StreamEnd {
    let farewell = retry_line(settings.retry, 0.5, 1.5);
    let _ = downstream.send(Bytes::from(farewell)).await;
    end
}

/// The `retry:` line (jittered per client) and what the join decided to send first.
async fn send_first(
    downstream: &mut impl Downstream,
    subscription: &mut Subscription,
    settings: &StreamSpec,
) -> Result<(), ClientGone> {
    let mut first = BytesMut::from(retry_line(settings.retry, 0.8, 1.2).as_bytes());
    first.extend_from_slice(&subscription.take_preamble());
    downstream.send(first.freeze()).await
}

/// Writes what is queued for the client (applying the slow-client policy first), and says
/// when; `Ok(None)` when there was nothing to write. `batch` is the writer's own, reused,
/// and left empty: a written event is not kept alive by this client.
async fn write_events(
    (downstream, subscription): (&mut impl Downstream, &mut Subscription),
    settings: &StreamSpec,
    metrics: &RouteMetrics,
    tally: &mut Tally,
    batch: &mut Vec<StoredEvent>,
) -> Result<Option<Instant>, StreamEnd> {
    let written = write_batch(downstream, subscription, settings, metrics, tally, batch).await;
    batch.clear();
    written
}

async fn write_batch(
    downstream: &mut impl Downstream,
    subscription: &mut Subscription,
    settings: &StreamSpec,
    metrics: &RouteMetrics,
    tally: &mut Tally,
    batch: &mut Vec<StoredEvent>,
) -> Result<Option<Instant>, StreamEnd> {
    if subscription.is_lagging(settings.max_lag) {
        match settings.slow_client {
            SlowClientPolicy::Disconnect => return Err(slow_client(metrics)),
            SlowClientPolicy::DropOldest => {
                metrics.slow_client_disconnects.inc();
                subscription.skip_oldest(settings.max_lag);
            }
        }
    }
    subscription.next_batch(BATCH_BYTES, batch);
    if batch.is_empty() && subscription.is_finished() {
        return Err(StreamEnd::UpstreamEnded);
    }
    if batch.is_empty() {
        return Ok(None);
    }
    let bytes = batch_bytes(batch);
    let size = bytes.len() as u64;
    // While the write is blocked, a private stream's feed goes on reading its upstream, so a
    // client that stopped reading lags (and is cut or skipped ahead) as on a shared stream.
    let sent = match settings.slow_client {
        SlowClientPolicy::Disconnect => tokio::select! {
            biased;
            sent = downstream.send(bytes) => sent,
            _ = subscription.lagging(settings.max_lag) => return Err(slow_client(metrics)),
        },
        SlowClientPolicy::DropOldest => tokio::select! {
            biased;
            sent = downstream.send(bytes) => sent,
            never = subscription.drive() => match never {},
        },
    };
    sent.map_err(|ClientGone| StreamEnd::ClientGone)?;
    let written_at = Instant::now();
    let now = written_at.into_std();
    metrics.events_sent.inc_by(batch.len() as u64);
    metrics.bytes_sent.inc_by(size);
    tally.events += batch.len() as u64;
    tally.bytes += size;
    // Replayed history is not latency: only events that arrived after the client joined.
    for event in batch.iter().filter(|e| subscription.is_live(e)) {
        metrics
            .event_delivery
            .observe(now.saturating_duration_since(event.received).as_secs_f64());
    }
    Ok(Some(written_at))
}

/// The bytes of a batch (not empty) in one buffer.
fn batch_bytes(batch: &mut [StoredEvent]) -> Bytes {
    match batch {
        // The batch's own reference: the bytes move to the socket (a private stream's event
        // is this client's alone, and cloning it would first make it shareable, an
        // allocation per event).
        [single] => std::mem::take(&mut single.wire),
        several => {
            let mut joined = BytesMut::with_capacity(several.iter().map(|e| e.wire.len()).sum());
            several
                .iter()
                .for_each(|e| joined.extend_from_slice(&e.wire));
            joined.freeze()
        }
    }
}

async fn send_heartbeat(
    downstream: &mut impl Downstream,
    metrics: &RouteMetrics,
) -> Result<(), StreamEnd> {
    metrics.heartbeats_sent.inc();
    let sent = downstream.send(Bytes::from_static(HEARTBEAT)).await;
    sent.map_err(|ClientGone| StreamEnd::ClientGone)
}

fn slow_client(metrics: &RouteMetrics) -> StreamEnd {
    metrics.slow_client_disconnects.inc();
    StreamEnd::SlowClient
}

/// The timer for when this client's stream must end, and why it ends then. No timer at
/// all without a deadline (the common case): a timer is looked at on every wake, and its
/// entry is one more line of memory to fetch.
fn deadline_timer(settings: &StreamSpec, expires: Option<Instant>) -> (Option<Sleep>, StreamEnd) {
    match deadline(settings, expires) {
        Some((at, expiry)) => (Some(sleep_until(at)), expiry),
        None => (None, StreamEnd::Lifetime),
    }
}

/// When this client's stream must end and why: `max_lifetime` (±10% per client) or the
/// credential's expiry, whichever comes first; `None` without either.
fn deadline(settings: &StreamSpec, expires: Option<Instant>) -> Option<(Instant, StreamEnd)> {
    let jittered = |l: Duration| l.mul_f64(0.9 + fastrand::f64() * 0.2);
    let lifetime = settings.max_lifetime.map(|l| Instant::now() + jittered(l));
    match (lifetime, expires) {
        (Some(lifetime), Some(expires)) if expires <= lifetime => {
            Some((expires, StreamEnd::TokenExpired))
        }
        (Some(lifetime), _) => Some((lifetime, StreamEnd::Lifetime)),
        (None, Some(expires)) => Some((expires, StreamEnd::TokenExpired)),
        (None, None) => None,
    }
}

/// The end a stop signal asks for; a signal whose sender is gone (the route was dropped
/// while its streams lived on) ends them as a reload would.
fn stop_reason(stop: Option<RouteStop>) -> StreamEnd {
    StreamEnd::Stopped(stop.unwrap_or(RouteStop::Reload))
}

/// A `retry:` line with the base scaled by a random factor in `low..high`.
fn retry_line(base: Duration, low: f64, high: f64) -> String {
    let factor = low + fastrand::f64() * (high - low);
    format!(
        "retry: {}\n\n",
        (base.as_millis() as f64 * factor).round() as u64
    )
}

#[cfg(test)]
mod outlet_tests;
#[cfg(test)]
mod tests;

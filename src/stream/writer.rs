//! The downstream writer: the one loop that turns a subscription into bytes on a client
//! connection, for every route kind.
//!
//! It writes the `retry:` line (jittered per client), then whole events only — so heartbeat
//! comments, sent after `heartbeat` of silence, always fall between events. It applies the
//! slow-client policy, ends the stream on lifetime expiry or shutdown with a final jittered
//! `retry:`, and stops the moment the client goes away.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{sleep_until, Instant};

use super::ends::{Ends, RouteStop, StreamEnd};
use super::ring::StoredEvent;
use super::spec::{SlowClientPolicy, StreamSpec};
use super::subscriber::Subscription;
use crate::metrics::RouteMetrics;

/// Where the writer sends bytes: the client connection. (Plain `async fn`s, not boxed ones:
/// the writer calls both once per event.)
pub trait Downstream: Send {
    /// Writes and flushes `bytes`; an error means the client is gone.
    fn send(&mut self, bytes: Bytes) -> impl Future<Output = Result<(), ClientGone>> + Send;
    /// Resolves when the client closes its side. Must be cancel-safe.
    fn closed(&mut self) -> impl Future<Output = ()> + Send;
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
    let mut first = BytesMut::from(retry_line(settings.retry, 0.8, 1.2).as_bytes());
    first.extend_from_slice(&subscription.take_preamble());
    if downstream.send(first.freeze()).await.is_err() {
        return StreamEnd::ClientGone;
    }
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
    let (deadline, expiry) = deadline(settings, ends.expires, far_future);
    let deadline = sleep_until(deadline);
    // Re-armed after every write. Moving a tokio timer later only stores its new deadline
    // (the wheel is touched when the old one comes), where a timer left alone would wake
    // this task every `heartbeat` to find it early: at 1 event/s and a 5 s heartbeat, one
    // wake-up per five deliveries.
    let heartbeat = sleep_until(heartbeat_after(settings, Instant::now(), far_future));
    // Made once, not per wake: every stream of a route waits on the same stop signal, and
    // a fresh wait per event was a lock and a waiter-list insert per delivery.
    let stopping = ends.stop.wait_for(Option::is_some);
    tokio::pin!(deadline, heartbeat, stopping);
    // Reused for every write: no allocation per batch.
    let mut batch = Vec::new();
    loop {
        let wake = tokio::select! {
            biased;
            stop = &mut stopping => Wake::Stop(stop_reason(stop.ok().and_then(|s| *s))),
            _ = &mut deadline => Wake::Stop(expiry),
            // Events before the check for a closed client: a wake with events to write then
            // polls the client's socket not at all (a write to a closed client fails anyway).
            _ = subscription.ready() => Wake::Events,
            _ = downstream.closed() => return StreamEnd::ClientGone,
            _ = &mut heartbeat => Wake::Heartbeat,
        };
        let result = match wake {
            Wake::Stop(end) => {
                let farewell = retry_line(settings.retry, 0.5, 1.5);
                let _ = downstream.send(Bytes::from(farewell)).await;
                return end;
            }
            Wake::Heartbeat => send_heartbeat(downstream, metrics).await.map(|()| true),
            Wake::Events => {
                let written = write_events(
                    downstream,
                    subscription,
                    settings,
                    metrics,
                    tally,
                    &mut batch,
                )
                .await;
                // Emptied at once: a written event is not kept alive by this client.
                batch.clear();
                written
            }
        };
        match result {
            Err(end) => return end,
            Ok(true) => {
                let next = heartbeat_after(settings, Instant::now(), far_future);
                heartbeat.as_mut().reset(next);
            }
            Ok(false) => {}
        }
    }
}

enum Wake {
    Stop(StreamEnd),
    Events,
    Heartbeat,
}

/// Writes what is queued for the client (applying the slow-client policy first); `Ok(false)`
/// when there was nothing to write.
async fn write_events(
    downstream: &mut impl Downstream,
    subscription: &mut Subscription,
    settings: &StreamSpec,
    metrics: &RouteMetrics,
    tally: &mut Tally,
    batch: &mut Vec<Arc<StoredEvent>>,
) -> Result<bool, StreamEnd> {
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
    let bytes = match &batch[..] {
        [] if subscription.is_finished() => return Err(StreamEnd::UpstreamEnded),
        [] => return Ok(false),
        [single] => single.wire.clone(),
        several => {
            let mut joined = BytesMut::with_capacity(several.iter().map(|e| e.wire.len()).sum());
            several
                .iter()
                .for_each(|e| joined.extend_from_slice(&e.wire));
            joined.freeze()
        }
    };
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
    let now = std::time::Instant::now();
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
    Ok(true)
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

/// When this client's stream must end and why: `max_lifetime` (±10% per client) or the
/// credential's expiry, whichever comes first; `never` without either.
fn deadline(
    settings: &StreamSpec,
    expires: Option<Instant>,
    never: Instant,
) -> (Instant, StreamEnd) {
    let jittered = |l: Duration| l.mul_f64(0.9 + fastrand::f64() * 0.2);
    let lifetime = settings.max_lifetime.map(|l| Instant::now() + jittered(l));
    match (lifetime, expires) {
        (Some(lifetime), Some(expires)) if expires <= lifetime => {
            (expires, StreamEnd::TokenExpired)
        }
        (Some(lifetime), _) => (lifetime, StreamEnd::Lifetime),
        (None, Some(expires)) => (expires, StreamEnd::TokenExpired),
        (None, None) => (never, StreamEnd::Lifetime),
    }
}

/// The end a stop signal asks for; a signal whose sender is gone (the route was dropped
/// while its streams lived on) ends them as a reload would.
fn stop_reason(stop: Option<RouteStop>) -> StreamEnd {
    StreamEnd::Stopped(stop.unwrap_or(RouteStop::Reload))
}

/// When a heartbeat is due after a write at `last`; `never` when heartbeats are off.
fn heartbeat_after(settings: &StreamSpec, last: Instant, never: Instant) -> Instant {
    settings.heartbeat.map_or(never, |every| last + every)
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
mod tests {
    use tokio::sync::watch;

    use super::super::testing::{HandFed, Recorder};
    use super::*;
    use crate::sse::Event;

    fn event(i: u32) -> Event {
        Event {
            id: Some(i.to_string()),
            ..Event::message(format!("n={i}"))
        }
    }

    /// Runs the writer on its own task; the handle yields how the stream ended.
    fn spawn(
        spec: StreamSpec,
        mut client: Recorder,
        mut subscription: Subscription,
        mut ends: Ends,
        metrics: RouteMetrics,
    ) -> tokio::task::JoinHandle<StreamEnd> {
        tokio::spawn(async move {
            let mut tally = Tally::default();
            run(
                &mut client,
                &mut subscription,
                &spec,
                &mut ends,
                &metrics,
                &mut tally,
            )
            .await
        })
    }

    /// A route's stop signal, and the ends of one client of it (expiring at `expires`).
    fn ends(expires: Option<Instant>) -> (watch::Sender<Option<RouteStop>>, Ends) {
        let (stop, signal) = watch::channel(None);
        let ends = Ends {
            stop: signal,
            expires,
        };
        (stop, ends)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_first_then_whole_events_with_heartbeats_only_between_them() {
        let spec = StreamSpec {
            heartbeat: Some(Duration::from_secs(5)),
            retry: Duration::from_secs(10),
            ..StreamSpec::for_tests()
        };
        let (fed, subscription) = HandFed::new(spec.clone(), None);
        let (client, _close) = Recorder::new();
        let written = client.written.clone();
        let (_stop, ends) = ends(None);
        let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
        settle().await;
        fed.out.publish(event(1));
        settle().await;
        tokio::time::advance(Duration::from_secs(6)).await;
        settle().await;
        fed.out.publish(event(2));
        settle().await;
        let text = Recorder::text(&written);
        let (retry, rest) = text.split_once("\n\n").expect("retry frame");
        let retry: u64 = retry
            .strip_prefix("retry: ")
            .and_then(|r| r.parse().ok())
            .expect("retry value");
        assert!((8000..=12000).contains(&retry), "10s ±20%: {retry}");
        assert_eq!(rest, "id: 1\ndata: n=1\n\n: hb\n\nid: 2\ndata: n=2\n\n");
        assert_eq!(fed.metrics.heartbeats_sent.get(), 1);
        assert_eq!(fed.metrics.events_sent.get(), 2);
        writer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_lifetime_and_expiry_end_with_a_final_retry() {
        let hour = Duration::from_secs(3600);
        let cases = [
            (
                None,
                None,
                Some(RouteStop::Shutdown),
                StreamEnd::Stopped(RouteStop::Shutdown),
            ),
            (
                None,
                None,
                Some(RouteStop::Reload),
                StreamEnd::Stopped(RouteStop::Reload),
            ),
            (Some(60), None, None, StreamEnd::Lifetime),
            (Some(60), Some(30), None, StreamEnd::TokenExpired),
            (None, Some(30), None, StreamEnd::TokenExpired),
        ];
        for (lifetime, expires_in, stop_with, expected) in cases {
            let spec = StreamSpec {
                max_lifetime: lifetime.map(Duration::from_secs),
                ..StreamSpec::for_tests()
            };
            let (fed, subscription) = HandFed::new(spec.clone(), None);
            let (client, _close) = Recorder::new();
            let written = client.written.clone();
            let expires = expires_in.map(|s| Instant::now() + Duration::from_secs(s));
            let (stop, ends) = ends(expires);
            let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
            settle().await;
            match stop_with {
                Some(reason) => drop(stop.send_replace(Some(reason))),
                None => tokio::time::advance(hour).await,
            }
            let end = writer.await.expect("writer");
            assert_eq!(end, expected);
            let text = Recorder::text(&written);
            assert_eq!(text.matches("retry: ").count(), 2, "{expected:?}: {text}");
        }
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_ends_its_stream() {
        let spec = StreamSpec::for_tests();
        let (fed, subscription) = HandFed::new(spec.clone(), None);
        let (client, close) = Recorder::new();
        let (_stop, ends) = ends(None);
        let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
        settle().await;
        close.send_replace(true);
        let end = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert_eq!(end.expect("ended").expect("writer"), StreamEnd::ClientGone);
    }

    #[tokio::test]
    async fn a_stalled_client_past_max_lag_is_disconnected() {
        let spec = StreamSpec {
            max_lag: 64,
            ..StreamSpec::for_tests()
        };
        let (fed, subscription) = HandFed::new(spec.clone(), None);
        let (mut client, _close) = Recorder::new();
        client.stall_after = Some(1);
        let (_stop, ends) = ends(None);
        let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
        settle().await;
        for i in 0..10 {
            fed.out.publish(event(i));
        }
        let end = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert_eq!(end.expect("ended").expect("writer"), StreamEnd::SlowClient);
        assert_eq!(fed.metrics.slow_client_disconnects.get(), 1);
    }

    #[tokio::test]
    async fn a_private_feed_goes_on_while_its_stalled_client_blocks_a_write() {
        let spec = StreamSpec {
            max_lag: 64,
            ..StreamSpec::for_tests()
        };
        let metrics = crate::metrics::Metrics::register()
            .expect("metrics")
            .route("/t");
        let subscription = super::super::Hub::new().join(
            super::super::StreamKey::Private,
            &Arc::new(spec.clone()),
            &metrics,
            None,
            |out, _| {
                Box::pin(async move {
                    for i in 0..10 {
                        out.publish(event(i));
                        tokio::task::yield_now().await;
                    }
                    std::future::pending::<()>().await;
                })
            },
        );
        let (mut client, _close) = Recorder::new();
        client.stall_after = Some(2);
        let (_stop, ends) = ends(None);
        let writer = spawn(spec, client, subscription, ends, metrics.clone());
        let end = tokio::time::timeout(Duration::from_secs(5), writer).await;
        assert_eq!(end.expect("ended").expect("writer"), StreamEnd::SlowClient);
        assert_eq!(metrics.slow_client_disconnects.get(), 1);
    }
}

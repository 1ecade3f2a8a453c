//! The downstream writer: the one loop that turns a subscription into bytes on a client
//! connection, for every route kind.
//!
//! It writes the `retry:` line (jittered per client), then whole events only — so heartbeat
//! comments, sent after `heartbeat` of silence, always fall between events. It applies the
//! slow-client policy, ends the stream on lifetime expiry or shutdown with a final jittered
//! `retry:`, and stops the moment the client goes away.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::subscriber::Subscription;
use crate::config::SlowClientPolicy;
use crate::metrics::RouteMetrics;

/// Where the writer sends bytes: the client connection.
#[async_trait]
pub trait Downstream: Send {
    /// Writes and flushes `bytes`; an error means the client is gone.
    async fn send(&mut self, bytes: Bytes) -> Result<(), ()>;
    /// Resolves when the client closes its side. Must be cancel-safe.
    async fn closed(&mut self);
}

/// Per-client writer settings.
#[derive(Debug, Clone)]
pub struct WriterSettings {
    /// Silence before a heartbeat; `None` disables heartbeats.
    pub heartbeat: Option<Duration>,
    /// Base `retry:`; each client gets it with ±20% jitter.
    pub retry: Duration,
    /// Bytes queued before the slow-client policy applies.
    pub max_lag: u64,
    /// The slow-client policy.
    pub policy: SlowClientPolicy,
    /// Close the stream after this long (already jittered by the caller), if set.
    pub lifetime: Option<Duration>,
}

/// Why a client stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The client closed the connection or a write failed.
    ClientGone,
    /// The client fell past `max_lag` under the `disconnect` policy.
    SlowClient,
    /// `max_lifetime` passed.
    Lifetime,
    /// The proxy is shutting down.
    Shutdown,
}

/// Largest number of bytes coalesced into one write.
const BATCH_BYTES: usize = 64 * 1024;
const HEARTBEAT: &[u8] = b": hb\n\n";

/// Streams `subscription` to `downstream` until the client leaves, lags, or the proxy stops.
pub async fn run(
    downstream: &mut impl Downstream,
    subscription: &mut Subscription,
    settings: &WriterSettings,
    shutdown: &mut watch::Receiver<bool>,
    metrics: &RouteMetrics,
) -> StreamEnd {
    let mut first = BytesMut::from(retry_line(settings.retry, 0.8, 1.2).as_bytes());
    first.extend_from_slice(&subscription.take_preamble());
    if downstream.send(first.freeze()).await.is_err() {
        return StreamEnd::ClientGone;
    }
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
    let lifetime = sleep_until(settings.lifetime.map_or(far_future, |l| Instant::now() + l));
    // The heartbeat timer is not re-armed per event (that was a timer registration per event
    // per subscriber): writes only record their time, and a timer that fires early is moved
    // to `last_write + heartbeat`.
    let heartbeat = sleep_until(heartbeat_after(settings, Instant::now(), far_future));
    // Made once, not per wake: every stream waits on the same shutdown flag, and a fresh
    // wait per event was a lock and a waiter-list insert per delivery.
    let stopping = shutdown.wait_for(|stopping| *stopping);
    tokio::pin!(lifetime, heartbeat, stopping);
    let mut last_write = Instant::now();
    loop {
        let wake = tokio::select! {
            biased;
            _ = &mut stopping => Wake::Stop(StreamEnd::Shutdown),
            _ = &mut lifetime => Wake::Stop(StreamEnd::Lifetime),
            _ = downstream.closed() => return StreamEnd::ClientGone,
            _ = subscription.ready() => Wake::Events,
            _ = &mut heartbeat => Wake::Heartbeat,
        };
        let result = match wake {
            Wake::Stop(end) => {
                let farewell = retry_line(settings.retry, 0.5, 1.5);
                let _ = downstream.send(Bytes::from(farewell)).await;
                return end;
            }
            Wake::Heartbeat => {
                let due = heartbeat_after(settings, last_write, far_future);
                if due > Instant::now() {
                    heartbeat.as_mut().reset(due);
                    continue;
                }
                metrics.heartbeats_sent.inc();
                let sent = downstream.send(Bytes::from_static(HEARTBEAT)).await;
                heartbeat
                    .as_mut()
                    .reset(heartbeat_after(settings, Instant::now(), far_future));
                sent.map_err(|()| StreamEnd::ClientGone)
            }
            Wake::Events => write_events(downstream, subscription, settings, metrics).await,
        };
        if let Err(end) = result {
            return end;
        }
        last_write = Instant::now();
    }
}

enum Wake {
    Stop(StreamEnd),
    Events,
    Heartbeat,
}

async fn write_events(
    downstream: &mut impl Downstream,
    subscription: &mut Subscription,
    settings: &WriterSettings,
    metrics: &RouteMetrics,
) -> Result<(), StreamEnd> {
    if subscription.is_lagging(settings.max_lag) {
        match settings.policy {
            SlowClientPolicy::Disconnect => return Err(slow_client(metrics)),
            SlowClientPolicy::DropOldest => {
                metrics.slow_client_disconnects.inc();
                subscription.skip_oldest(settings.max_lag);
            }
        }
    }
    let batch = subscription.next_batch(BATCH_BYTES);
    let bytes = match &batch[..] {
        [] => return Ok(()),
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
    let sent = match settings.policy {
        SlowClientPolicy::Disconnect => tokio::select! {
            sent = downstream.send(bytes) => sent,
            _ = subscription.lagging(settings.max_lag) => return Err(slow_client(metrics)),
        },
        SlowClientPolicy::DropOldest => downstream.send(bytes).await,
    };
    sent.map_err(|()| StreamEnd::ClientGone)?;
    let now = std::time::Instant::now();
    metrics.events_sent.inc_by(batch.len() as u64);
    metrics.bytes_sent.inc_by(size);
    for event in &batch {
        metrics
            .event_delivery
            .observe(now.saturating_duration_since(event.received).as_secs_f64());
    }
    Ok(())
}

fn slow_client(metrics: &RouteMetrics) -> StreamEnd {
    metrics.slow_client_disconnects.inc();
    StreamEnd::SlowClient
}

/// When a heartbeat is due after a write at `last`; `never` when heartbeats are off.
fn heartbeat_after(settings: &WriterSettings, last: Instant, never: Instant) -> Instant {
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

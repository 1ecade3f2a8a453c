//! The one reconnect loop every source runs: pick a backend of the route's pool, attempt,
//! report a failure by reason, back off with capped exponential delays and jitter, attempt
//! again — on the next usable backend when the last one failed — until the hub drops the
//! feed. The stream, and so every client, stays while the loop looks for an upstream.

use std::time::Duration;

use async_trait::async_trait;

use super::failover::{Failover, Target};
use super::SourceError;
use crate::stream::Publisher;

/// One source kind's attempt at its upstream: a connection that streams until it ends
/// (sse, websocket), or one poll.
#[async_trait]
pub trait Attempt: Send + 'static {
    /// Connects to (or polls) `target` and publishes into `out`; once the backend has
    /// answered, calls [`recovered`]. `Err`: the attempt failed, and the loop backs off.
    async fn attempt(&mut self, target: &Target, out: &Publisher) -> Result<Next, Failure>;
}

/// What follows a successful attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Attempt again after this long (a poll that succeeded).
    After(Duration),
    /// The upstream ended the stream for good (an SSE upstream's `204 No Content`).
    Finished,
}

/// A failed attempt.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: SourceError,
    /// Whether the attempt delivered events before failing: the next delay starts over.
    pub delivered: bool,
}

impl Failure {
    /// `error`, after an attempt that had (or had not) `delivered` events.
    pub fn after(error: SourceError, delivered: bool) -> Self {
        Failure { error, delivered }
    }
}

impl From<SourceError> for Failure {
    fn from(error: SourceError) -> Self {
        Failure {
            error,
            delivered: false,
        }
    }
}

/// Runs `source` on the backends of `failover` until the upstream ends the stream for good
/// (or the hub drops the feed): every failure is counted against its backend, reported to
/// the stream, logged at `warn` for the first of an outage, and waited out with `backoff`.
pub async fn run(
    mut source: impl Attempt,
    out: Publisher,
    mut backoff: Backoff,
    mut failover: Failover,
) {
    loop {
        let target = match failover.next() {
            Ok(target) => target,
            Err(preferred) => {
                out.attach(preferred.backend());
                failed(&out, &preferred, &SourceError::NoBackend);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        out.attach(target.backend());
        let delay = match source.attempt(&target, &out).await {
            Ok(Next::After(delay)) => {
                backoff.reset();
                delay
            }
            Ok(Next::Finished) => {
                let (route, upstream) = (out.metrics().route(), loggable(target.url()));
                tracing::info!(route, upstream, "the upstream ended the stream for good");
                out.finish();
                return;
            }
            Err(Failure { error, delivered }) => {
                if delivered {
                    backoff.reset();
                }
                failed(&out, &target, &error);
                failover.failed(&target, &error);
                backoff.next_delay()
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Reports a failure: counted every time, logged at `warn` once per outage.
fn failed(out: &Publisher, target: &Target, error: &SourceError) {
    let route = out.metrics().route();
    let (upstream, backend) = (loggable(target.url()), &**target.backend());
    let reason = error.reason();
    if out.upstream_failed(reason) {
        tracing::warn!(route, upstream, backend, reason, %error, "upstream failing; retrying with backoff");
    } else {
        tracing::debug!(route, upstream, backend, reason, %error, "upstream attempt failed");
    }
}

/// Marks the upstream healthy after a connect or a successful poll, for the stream and for
/// its backend in the pool; the end of an outage is logged at `info`, once.
pub fn recovered(out: &Publisher, target: &Target) {
    target.answered();
    if out.upstream_recovered() {
        let (route, upstream) = (out.metrics().route(), loggable(target.url()));
        let backend = &**target.backend();
        tracing::info!(route, upstream, backend, "upstream recovered");
    }
}

/// An upstream URL fit for a log line: without its query, which may carry credentials.
fn loggable(url: &str) -> &str {
    url.split_once('?').map_or(url, |(url, _)| url)
}

/// Capped exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at about `base`, doubling per failure up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The backoff of the streaming sources: from 100 ms up to 30 s.
    pub fn reconnect() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// The delay before the next attempt: the capped exponential step times a random factor
    /// in 0.5..1.0, so many streams failing together do not retry together.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.cap);
        self.attempt += 1;
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Back to the first step after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let later: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(later
            .last()
            .is_some_and(|d| *d >= Duration::from_millis(500)));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}

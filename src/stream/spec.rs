//! What a route's streams are made with: the settings the shared stream and the writer
//! read, in the core's own terms (the file's spelling stays in `config`).

use std::time::Duration;

/// The settings of every stream of one route, built once when the route table is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Events kept for resume.
    pub replay: usize,
    /// Events with more data than this are refused and counted as `oversize_event`.
    pub max_event_bytes: usize,
    /// How long the stream outlives its last subscriber.
    pub linger: Duration,
    /// Whether to publish `event: upstream-error` when the upstream starts failing.
    pub upstream_error_event: bool,
    /// Whether a brand-new stream hands the first client's Last-Event-ID to its upstream
    /// (SSE upstreams resume themselves), instead of answering with a gap marker.
    pub resumes_upstream: bool,
    /// Silence before a heartbeat comment; `None` disables heartbeats.
    pub heartbeat: Option<Duration>,
    /// Base `retry:`; each client gets it with ±20% jitter.
    pub retry: Duration,
    /// Bytes queued for one client before the slow-client policy applies.
    pub max_lag: u64,
    /// What happens to a client past `max_lag`.
    pub slow_client: SlowClientPolicy,
    /// Close each client's stream after about this long (±10% per client), if set.
    pub max_lifetime: Option<Duration>,
}

/// What the writer does with a client whose queue passed `max_lag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowClientPolicy {
    /// End the stream; the client reconnects and resumes from its Last-Event-ID.
    Disconnect,
    /// Skip the client's oldest queued events until it is back under the limit.
    DropOldest,
}

#[cfg(test)]
impl StreamSpec {
    /// Settings for core unit tests: no heartbeat, no linger, a small ring.
    pub(crate) fn for_tests() -> StreamSpec {
        StreamSpec {
            replay: 16,
            max_event_bytes: 1 << 20,
            linger: Duration::ZERO,
            upstream_error_event: false,
            resumes_upstream: false,
            heartbeat: None,
            retry: Duration::from_secs(1),
            max_lag: 1 << 20,
            slow_client: SlowClientPolicy::Disconnect,
            max_lifetime: None,
        }
    }
}

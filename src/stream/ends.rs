//! Why a client's stream ends, and what can end it from outside: the route's stop signal
//! (shutdown, or a reload that retires the route) and the client's credential expiry.

use tokio::sync::watch;
use tokio::time::Instant;

/// Why a client stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The client closed the connection or a write failed.
    ClientGone,
    /// The client fell past `max_lag` under the `disconnect` policy.
    SlowClient,
    /// `max_lifetime` passed.
    Lifetime,
    /// The client's credential expired.
    TokenExpired,
    /// The upstream ended the stream for good (an SSE upstream's `204 No Content`).
    UpstreamEnded,
    /// The proxy ended every stream of the route (shutdown, or a reload that changed it).
    Stopped(RouteStop),
}

impl StreamEnd {
    /// Every end, for metrics that export each reason from the start.
    pub const ALL: [StreamEnd; 7] = [
        StreamEnd::ClientGone,
        StreamEnd::UpstreamEnded,
        StreamEnd::SlowClient,
        StreamEnd::Lifetime,
        StreamEnd::TokenExpired,
        StreamEnd::Stopped(RouteStop::Shutdown),
        StreamEnd::Stopped(RouteStop::Reload),
    ];

    /// The `reason` label of `stream_ends_total`.
    pub fn reason(self) -> &'static str {
        match self {
            StreamEnd::ClientGone => "client_closed",
            StreamEnd::SlowClient => "slow_client",
            StreamEnd::Lifetime => "lifetime",
            StreamEnd::TokenExpired => "token_expired",
            StreamEnd::UpstreamEnded => "upstream_ended",
            StreamEnd::Stopped(RouteStop::Shutdown) => "shutdown",
            StreamEnd::Stopped(RouteStop::Reload) => "reload",
        }
    }
}

/// Why the proxy ends every stream of a route, each on an event boundary with a final
/// jittered `retry:`. Set once on the route's stop signal; every writer of it reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteStop {
    /// The proxy is draining.
    Shutdown,
    /// A reload changed or removed the route: clients reconnect to the new one.
    Reload,
}

/// A route's stop signal as each of its streams receives it (`None` while the route serves).
pub type StopSignal = watch::Receiver<Option<RouteStop>>;

/// What ends one client's stream from outside it.
pub struct Ends {
    /// The route's stop signal.
    pub stop: StopSignal,
    /// When the client's credential expires, if it does.
    pub expires: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_a_known_metric_reason() {
        for end in StreamEnd::ALL {
            assert!(crate::metrics::STREAM_END_REASONS.contains(&end.reason()));
        }
    }
}

//! Every Prometheus metric, registered once and shared as `Arc<Metrics>`.
//!
//! Hot paths never look labels up: each route resolves its labelled handles once into a
//! [`RouteMetrics`] when the route table is built. Label values are bounded: `route` is the
//! configured path, `reason` and `result` come from fixed sets in the code.

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The registry and all metric families.
pub struct Metrics {
    registry: Registry,
    connections_active: IntGaugeVec,
    connections_total: IntCounterVec,
    connections_rejected: IntCounterVec,
    events_sent: IntCounterVec,
    bytes_sent: IntCounterVec,
    heartbeats_sent: IntCounterVec,
    replay_hits: IntCounterVec,
    replay_misses: IntCounterVec,
    slow_client_disconnects: IntCounterVec,
    upstream_connects: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_streams_active: IntGaugeVec,
    polls: IntCounterVec,
    poll_duration: HistogramVec,
    patch_bytes_saved: IntCounterVec,
    event_delivery: HistogramVec,
    requests_refused: IntCounterVec,
}

/// Why a request is refused before routing: the `reason` values of
/// `sse_edge_requests_refused_total`.
pub const REFUSAL_REASONS: [&str; 4] = [
    "bad_request_line",
    "missing_host",
    "headers_too_large",
    "header_timeout",
];

/// The handles of one route, resolved once.
#[derive(Clone)]
pub struct RouteMetrics {
    route: String,
    /// `sse_edge_connections_active{route}`
    pub connections_active: IntGauge,
    /// `sse_edge_connections_total{route}`
    pub connections_total: IntCounter,
    /// `sse_edge_events_sent_total{route}`
    pub events_sent: IntCounter,
    /// `sse_edge_bytes_sent_total{route}`
    pub bytes_sent: IntCounter,
    /// `sse_edge_heartbeats_sent_total{route}`
    pub heartbeats_sent: IntCounter,
    /// `sse_edge_replay_hits_total{route}`
    pub replay_hits: IntCounter,
    /// `sse_edge_replay_misses_total{route}`
    pub replay_misses: IntCounter,
    /// `sse_edge_slow_client_disconnects_total{route}`
    pub slow_client_disconnects: IntCounter,
    /// `sse_edge_upstream_connects_total{route}`
    pub upstream_connects: IntCounter,
    /// `sse_edge_upstream_streams_active{route}`
    pub upstream_streams_active: IntGauge,
    /// `sse_edge_poll_duration_seconds{route}`
    pub poll_duration: Histogram,
    /// `sse_edge_patch_bytes_saved_total{route}`
    pub patch_bytes_saved: IntCounter,
    /// `sse_edge_event_delivery_seconds{route}`
    pub event_delivery: Histogram,
    families: std::sync::Arc<Families>,
}

/// Families whose second label is chosen at the call site.
struct Families {
    connections_rejected: IntCounterVec,
    upstream_errors: IntCounterVec,
    polls: IntCounterVec,
}

impl RouteMetrics {
    /// Counts a refused connection: `per_client`, `max_connections`, `shutting_down`.
    pub fn rejected(&self, reason: &'static str) {
        self.families
            .connections_rejected
            .with_label_values(&[&self.route, reason])
            .inc();
    }

    /// Counts an upstream failure by reason.
    pub fn upstream_error(&self, reason: &'static str) {
        self.families
            .upstream_errors
            .with_label_values(&[&self.route, reason])
            .inc();
    }

    /// Counts a poll by result: `changed`, `unchanged`, `not_modified`, `error`.
    pub fn poll(&self, result: &'static str) {
        self.families
            .polls
            .with_label_values(&[&self.route, result])
            .inc();
    }
}

/// Creates families with the `sse_edge_` prefix and registers them in one registry.
struct Registrar {
    registry: Registry,
}

impl Registrar {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let family = IntCounterVec::new(Opts::new(format!("sse_edge_{name}"), help), labels)?;
        self.registry.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// A counter labelled by `route` only.
    fn route_counter(&self, name: &str, help: &str) -> prometheus::Result<IntCounterVec> {
        self.counter(name, help, &["route"])
    }

    fn gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
        let family = IntGaugeVec::new(Opts::new(format!("sse_edge_{name}"), help), &["route"])?;
        self.registry.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// `requests_refused_total{reason}`, with every reason exported at 0 from the start.
    fn refusals(&self) -> prometheus::Result<IntCounterVec> {
        let help = "Requests refused before routing, by reason";
        let family = self.counter("requests_refused_total", help, &["reason"])?;
        for reason in REFUSAL_REASONS {
            family.with_label_values(&[reason]);
        }
        Ok(family)
    }

    /// A histogram of 18 exponential buckets from `start` seconds.
    fn histogram(&self, name: &str, help: &str, start: f64) -> prometheus::Result<HistogramVec> {
        let opts = HistogramOpts::new(format!("sse_edge_{name}"), help)
            .buckets(exponential_buckets(start, 2.0, 18)?);
        let family = HistogramVec::new(opts, &["route"])?;
        self.registry.register(Box::new(family.clone()))?;
        Ok(family)
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn register() -> Result<Metrics, prometheus::Error> {
        let r = Registrar {
            registry: Registry::new(),
        };
        let reason = &["route", "reason"];
        Ok(Metrics {
            connections_active: r.gauge("connections_active", "Open client streams")?,
            connections_total: r.route_counter("connections_total", "Client streams accepted")?,
            connections_rejected: r.counter(
                "connections_rejected_total",
                "Client streams refused, by reason",
                reason,
            )?,
            events_sent: r.route_counter("events_sent_total", "Events written to clients")?,
            bytes_sent: r.route_counter("bytes_sent_total", "Bytes written to clients")?,
            heartbeats_sent: r.route_counter("heartbeats_sent_total", "Heartbeat comments sent")?,
            replay_hits: r.route_counter("replay_hits_total", "Resumes served from the ring")?,
            replay_misses: r.route_counter("replay_misses_total", "Resumes whose id was gone")?,
            slow_client_disconnects: r.route_counter(
                "slow_client_disconnects_total",
                "Clients over max_lag that the policy acted on",
            )?,
            upstream_connects: r
                .route_counter("upstream_connects_total", "Upstream connections")?,
            upstream_errors: r.counter(
                "upstream_errors_total",
                "Upstream failures, by reason",
                reason,
            )?,
            upstream_streams_active: r.gauge(
                "upstream_streams_active",
                "Running upstream sources (streams, sockets, pollers)",
            )?,
            polls: r.counter("polls_total", "Polls, by result", &["route", "result"])?,
            poll_duration: r.histogram("poll_duration_seconds", "Poll request time", 0.001)?,
            patch_bytes_saved: r.route_counter(
                "patch_bytes_saved_total",
                "Bytes patches saved compared with full snapshots",
            )?,
            event_delivery: r.histogram(
                "event_delivery_seconds",
                "Upstream receipt to client write",
                0.000_05,
            )?,
            requests_refused: r.refusals()?,
            registry: r.registry,
        })
    }

    /// Resolves the handles of one route.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let labels = &[route];
        RouteMetrics {
            route: route.to_string(),
            connections_active: self.connections_active.with_label_values(labels),
            connections_total: self.connections_total.with_label_values(labels),
            events_sent: self.events_sent.with_label_values(labels),
            bytes_sent: self.bytes_sent.with_label_values(labels),
            heartbeats_sent: self.heartbeats_sent.with_label_values(labels),
            replay_hits: self.replay_hits.with_label_values(labels),
            replay_misses: self.replay_misses.with_label_values(labels),
            slow_client_disconnects: self.slow_client_disconnects.with_label_values(labels),
            upstream_connects: self.upstream_connects.with_label_values(labels),
            upstream_streams_active: self.upstream_streams_active.with_label_values(labels),
            poll_duration: self.poll_duration.with_label_values(labels),
            patch_bytes_saved: self.patch_bytes_saved.with_label_values(labels),
            event_delivery: self.event_delivery.with_label_values(labels),
            families: std::sync::Arc::new(Families {
                connections_rejected: self.connections_rejected.clone(),
                upstream_errors: self.upstream_errors.clone(),
                polls: self.polls.clone(),
            }),
        }
    }

    /// Counts a request refused before routing; `reason` is one of [`REFUSAL_REASONS`].
    pub fn request_refused(&self, reason: &'static str) {
        self.requests_refused.with_label_values(&[reason]).inc();
    }

    /// The handle of one refusal reason, for code that counts without the registry.
    pub fn refusals(&self, reason: &'static str) -> IntCounter {
        self.requests_refused.with_label_values(&[reason])
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(err) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(%err, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

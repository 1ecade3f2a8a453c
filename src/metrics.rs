//! Every Prometheus metric, registered once and shared as `Arc<Metrics>`.
//!
//! Hot paths never look labels up: each route resolves its labelled handles once into a
//! [`RouteMetrics`] when the route table is built. Label values are bounded: `route` is the
//! configured path, `reason` and `result` come from fixed sets in the code.

use prometheus::{
    exponential_buckets, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every `reason` of `stream_ends_total` (SPEC §5).
pub const STREAM_END_REASONS: [&str; 7] = [
    "client_closed",
    "upstream_ended",
    "slow_client",
    "lifetime",
    "shutdown",
    "reload",
    "token_expired",
];

/// Every `reason` of `connections_rejected_total`.
pub const REJECTION_REASONS: [&str; 6] = [
    "per_client",
    "max_connections",
    "shutting_down",
    "unauthenticated",
    "forbidden",
    "auth_unavailable",
];

/// Every `reason` of `upstream_errors_total`: the sources' errors (`SourceError::reason`)
/// and what the stream itself refuses.
pub const UPSTREAM_ERROR_REASONS: [&str; 27] = [
    "resolve",
    "connect",
    "read",
    "timeout",
    "status",
    "content_type",
    "eof",
    "too_large",
    "too_deep",
    "invalid_json",
    "invalid_utf8",
    "url",
    "tls",
    "handshake",
    "connect_timeout",
    "subscribe_timeout",
    "ping_timeout",
    "closed",
    "message_too_large",
    "protocol",
    "io",
    "other",
    "ca_file",
    "idle_timeout",
    "oversize_event",
    "unsafe_field",
    "binary_dropped",
];

/// Every `result` of `polls_total`.
pub const POLL_RESULTS: [&str; 4] = ["changed", "unchanged", "not_modified", "error"];

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
    stream_ends: IntCounterVec,
    http_requests: IntCounterVec,
    http_request_duration: HistogramVec,
    poll_duration: HistogramVec,
    patch_bytes_saved: IntCounterVec,
    event_delivery: HistogramVec,
    reloads: ReloadMetrics,
}

/// The configuration reload families (the names Prometheus uses for its own reloads).
struct ReloadMetrics {
    total: IntCounterVec,
    last_successful: IntGauge,
    last_success_timestamp: Gauge,
}

impl ReloadMetrics {
    /// Registers them in the state at start: the configuration just loaded counts as a
    /// successful load, and both results are exported at 0.
    fn register(r: &Registrar) -> prometheus::Result<ReloadMetrics> {
        let metrics = ReloadMetrics {
            total: r.counter(
                "config_reloads_total",
                "Configuration reloads (SIGHUP), by result",
                &["result"],
            )?,
            last_successful: r.plain_gauge(
                "config_last_reload_successful",
                "Whether the last reload applied (1) or was refused (0)",
            )?,
            last_success_timestamp: r.timestamp(
                "config_last_reload_success_timestamp_seconds",
                "When the configuration serving now was loaded (Unix time)",
            )?,
        };
        for result in ["ok", "error"] {
            metrics.total.with_label_values(&[result]);
        }
        metrics.last_successful.set(1);
        metrics.last_success_timestamp.set(unix_now());
        Ok(metrics)
    }
}

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
    /// `sse_edge_http_request_duration_seconds{route}`
    pub http_request_duration: Histogram,
    families: std::sync::Arc<Families>,
}

/// Families whose second label is chosen at the call site.
struct Families {
    connections_rejected: IntCounterVec,
    stream_ends: IntCounterVec,
    http_requests: IntCounterVec,
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

    /// Counts a client stream's end by reason (one of [`STREAM_END_REASONS`]).
    pub fn stream_ended(&self, reason: &'static str) {
        self.families
            .stream_ends
            .with_label_values(&[&self.route, reason])
            .inc();
    }

    /// Counts an `http` route request by the status sent (0 when none could be).
    pub fn http_request(&self, status: u16, duration: std::time::Duration) {
        self.families
            .http_requests
            .with_label_values(&[&self.route, &status.to_string()])
            .inc();
        self.http_request_duration.observe(duration.as_secs_f64());
    }

    /// The route label: the configured path.
    pub fn route(&self) -> &str {
        &self.route
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

    /// A gauge without labels.
    fn plain_gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        let gauge = IntGauge::new(format!("sse_edge_{name}"), help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    /// A gauge of seconds since the Unix epoch.
    fn timestamp(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        let gauge = Gauge::new(format!("sse_edge_{name}"), help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
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
            stream_ends: r.counter(
                "stream_ends_total",
                "Client streams ended, by reason",
                reason,
            )?,
            http_requests: r.counter(
                "http_requests_total",
                "Requests on http routes, by status sent",
                &["route", "status"],
            )?,
            http_request_duration: r.histogram(
                "http_request_duration_seconds",
                "Requests on http routes, from request to the end of the response",
                0.000_1,
            )?,
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
            reloads: ReloadMetrics::register(&r)?,
            registry: r.registry,
        })
    }

    /// Records a reload: applied (`ok`) or refused (`error`).
    pub fn config_reloaded(&self, applied: bool) {
        let result = if applied { "ok" } else { "error" };
        self.reloads.total.with_label_values(&[result]).inc();
        self.reloads.last_successful.set(i64::from(applied));
        if applied {
            self.reloads.last_success_timestamp.set(unix_now());
        }
    }

    /// Resolves the handles of one route, and exports its labelled counters at 0 for every
    /// known label value, so dashboards and alerts see each series before its first incident.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let families = [
            (&self.stream_ends, &STREAM_END_REASONS[..]),
            (&self.connections_rejected, &REJECTION_REASONS[..]),
            (&self.upstream_errors, &UPSTREAM_ERROR_REASONS[..]),
            (&self.polls, &POLL_RESULTS[..]),
        ];
        for (family, values) in families {
            for value in values {
                family.with_label_values(&[route, value]);
            }
        }
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
            http_request_duration: self.http_request_duration.with_label_values(labels),
            families: std::sync::Arc::new(Families {
                connections_rejected: self.connections_rejected.clone(),
                stream_ends: self.stream_ends.clone(),
                http_requests: self.http_requests.clone(),
                upstream_errors: self.upstream_errors.clone(),
                polls: self.polls.clone(),
            }),
        }
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

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

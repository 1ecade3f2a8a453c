//! Every Prometheus metric, registered once and shared as `Arc<Metrics>`.
//!
//! Hot paths never look labels up: each route resolves its labelled handles once into a
//! [`RouteMetrics`] when the route table is built. Label values are bounded: `route` is the
//! configured path, `reason` and `result` come from fixed sets in the code.

mod cluster;
mod labels;
mod registrar;
mod reload;
mod route;

pub use cluster::{ClusterMetrics, CLUSTER_OPS};
pub use labels::{
    AUTH_RESULTS, POLL_RESULTS, REFUSAL_REASONS, REJECTION_REASONS, STREAM_END_REASONS,
    UPSTREAM_ERROR_REASONS,
};
pub use route::{DeliveryMetrics, RouteMetrics};

use std::sync::Arc;

use registrar::Registrar;
use reload::{unix_now, ReloadMetrics};
use route::Families;

use prometheus::{
    Encoder, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry, TextEncoder,
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
    backend_healthy: IntGaugeVec,
    upstream_streams_active: IntGaugeVec,
    polls: IntCounterVec,
    stream_ends: IntCounterVec,
    http_requests: IntCounterVec,
    http_request_duration: HistogramVec,
    auth_decisions: IntCounterVec,
    poll_duration: HistogramVec,
    patch_bytes_saved: IntCounterVec,
    event_delivery: HistogramVec,
    reloads: ReloadMetrics,
    requests_refused: IntCounterVec,
    /// The cluster's families.
    pub cluster: ClusterMetrics,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn register() -> Result<Metrics, prometheus::Error> {
        let r = Registrar {
            registry: Registry::new(),
        };
        let reason = &["route", "reason"];
        let (http_requests, http_request_duration) = http_families(&r)?;
        let (poll_duration, patch_bytes_saved) = poll_families(&r)?;
        let upstream = upstream_families(&r)?;
        let (upstream_connects, upstream_errors, backend_healthy, upstream_streams_active) =
            upstream;
        let event_delivery = r.histogram(
            "event_delivery_seconds",
            "Live events: upstream receipt to client write",
            0.000_05,
        )?;
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
            upstream_connects,
            upstream_errors,
            backend_healthy,
            upstream_streams_active,
            polls: r.counter("polls_total", "Polls, by result", &["route", "result"])?,
            stream_ends: r.counter(
                "stream_ends_total",
                "Client streams ended, by reason",
                reason,
            )?,
            http_requests,
            http_request_duration,
            auth_decisions: r.counter(
                "auth_decisions_total",
                "Authentication decisions, by result",
                &["route", "result"],
            )?,
            poll_duration,
            patch_bytes_saved,
            event_delivery,
            reloads: ReloadMetrics::register(&r)?,
            requests_refused: r.refusals()?,
            cluster: ClusterMetrics::register(&r)?,
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
    /// known label value, so dashboards and alerts see each series before its first incident
    /// (`upstream_errors_total` per backend: see [`RouteMetrics::backend_healthy`]).
    pub fn route(&self, route: &str) -> RouteMetrics {
        let families = [
            (&self.stream_ends, &STREAM_END_REASONS[..]),
            (&self.connections_rejected, &REJECTION_REASONS[..]),
            (&self.polls, &POLL_RESULTS[..]),
            (&self.auth_decisions, &AUTH_RESULTS[..]),
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
            families: Arc::new(Families {
                connections_rejected: self.connections_rejected.clone(),
                stream_ends: self.stream_ends.clone(),
                http_requests: self.http_requests.clone(),
                auth_decisions: self.auth_decisions.clone(),
                upstream_errors: self.upstream_errors.clone(),
                backend_healthy: self.backend_healthy.clone(),
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

/// The upstream families: connections, failures by reason and backend, each backend's
/// health, running sources. Failures and health are labelled by backend — the configured
/// URL, without its query — as well as by route: two routes may share a backend URL with
/// different health checks.
fn upstream_families(
    r: &Registrar,
) -> prometheus::Result<(IntCounterVec, IntCounterVec, IntGaugeVec, IntGaugeVec)> {
    let connects = r.route_counter("upstream_connects_total", "Upstream connections")?;
    let errors = r.counter(
        "upstream_errors_total",
        "Upstream failures, by reason and backend",
        &["route", "reason", "backend"],
    )?;
    let healthy = r.gauge_with(
        "upstream_backend_healthy",
        "1 while a backend is used: its health check passes and it was not refused since",
        &["route", "backend"],
    )?;
    let active = r.gauge(
        "upstream_streams_active",
        "Running upstream sources (streams, sockets, pollers)",
    )?;
    Ok((connects, errors, healthy, active))
}

/// The poll families: request time, and what patches saved.
fn poll_families(r: &Registrar) -> prometheus::Result<(HistogramVec, IntCounterVec)> {
    let duration = r.histogram("poll_duration_seconds", "Poll request time", 0.001)?;
    let saved = r.route_counter(
        "patch_bytes_saved_total",
        "Bytes patches saved compared with full snapshots",
    )?;
    Ok((duration, saved))
}

/// The `http` route families: requests by status, and their duration.
fn http_families(r: &Registrar) -> prometheus::Result<(IntCounterVec, HistogramVec)> {
    let requests = r.counter(
        "http_requests_total",
        "Requests on http routes, by status sent",
        &["route", "status"],
    )?;
    let duration = r.histogram(
        "http_request_duration_seconds",
        "Requests on http routes, from request to the end of the response",
        0.000_1,
    )?;
    Ok((requests, duration))
}

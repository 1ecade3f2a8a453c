//! The handles of one route, resolved once when its generation is built, so hot paths
//! never look a label up.

use std::sync::Arc;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::UPSTREAM_ERROR_REASONS;

/// The handles of one route, resolved once.
#[derive(Clone)]
pub struct RouteMetrics {
    pub(super) route: String,
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
    pub(super) families: Arc<Families>,
}

/// The handles a delivery counts in, apart from the route's others: a stream keeps them
/// beside the other fields a delivery reads, in one cache line (see `stream::shared`).
#[derive(Clone)]
pub struct DeliveryMetrics {
    /// `sse_edge_events_sent_total{route}`
    pub events_sent: IntCounter,
    /// `sse_edge_bytes_sent_total{route}`
    pub bytes_sent: IntCounter,
    /// `sse_edge_event_delivery_seconds{route}`
    pub event_delivery: Histogram,
}

/// Families whose second label is chosen at the call site.
pub(super) struct Families {
    pub(super) connections_rejected: IntCounterVec,
    pub(super) stream_ends: IntCounterVec,
    pub(super) http_requests: IntCounterVec,
    pub(super) upstream_errors: IntCounterVec,
    pub(super) backend_healthy: IntGaugeVec,
    pub(super) polls: IntCounterVec,
    pub(super) auth_decisions: IntCounterVec,
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

    /// The handles a delivery counts in.
    pub fn delivery(&self) -> DeliveryMetrics {
        DeliveryMetrics {
            events_sent: self.events_sent.clone(),
            bytes_sent: self.bytes_sent.clone(),
            event_delivery: self.event_delivery.clone(),
        }
    }

    /// The route label: the configured path.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Counts an authentication decision by result (one of [`super::AUTH_RESULTS`]).
    pub fn auth_decision(&self, result: &'static str) {
        self.families
            .auth_decisions
            .with_label_values(&[&self.route, result])
            .inc();
    }

    /// Counts a failure of the upstream `backend` (its configured URL without the query) by
    /// reason.
    pub fn upstream_error(&self, backend: &str, reason: &'static str) {
        self.families
            .upstream_errors
            .with_label_values(&[&self.route, reason, backend])
            .inc();
    }

    /// Exports the `upstream_errors_total` series of `backend` at 0 for every reason, and
    /// returns its `sse_edge_upstream_backend_healthy{route,backend}` gauge, set to 1: a
    /// backend is healthy until it fails.
    pub fn backend_healthy(&self, backend: &str) -> IntGauge {
        for reason in UPSTREAM_ERROR_REASONS {
            self.families
                .upstream_errors
                .with_label_values(&[&self.route, reason, backend]);
        }
        let gauge = self
            .families
            .backend_healthy
            .with_label_values(&[&self.route, backend]);
        gauge.set(1);
        gauge
    }

    /// Counts a poll by result: `changed`, `unchanged`, `not_modified`, `error`.
    pub fn poll(&self, result: &'static str) {
        self.families
            .polls
            .with_label_values(&[&self.route, result])
            .inc();
    }
}

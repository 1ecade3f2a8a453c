//! Sources turn an upstream into events published into a stream. The three SSE route kinds
//! differ only here; everything downstream of [`Publisher`] is shared.
//!
//! One module per kind owns everything about it — how a client's request becomes the
//! upstream request, whether clients share it, how it resumes, how it starts — behind
//! [`StreamKind`]. [`prepare`] is the one place a kind is chosen. Every kind's feed runs the
//! same [`reconnect`] loop with its own [`reconnect::Attempt`], and fails with a
//! [`SourceError`].

mod error;
pub mod failover;
pub mod http_client;
mod http_stream;
mod last_event_id;
pub mod poll;
pub mod reconnect;
mod request;
pub mod sse;
pub mod websocket;

use std::sync::Arc;

pub use error::SourceError;
pub use request::{ClientRequest, UpstreamRequest};

use crate::config::StreamSource;
use crate::metrics::RouteMetrics;
use crate::pool::CheckRunner;
use crate::routes::Captures;
use crate::stream::{Feed, Publisher};
use http_client::HttpClient;

/// A stream kind made ready for one route: built once when the route table is (trust
/// stores loaded then), used for every stream of the route.
pub trait StreamKind: Send + Sync {
    /// The upstream request a client's request leads to.
    fn request(&self, client: &ClientRequest) -> UpstreamRequest;

    /// Whether clients making the same upstream request may share one stream.
    fn shares(&self) -> bool {
        true
    }

    /// Whether the upstream resumes by itself from a `Last-Event-ID` (so a new stream hands
    /// it the first client's id instead of answering with a gap marker).
    fn resumes_upstream(&self) -> bool {
        false
    }

    /// The feed of a new stream for `upstream`, resuming after `resume` when the kind
    /// resumes upstream.
    fn start(
        &self,
        upstream: UpstreamRequest,
        captures: &Captures,
        resume: Option<String>,
        out: Publisher,
    ) -> Feed;

    /// The feed of a stream another cluster node ran until now: its last event was sent
    /// with `last_id` and led to `document` (poll routes). By default the kind starts
    /// afresh, resuming with `last_id` when it resumes upstream (sse); a websocket
    /// reconnects and re-subscribes.
    fn take_over(
        &self,
        upstream: UpstreamRequest,
        captures: &Captures,
        last_id: String,
        _document: Option<String>,
        out: Publisher,
    ) -> Feed {
        let resume = self.resumes_upstream().then_some(last_id);
        self.start(upstream, captures, resume, out)
    }
}

/// What preparing a route's kind needs besides its config: the shared upstream client, and
/// for the route's pool its metric handles and where its health checks run.
pub struct Prepare<'a> {
    /// The shared HTTP client (sse and poll upstreams).
    pub http: &'a Arc<HttpClient>,
    /// The route's metric handles (its backends' gauges and error series).
    pub metrics: &'a RouteMetrics,
    /// Where the pool's health-check loop runs.
    pub checks: &'a CheckRunner,
}

/// The one place a stream kind is chosen: a new kind adds its module and one line here.
pub fn prepare(source: &StreamSource, with: &Prepare) -> Arc<dyn StreamKind> {
    match source {
        StreamSource::Sse(route) => Arc::new(sse::SseKind::new(route, with)),
        StreamSource::Poll(route) => Arc::new(poll::PollKind::new(route, with)),
        StreamSource::WebSocket(route) => Arc::new(websocket::WebSocketKind::new(route, with)),
    }
}

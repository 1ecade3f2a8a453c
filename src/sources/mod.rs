//! Sources turn an upstream into events published into a stream. The three SSE route kinds
//! differ only here; everything downstream of [`Publisher`] is shared.

pub mod http_client;
pub mod poll;
pub mod sse;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderMap;

use crate::app::{App, Route};
use crate::config::{RouteConfig, RouteKind};
use crate::routes::{Captures, Template};
use crate::stream::Publisher;

/// An upstream that feeds one stream. `run` loops (reconnecting, re-polling) until the hub
/// aborts it after the last subscriber has left.
#[async_trait]
pub trait Source: Send + 'static {
    /// Feeds `out` until aborted.
    async fn run(self: Box<Self>, out: Publisher);
}

/// What a source needs to reach its upstream for one stream.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// The final URL: captures and query substituted.
    pub url: String,
    /// Headers to send: configured extras and forwarded client headers.
    pub headers: Vec<(String, String)>,
}

/// The upstream request for one client: the kind's URL template filled with the path
/// captures and the client's query (minus `lastEventId`, which is the proxy's own), plus
/// configured and forwarded headers.
pub fn upstream_request(
    route: &RouteConfig,
    captures: &Captures,
    query: Option<&str>,
    client_headers: &HeaderMap,
) -> UpstreamRequest {
    let (url, extra) = match &route.kind {
        RouteKind::Sse(sse) => (&sse.upstream, &sse.headers),
        RouteKind::Poll(poll) => (&poll.url, &poll.headers),
        RouteKind::WebSocket(ws) => (&ws.url, &ws.headers),
        RouteKind::Http(http) => (&http.upstream, &Default::default()),
    };
    let query: Vec<&str> = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("lastEventId"))
        .collect();
    let mut headers: Vec<(String, String)> =
        extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for name in &route.forward_headers {
        for value in client_headers.get_all(name.as_str()).iter() {
            if let Ok(value) = value.to_str() {
                headers.push((name.clone(), value.to_string()));
            }
        }
    }
    UpstreamRequest {
        url: Template::new(url.as_str()).fill_url(captures, Some(&query.join("&"))),
        headers,
    }
}

/// Whether identical requests on this route may share one upstream.
pub fn shares(route: &RouteConfig) -> bool {
    match &route.kind {
        RouteKind::Sse(sse) => sse.share,
        _ => true,
    }
}

/// Creates the source for a new stream of `route`.
pub fn start(
    app: &App,
    route: &Arc<Route>,
    request: UpstreamRequest,
    captures: &Captures,
    resume: Option<String>,
) -> Box<dyn Source> {
    let config = &route.config;
    match &config.kind {
        RouteKind::Sse(_) | RouteKind::Http(_) => Box::new(sse::SseSource::new(
            app.http_for(route),
            request,
            config.stream.max_event_bytes,
            resume,
        )),
        RouteKind::Poll(poll) => Box::new(poll::PollSource::new(
            app.http_for(route),
            request,
            poll.clone(),
        )),
        RouteKind::WebSocket(ws) => Box::new(websocket::WebSocketSource::new(
            request,
            ws.clone(),
            ws.subscribe
                .as_ref()
                .map(|s| Template::new(s.as_str()).fill(captures)),
        )),
    }
}

/// Capped exponential backoff with jitter, shared by every source's reconnect loop.
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

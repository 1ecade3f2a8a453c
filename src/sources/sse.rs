//! The `sse` source: an upstream `text/event-stream`, parsed and republished event by event.
//!
//! Each complete event is published the moment its blank line arrives. The upstream's ids
//! pass through, and the last one is sent as `Last-Event-ID` when reconnecting, so an
//! upstream that supports resume loses nothing across a drop.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::http_client::HttpClient;
use super::{Backoff, Source, UpstreamRequest};
use crate::sse::Parser;
use crate::stream::Publisher;

/// Proxies one upstream SSE stream.
pub struct SseSource {
    client: Arc<HttpClient>,
    request: UpstreamRequest,
    max_event_bytes: usize,
    last_event_id: Option<String>,
}

impl SseSource {
    /// A source for `request`, resuming from `last_event_id` when given.
    pub fn new(
        client: Arc<HttpClient>,
        request: UpstreamRequest,
        max_event_bytes: usize,
        last_event_id: Option<String>,
    ) -> Self {
        SseSource {
            client,
            request,
            max_event_bytes,
            last_event_id,
        }
    }

    /// One connection: returns why it ended and whether it delivered anything.
    async fn stream_once(&mut self, out: &Publisher) -> (&'static str, bool) {
        let mut headers = self.request.headers.clone();
        headers.push(("Accept".into(), "text/event-stream".into()));
        headers.push(("Cache-Control".into(), "no-cache".into()));
        if let Some(id) = &self.last_event_id {
            headers.push(("Last-Event-ID".into(), id.clone()));
        }
        let mut response = match self.client.get(&self.request.url, &headers, None).await {
            Ok(response) => response,
            Err(err) => return (err.reason(), false),
        };
        if !(200..300).contains(&response.status) {
            return ("status", false);
        }
        let is_event_stream = response.header("content-type").is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        if !is_event_stream {
            return ("content_type", false);
        }
        out.metrics().upstream_connects.inc();
        out.upstream_recovered();
        let mut parser = Parser::new(self.max_event_bytes);
        let mut delivered = false;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return ("eof", delivered),
                Err(err) => return (err.reason(), delivered),
            };
            let outcome = parser.feed(&chunk);
            for _ in 0..outcome.oversize {
                out.metrics().upstream_error("oversize_event");
            }
            for event in outcome.events {
                if let Some(id) = &event.id {
                    self.last_event_id = Some(id.clone());
                }
                delivered = true;
                out.publish(event);
            }
        }
    }
}

#[async_trait]
impl Source for SseSource {
    async fn run(mut self: Box<Self>, out: Publisher) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            let (reason, delivered) = self.stream_once(&out).await;
            if delivered {
                backoff.reset();
            }
            tracing::debug!(url = %self.request.url, reason, "upstream stream ended");
            out.upstream_failed(reason);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

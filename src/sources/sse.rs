//! The `sse` kind: an upstream `text/event-stream`, parsed and republished event by event.
//!
//! Each complete event is published the moment its blank line arrives. The upstream's ids
//! pass through, and the last one is sent as `Last-Event-ID` when reconnecting, so an
//! upstream that supports resume loses nothing across a drop. With `upstream_idle_timeout`,
//! an upstream that sends no byte for that long (a host gone without a FIN, a stuck
//! process) is dropped and reconnected the same way.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{sleep_until, Instant, Sleep};

use super::failover::{self, Failover, Target};
use super::http_client::HttpClient;
use super::http_stream::Body;
use super::last_event_id::LastEventId;
use super::reconnect::{self, Attempt, Backoff, Failure, Next};
use super::{ClientRequest, Prepare, SourceError, StreamKind, UpstreamRequest};
use crate::config::SseRoute;
use crate::pool::Pool;
use crate::routes::Captures;
use crate::sse::Parser;
use crate::stream::{Feed, Publisher};

/// An `sse:` route, ready to start streams.
pub struct SseKind {
    route: SseRoute,
    client: Arc<HttpClient>,
    pool: Arc<Pool>,
}

impl SseKind {
    /// Prepares `route`, loading its `ca_file` once and building its pool.
    pub fn new(route: &SseRoute, with: &Prepare) -> Self {
        let ca_file = route.ca_file.as_deref();
        SseKind {
            client: with.http.for_ca_file(ca_file),
            pool: failover::pool(&route.upstream, ca_file, with.metrics, with.checks),
            route: route.clone(),
        }
    }
}

impl StreamKind for SseKind {
    fn request(&self, client: &ClientRequest) -> UpstreamRequest {
        UpstreamRequest::new(self.route.upstream.first(), &self.route.headers, client)
    }

    fn shares(&self) -> bool {
        self.route.share
    }

    fn resumes_upstream(&self) -> bool {
        true
    }

    fn start(
        &self,
        upstream: UpstreamRequest,
        captures: &Captures,
        resume: Option<String>,
        out: Publisher,
    ) -> Feed {
        let max_event_bytes = out.max_event_bytes();
        let failover = Failover::new(
            self.pool.clone(),
            &self.route.upstream.urls,
            &upstream,
            captures,
        );
        let source = SseSource {
            client: self.client.clone(),
            request: upstream,
            max_event_bytes,
            idle_timeout: self.route.upstream_idle_timeout,
            last_event_id: resume.into(),
        };
        Box::pin(reconnect::run(source, out, Backoff::reconnect(), failover))
    }
}

/// Proxies one upstream SSE stream.
struct SseSource {
    client: Arc<HttpClient>,
    request: UpstreamRequest,
    max_event_bytes: usize,
    idle_timeout: Option<Duration>,
    last_event_id: LastEventId,
}

impl SseSource {
    /// Opens the stream at `url`, resuming after the last id seen; `None`: the upstream
    /// answered `204 No Content`, which the SSE standard uses to say "stop reconnecting".
    async fn connect(&self, url: &str) -> Result<Option<Body>, SourceError> {
        let mut headers = self.request.headers.clone();
        headers.push(("Accept".into(), "text/event-stream".into()));
        headers.push(("Cache-Control".into(), "no-cache".into()));
        if let Some(id) = self.last_event_id.get() {
            headers.push(("Last-Event-ID".into(), id.to_string()));
        }
        let (head, body) = self.client.stream(url, &headers).await?;
        if head.status == 204 {
            return Ok(None);
        }
        if !(200..300).contains(&head.status) {
            return Err(SourceError::Status(head.status));
        }
        let content_type = head.content_type.as_deref().unwrap_or_default();
        let is_event_stream = content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("text/event-stream");
        if !is_event_stream {
            return Err(SourceError::ContentType(content_type.to_string()));
        }
        Ok(Some(body))
    }

    /// Opens the stream at `url` as [`SseSource::connect`] does, failing with `IdleTimeout`
    /// when the upstream sends no byte within the route's `upstream_idle_timeout`.
    async fn connect_within_idle_timeout(&self, url: &str) -> Result<Option<Body>, SourceError> {
        match self.idle_timeout {
            None => self.connect(url).await,
            Some(limit) => tokio::time::timeout(limit, self.connect(url))
                .await
                .unwrap_or(Err(SourceError::IdleTimeout)),
        }
    }
}

#[async_trait]
impl Attempt for SseSource {
    async fn attempt(&mut self, target: &Target, out: &Publisher) -> Result<Next, Failure> {
        let Some(body) = self.connect_within_idle_timeout(target.url()).await? else {
            return Ok(Next::Finished);
        };
        out.metrics().upstream_connects.inc();
        reconnect::recovered(out, target);
        let mut reading = Reading {
            body,
            parser: Parser::new(self.max_event_bytes),
            last_event_id: std::mem::take(&mut self.last_event_id),
            delivered: false,
            idle: self.idle_timeout.map(IdleLimit::new),
        };
        let failure = poll_fn(|cx| reading.poll_events(cx, out)).await;
        self.last_event_id = reading.last_event_id;
        Err(failure)
    }
}

/// An upstream stream being read: its body, parser and last id, read and published from in
/// one poll. What an event's wake-up touches lies here together (`repr(C)`, in that order,
/// from the start of a cache line), not spread over the states of a read loop's nested
/// futures.
#[repr(C, align(64))]
struct Reading {
    body: Body,
    parser: Parser,
    /// The source's, for as long as the attempt reads (and given back after it).
    last_event_id: LastEventId,
    /// Whether an event was published: the next backoff then starts over.
    delivered: bool,
    idle: Option<IdleLimit>,
}

impl Reading {
    /// Publishes every event that arrives into `out`; resolves with the end of the stream.
    fn poll_events(&mut self, cx: &mut Context<'_>, out: &Publisher) -> Poll<Failure> {
        loop {
            let end = match self.body.poll_chunk(cx) {
                Poll::Ready(Ok(Some(chunk))) => Ok(chunk),
                Poll::Ready(Ok(None)) => Err(SourceError::Eof),
                Poll::Ready(Err(error)) => Err(error),
                Poll::Pending => {
                    let Some(idle) = &mut self.idle else {
                        return Poll::Pending;
                    };
                    ready!(idle.poll_expired(cx));
                    Err(SourceError::IdleTimeout)
                }
            };
            let chunk = match end {
                Ok(chunk) => chunk,
                Err(error) => return Poll::Ready(Failure::after(error, self.delivered)),
            };
            if let Some(idle) = &mut self.idle {
                idle.bytes_arrived();
            }
            let (last_event_id, delivered) = (&mut self.last_event_id, &mut self.delivered);
            let oversize = self.parser.feed_each(chunk, &mut |event| {
                // Only an id that can travel back as `Last-Event-ID` is kept for resuming:
                // one with NUL or another control byte is refused by the stream anyway
                // (`unsafe_field`), and would make every reconnect fail.
                if let Some(id) = event.id().filter(|id| is_header_value(id)) {
                    last_event_id.set(id);
                }
                *delivered = true;
                out.publish_parsed(event);
            });
            for _ in 0..oversize {
                out.count_error("oversize_event");
            }
        }
    }
}

/// `upstream_idle_timeout` over a stream being read: one timer, set again only when it
/// fires before the limit has passed since the last bytes — not a timer per read.
struct IdleLimit {
    limit: Duration,
    last_bytes: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleLimit {
    fn new(limit: Duration) -> Self {
        let now = Instant::now();
        IdleLimit {
            limit,
            last_bytes: now,
            timer: Box::pin(sleep_until(now + limit)),
        }
    }

    fn bytes_arrived(&mut self) {
        self.last_bytes = Instant::now();
    }

    /// Ready once `limit` has passed without bytes.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let due = self.last_bytes + self.limit;
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(due);
        }
    }
}

/// Whether `text` is a valid header value (`http::HeaderValue`'s rule: visible ASCII,
/// space, tab and obs-text), checked without building one.
fn is_header_value(text: &str) -> bool {
    text.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::is_header_value;

    #[test]
    fn header_values_are_judged_as_the_http_crate_does() {
        for text in [
            "42", "a b\tc", "é", "", "a\0b", "a\rb", "a\nb", "\x7f", "\x1f",
        ] {
            let expected = http::HeaderValue::from_str(text).is_ok();
            assert_eq!(is_header_value(text), expected, "{text:?}");
        }
    }
}

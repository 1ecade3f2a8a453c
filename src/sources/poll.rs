//! The `poll` source: one poller per stream (the hub shares a stream per upstream URL, so a
//! thousand subscribers cost one request per interval), publishing each change.
//!
//! ```text
//!  every interval ±10%          conditional GET (If-None-Match / If-Modified-Since)
//!        │                                   │
//!        ▼                                   ▼
//!   fetch ── 304 ─────────────────────────▶ not_modified
//!     │ 2xx, body ≤ max_body_bytes
//!     ▼
//!   decode (depth scan, JSON or UTF-8 text) ── same as last ──▶ unchanged
//!     │ different
//!     ▼
//!   diff::change ──▶ Publisher::publish_with_snapshot(event, full document)   changed
//! ```
//!
//! Any failure is counted by reason, reported through [`Publisher::upstream_failed`] and
//! retried after a capped exponential backoff; subscribers stay connected meanwhile.

mod diff;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::http_client::{HttpClient, UpstreamError};
use super::{Backoff, Source, UpstreamRequest};
use crate::config::{Content, Emit, PollSource as PollConfig};
use crate::sse::Event;
use crate::stream::{Publisher, Snapshot};

pub use diff::{change, merge_patch, within_depth, Change};

/// Bound on one whole poll request (connect, headers and body).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between polls while the upstream keeps failing.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Why a poll failed; [`PollError::reason`] is the `upstream_errors_total` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// Resolving, connecting or reading failed.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// The request did not complete within the poll request timeout (10s).
    #[error("timeout")]
    Timeout,
    /// The upstream answered with a non-2xx status.
    #[error("status {0}")]
    Status(u16),
    /// The body was larger than `max_body_bytes`.
    #[error("body too large")]
    TooLarge,
    /// The JSON nested deeper than `max_depth`.
    #[error("JSON nested too deep")]
    TooDeep,
    /// The body was not valid JSON.
    #[error("invalid JSON")]
    InvalidJson,
    /// A `content: text` body was not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
}

impl PollError {
    /// The `reason` label value.
    pub fn reason(self) -> &'static str {
        match self {
            PollError::Upstream(error) => error.reason(),
            PollError::Timeout => "timeout",
            PollError::Status(_) => "status",
            PollError::TooLarge => "too_large",
            PollError::TooDeep => "too_deep",
            PollError::InvalidJson => "invalid_json",
            PollError::InvalidUtf8 => "invalid_utf8",
        }
    }
}

/// Polls one URL and publishes its changes.
pub struct PollSource {
    client: Arc<HttpClient>,
    request: UpstreamRequest,
    config: PollConfig,
}

impl PollSource {
    /// A poller for `request`.
    pub fn new(client: Arc<HttpClient>, request: UpstreamRequest, config: PollConfig) -> Self {
        PollSource {
            client,
            request,
            config,
        }
    }
}

#[async_trait]
impl Source for PollSource {
    async fn run(self: Box<Self>, out: Publisher) {
        let interval = self.config.interval;
        let mut poller = Poller {
            source: *self,
            last: None,
            validators: Validators::default(),
            backoff: Backoff::new(interval, BACKOFF_CAP.max(interval)),
        };
        loop {
            let delay = poller.poll(&out).await;
            tokio::time::sleep(delay).await;
        }
    }
}

/// A polled document, as compared between polls.
#[derive(Debug, PartialEq)]
enum Document {
    Json(Value),
    Text(String),
}

/// The cache validators of the last document published.
#[derive(Debug, Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

enum Fetched {
    NotModified,
    Body(Vec<u8>, Validators),
}

struct Poller {
    source: PollSource,
    last: Option<Document>,
    validators: Validators,
    backoff: Backoff,
}

impl Poller {
    /// One poll, counted and published; returns the delay before the next one.
    async fn poll(&mut self, out: &Publisher) -> Duration {
        let started = Instant::now();
        let fetched = tokio::time::timeout(REQUEST_TIMEOUT, self.fetch())
            .await
            .unwrap_or(Err(PollError::Timeout));
        out.metrics()
            .poll_duration
            .observe(started.elapsed().as_secs_f64());
        match fetched.and_then(|fetched| self.apply(fetched, out)) {
            Ok(result) => {
                out.metrics().poll(result);
                out.upstream_recovered();
                self.backoff.reset();
                let interval = self.source.config.interval;
                interval.mul_f64(0.9 + fastrand::f64() * 0.2)
            }
            Err(error) => {
                tracing::debug!(url = %self.source.request.url, %error, "poll failed");
                out.metrics().poll("error");
                out.upstream_failed(error.reason());
                self.backoff.next_delay()
            }
        }
    }

    /// The conditional request and the capped body read.
    async fn fetch(&self) -> Result<Fetched, PollError> {
        let PollSource {
            client,
            request,
            config,
        } = &self.source;
        let mut headers = request.headers.clone();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("accept"))
        {
            let accept = match config.content {
                Content::Json => "application/json",
                Content::Text => "*/*",
            };
            headers.push(("Accept".into(), accept.into()));
        }
        // Validators are only worth sending while there is a document to fall back on.
        if self.last.is_some() {
            if let Some(etag) = &self.validators.etag {
                headers.push(("If-None-Match".into(), etag.clone()));
            }
            if let Some(date) = &self.validators.last_modified {
                headers.push(("If-Modified-Since".into(), date.clone()));
            }
        }
        let mut response = client
            .get(&request.url, &headers, Some(REQUEST_TIMEOUT))
            .await?;
        if response.status == 304 && self.last.is_some() {
            response.finish().await;
            return Ok(Fetched::NotModified);
        }
        if !(200..300).contains(&response.status) {
            return Err(PollError::Status(response.status));
        }
        let max = usize::try_from(config.max_body_bytes.as_u64()).unwrap_or(usize::MAX);
        let declared = response
            .header("content-length")
            .and_then(|len| len.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > config.max_body_bytes.as_u64()) {
            return Err(PollError::TooLarge);
        }
        let validators = Validators {
            etag: response.header("etag").map(str::to_string),
            last_modified: response.header("last-modified").map(str::to_string),
        };
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(PollError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        response.finish().await;
        Ok(Fetched::Body(body, validators))
    }

    /// Decodes, compares and publishes; returns the `polls_total` result.
    fn apply(&mut self, fetched: Fetched, out: &Publisher) -> Result<&'static str, PollError> {
        let (body, validators) = match fetched {
            Fetched::NotModified => return Ok("not_modified"),
            Fetched::Body(body, validators) => (body, validators),
        };
        let document = self.decode(body)?;
        // Kept only now: a validator for a body we refused must not turn into a 304 later.
        self.validators = validators;
        if self.last.as_ref() == Some(&document) {
            return Ok("unchanged");
        }
        self.publish(&document, out);
        self.last = Some(document);
        Ok("changed")
    }

    fn decode(&self, body: Vec<u8>) -> Result<Document, PollError> {
        match self.source.config.content {
            Content::Text => String::from_utf8(body)
                .map(Document::Text)
                .map_err(|_| PollError::InvalidUtf8),
            Content::Json => {
                if !within_depth(&body, self.source.config.max_depth) {
                    return Err(PollError::TooDeep);
                }
                serde_json::from_slice(&body)
                    .map(Document::Json)
                    .map_err(|_| PollError::InvalidJson)
            }
        }
    }

    fn publish(&self, document: &Document, out: &Publisher) {
        let config = &self.source.config;
        let (change, snapshot_mode) = match (document, &self.last) {
            (Document::Text(text), _) => (Change::Snapshot(text.clone()), true),
            (Document::Json(new), Some(Document::Json(old))) => (
                change(config.emit, Some(old), new),
                config.emit == Emit::Snapshot,
            ),
            (Document::Json(new), _) => (
                change(config.emit, None, new),
                config.emit == Emit::Snapshot,
            ),
        };
        match change {
            Change::Snapshot(data) if snapshot_mode => {
                let join_event = config.event.clone().unwrap_or_else(|| "message".into());
                let event = Event {
                    event: config.event.clone(),
                    ..Event::message(data.as_str())
                };
                out.publish_with_snapshot(event, Snapshot { join_event, data });
            }
            Change::Snapshot(data) => {
                let event = Event::named("snapshot", data.as_str());
                let join_event = "snapshot".into();
                out.publish_with_snapshot(event, Snapshot { join_event, data });
            }
            Change::Patch(patch) => {
                let data = match document {
                    Document::Json(new) => new.to_string(),
                    Document::Text(text) => text.clone(),
                };
                let saved = data.len().saturating_sub(patch.len());
                out.metrics().patch_bytes_saved.inc_by(saved as u64);
                let name = config.event.clone().unwrap_or_else(|| "patch".into());
                let join_event = "snapshot".into();
                out.publish_with_snapshot(Event::named(name, patch), Snapshot { join_event, data });
            }
        }
    }
}

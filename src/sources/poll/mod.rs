//! The `poll` kind: one poller per stream (the hub shares a stream per upstream URL, so a
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
//! Any failure is counted by reason and backed off by the shared [`reconnect`] loop;
//! subscribers stay connected meanwhile.

mod diff;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::failover::{self, Failover, Target};
use super::http_client::HttpClient;
use super::reconnect::{self, Attempt, Backoff, Failure, Next};
use super::{ClientRequest, Prepare, SourceError, StreamKind, UpstreamRequest};
use crate::config::{Content, Emit, PollRoute};
use crate::pool::Pool;
use crate::routes::Captures;
use crate::sse::Event;
use crate::stream::{Feed, Publisher, Snapshot};

pub use diff::{change, merge_patch, within_depth, Change};

/// Bound on one whole poll request (connect, headers and body).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between polls while the upstream keeps failing.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// A `poll:` route, ready to start pollers.
pub struct PollKind {
    route: Arc<PollRoute>,
    client: Arc<HttpClient>,
    pool: Arc<Pool>,
}

impl PollKind {
    /// Prepares `route`, loading its `ca_file` once and building its pool.
    pub fn new(route: &PollRoute, with: &Prepare) -> Self {
        let ca_file = route.ca_file.as_deref();
        PollKind {
            client: with.http.for_ca_file(ca_file),
            pool: failover::pool(&route.url, ca_file, with.metrics, with.checks),
            route: Arc::new(route.clone()),
        }
    }
}

impl StreamKind for PollKind {
    fn request(&self, client: &ClientRequest) -> UpstreamRequest {
        UpstreamRequest::new(self.route.url.first(), &self.route.headers, client)
    }

    fn start(
        &self,
        upstream: UpstreamRequest,
        captures: &Captures,
        _resume: Option<String>,
        out: Publisher,
    ) -> Feed {
        self.feed(self.poller(upstream), captures, out)
    }

    /// Continues from the document the previous holder published last: the first poll
    /// publishes nothing when the upstream has not changed (no duplicate snapshot, no
    /// `reset`), and a patch against that document when it has.
    fn take_over(
        &self,
        upstream: UpstreamRequest,
        captures: &Captures,
        _last_id: String,
        document: Option<String>,
        out: Publisher,
    ) -> Feed {
        let mut poller = self.poller(upstream);
        poller.last = document.and_then(|text| poller.decode(text.into_bytes()).ok());
        self.feed(poller, captures, out)
    }
}

impl PollKind {
    fn poller(&self, upstream: UpstreamRequest) -> Poller {
        Poller {
            client: self.client.clone(),
            request: upstream,
            route: self.route.clone(),
            last: None,
            validators: Validators::default(),
        }
    }

    /// Runs `poller` over the route's pool, from the backend the stream key hashes to.
    fn feed(&self, poller: Poller, captures: &Captures, out: Publisher) -> Feed {
        let urls = &self.route.url.urls;
        let failover = Failover::new(self.pool.clone(), urls, &poller.request, captures);
        let interval = self.route.interval;
        let backoff = Backoff::new(interval, BACKOFF_CAP.max(interval));
        Box::pin(reconnect::run(poller, out, backoff, failover))
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

/// Polls one URL and publishes its changes.
struct Poller {
    client: Arc<HttpClient>,
    request: UpstreamRequest,
    route: Arc<PollRoute>,
    last: Option<Document>,
    validators: Validators,
}

#[async_trait]
impl Attempt for Poller {
    /// One poll, counted and published; a success asks for the next poll after the
    /// interval (±10%).
    async fn attempt(&mut self, target: &Target, out: &Publisher) -> Result<Next, Failure> {
        let started = Instant::now();
        let fetched = tokio::time::timeout(REQUEST_TIMEOUT, self.fetch(target.url()))
            .await
            .unwrap_or(Err(SourceError::Timeout));
        out.metrics()
            .poll_duration
            .observe(started.elapsed().as_secs_f64());
        match fetched.and_then(|fetched| self.apply(fetched, out)) {
            Ok(result) => {
                out.metrics().poll(result);
                reconnect::recovered(out, target);
                let interval = self.route.interval.mul_f64(0.9 + fastrand::f64() * 0.2);
                Ok(Next::After(interval))
            }
            Err(error) => {
                out.metrics().poll("error");
                Err(error.into())
            }
        }
    }
}

impl Poller {
    /// The conditional request to `url` and the capped body read.
    async fn fetch(&self, url: &str) -> Result<Fetched, SourceError> {
        let (client, request, config) = (&self.client, &self.request, &*self.route);
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
        let mut response = client.get(url, &headers, Some(REQUEST_TIMEOUT)).await?;
        if response.status == 304 && self.last.is_some() {
            response.finish().await;
            return Ok(Fetched::NotModified);
        }
        if !(200..300).contains(&response.status) {
            return Err(SourceError::Status(response.status));
        }
        let max = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
        let declared = response
            .header("content-length")
            .and_then(|len| len.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > config.max_body_bytes) {
            return Err(SourceError::TooLarge);
        }
        let validators = Validators {
            etag: response.header("etag").map(str::to_string),
            last_modified: response.header("last-modified").map(str::to_string),
        };
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > max {
                return Err(SourceError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        response.finish().await;
        Ok(Fetched::Body(body, validators))
    }

    /// Decodes, compares and publishes; returns the `polls_total` result.
    fn apply(&mut self, fetched: Fetched, out: &Publisher) -> Result<&'static str, SourceError> {
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

    fn decode(&self, body: Vec<u8>) -> Result<Document, SourceError> {
        match self.route.content {
            Content::Text => String::from_utf8(body)
                .map(Document::Text)
                .map_err(|_| SourceError::InvalidUtf8),
            Content::Json => {
                if !within_depth(&body, self.route.max_depth) {
                    return Err(SourceError::TooDeep);
                }
                serde_json::from_slice(&body)
                    .map(Document::Json)
                    .map_err(|err| SourceError::InvalidJson(err.to_string()))
            }
        }
    }

    fn publish(&self, document: &Document, out: &Publisher) {
        let config = &self.route;
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

//! A stream's way through its route's pool: the backend its key prefers, the next usable one
//! when the upstream fails, and the stream's URL on each.
//!
//! The stream key the pool hashes is the stream's URL on the route's first backend (captures
//! and query filled in): the same request gives the same key on every node, so every node
//! picks the same backend for it. On another backend the stream's URL is that backend's
//! template filled with the same captures and the same client query.

use std::sync::Arc;

use super::{SourceError, UpstreamRequest};
use crate::config::Upstreams;
use crate::metrics::RouteMetrics;
use crate::pool::{CheckRunner, Pool, PoolSpec, Selection};
use crate::routes::{Captures, Template};

/// The pool of a stream route's backends, health-checked per its `health_check` (trusting
/// `ca_file` too for TLS backends).
pub fn pool(
    upstreams: &Upstreams<Template>,
    ca_file: Option<&str>,
    metrics: &RouteMetrics,
    checks: &CheckRunner,
) -> Arc<Pool> {
    let spec = PoolSpec {
        urls: upstreams.urls.iter().map(Template::to_string).collect(),
        health_check: upstreams.health_check.as_ref(),
        selection: Selection::Hashed,
        ca_file,
    };
    Arc::new(Pool::new(spec, metrics, checks))
}

/// One stream's backends, and the one that failed it last.
pub struct Failover {
    pool: Arc<Pool>,
    key: String,
    /// The stream's URL on each backend.
    urls: Vec<String>,
    /// The backend of the last failed attempt: the next attempt tries another one first.
    failed: Option<usize>,
}

/// The backend an attempt goes to.
pub struct Target {
    index: usize,
    url: String,
    pool: Arc<Pool>,
}

impl Failover {
    /// The backends of the stream `upstream` (built from the route's first template) on
    /// `pool`, whose templates are `templates`.
    pub fn new(
        pool: Arc<Pool>,
        templates: &[Template],
        upstream: &UpstreamRequest,
        captures: &Captures,
    ) -> Failover {
        Failover {
            urls: urls(templates, &upstream.url, captures),
            key: upstream.url.clone(),
            pool,
            failed: None,
        }
    }

    /// The backend for the next attempt; `Err` with the key's own backend when none passes
    /// its health check.
    pub fn next(&self) -> Result<Target, Target> {
        let target = |index: usize| Target {
            url: self.urls.get(index).cloned().unwrap_or_default(),
            index,
            pool: self.pool.clone(),
        };
        self.pool
            .for_key(&self.key, self.failed)
            .map(target)
            .map_err(target)
    }

    /// Records that an attempt on `target` failed with `error`: the next attempt prefers
    /// another backend, and a backend that could not be reached at all is skipped by every
    /// stream and request of the route until it is back.
    pub fn failed(&mut self, target: &Target, error: &SourceError) {
        self.failed = Some(target.index);
        if error.is_unreachable() {
            self.pool.refused(target.index);
        }
    }
}

impl Target {
    /// The stream's URL on this backend.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The backend's name: the `backend` label of metrics and logs.
    pub fn backend(&self) -> &Arc<str> {
        self.pool.label(self.index)
    }

    /// The backend answered: it is usable again for the whole route.
    pub fn answered(&self) {
        self.pool.answered(self.index);
    }
}

/// The stream's URL on each backend: `first_url` on the first, the others' templates filled
/// with the same captures and the client query that `first_url` carries.
fn urls(templates: &[Template], first_url: &str, captures: &Captures) -> Vec<String> {
    let Some((first, others)) = templates.split_first() else {
        return vec![first_url.to_string()];
    };
    let rest = first_url.strip_prefix(&first.fill(captures));
    let query = rest.map(|rest| {
        rest.strip_prefix('?')
            .or_else(|| rest.strip_prefix('&'))
            .unwrap_or(rest)
    });
    let mut urls = vec![first_url.to_string()];
    urls.extend(others.iter().map(|other| other.fill_url(captures, query)));
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_gets_the_same_captures_and_client_query() {
        let templates = [
            Template::new("http://a:1/o/{id}?v=1"),
            Template::new("http://b:1/orders/{id}"),
        ];
        let captures = Captures::from([("id".to_string(), "7".to_string())]);
        let first = templates[0].fill_url(&captures, Some("x=1&y=2"));
        assert_eq!(
            urls(&templates, &first, &captures),
            ["http://a:1/o/7?v=1&x=1&y=2", "http://b:1/orders/7?x=1&y=2"]
        );
        let bare = templates[0].fill_url(&captures, None);
        assert_eq!(
            urls(&templates, &bare, &captures),
            ["http://a:1/o/7?v=1", "http://b:1/orders/7"]
        );
    }
}

//! An `http` route's backends: its pool (round robin over the healthy ones), and which of
//! them is failing, so each outage is logged once.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{backend_name, HttpRoute};
use crate::metrics::RouteMetrics;
use crate::pool::{CheckRunner, Pool, PoolSpec, Selection};

/// The backends of one `http` route.
pub struct HttpBackend {
    /// The route's upstreams.
    pub route: HttpRoute,
    /// Its pool: which backend a request goes to.
    pub pool: Pool,
    /// The route's metric handles: its backends' error series.
    pub metrics: RouteMetrics,
    /// Per backend: set by the first failed request of an outage, cleared by the next answer.
    failing: Vec<AtomicBool>,
}

impl HttpBackend {
    /// The backends of `route`, reporting in `metrics`, health-checked on `checks`.
    pub fn new(route: &HttpRoute, metrics: &RouteMetrics, checks: &CheckRunner) -> HttpBackend {
        let spec = PoolSpec {
            urls: route
                .upstream
                .urls
                .iter()
                .map(|uri| backend_name(&uri.to_string()).to_string())
                .collect(),
            health_check: route.upstream.health_check.as_ref(),
            selection: Selection::RoundRobin,
            ca_file: None,
        };
        HttpBackend {
            pool: Pool::new(spec, metrics, checks),
            failing: route
                .upstream
                .urls
                .iter()
                .map(|_| AtomicBool::default())
                .collect(),
            route: route.clone(),
            metrics: metrics.clone(),
        }
    }

    /// Counts a failed request of backend `index` by `reason`; `true` for the first failure
    /// of an outage, which the caller logs.
    pub fn failed(&self, index: usize, reason: &'static str) -> bool {
        self.metrics.upstream_error(self.pool.label(index), reason);
        self.failing
            .get(index)
            .is_some_and(|failing| !failing.swap(true, Ordering::Relaxed))
    }

    /// Records that backend `index` answered; `true` when it was failing, which ends an
    /// outage the caller logs.
    pub fn answered(&self, index: usize) -> bool {
        self.pool.answered(index);
        self.failing
            .get(index)
            .is_some_and(|failing| failing.swap(false, Ordering::Relaxed))
    }
}

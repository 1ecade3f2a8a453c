//! Everything a request needs, shared by the whole process: the current configuration
//! generation (route table and limits), the stream hub, the limiter, metrics, the upstream
//! client, and the drain state.
//!
//! The generation is an `Arc` snapshot behind a lock, as linkerd2-proxy hands policy to its
//! stacks: a request reads it once, at its start, and keeps it; a reload swaps in the next
//! one atomically ([`reload`]).

mod http_backend;
mod reload;
mod table;

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

pub use http_backend::HttpBackend;
pub use reload::ReloadOutcome;
pub use table::{Connectors, Generation, Handler, Route, StreamRoute};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::limits::Limiter;
use crate::metrics::Metrics;
use crate::pool::CheckRunner;
use crate::sources::http_client::HttpClient;
use crate::stream::{Hub, RouteStop};

/// Shared state of the running proxy.
pub struct App {
    /// The file SIGHUP re-reads (`None` for the demo's generated configuration).
    config_path: Option<PathBuf>,
    current: RwLock<Arc<Generation>>,
    /// Live streams.
    pub hub: Arc<Hub>,
    /// Connection limits.
    pub limiter: Arc<Limiter>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    connectors: Connectors,
    /// Becomes `true` when the proxy stops admitting streams for shutdown.
    draining: watch::Sender<bool>,
    /// Becomes `true` when `/readyz` should fail: shutdown has been asked for.
    unready: watch::Sender<bool>,
    /// This node's part of the cluster (`cluster:`); `None`: a single instance.
    pub cluster: Option<Arc<Cluster>>,
}

impl App {
    /// Builds the shared state for `config`, read from `config_path` (which SIGHUP re-reads).
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Arc<App>, prometheus::Error> {
        let metrics = Arc::new(Metrics::register()?);
        let connectors = Connectors {
            http: Arc::new(HttpClient::default()),
            checks: Arc::new(CheckRunner::default()),
        };
        let limiter = Limiter::new(config.limits.clone());
        let cluster = config.cluster.as_ref().and_then(|cluster| {
            Cluster::new(cluster, metrics.cluster.clone())
                .inspect_err(|error| tracing::error!(%error, "cluster: not joined"))
                .ok()
        });
        let first = Generation::first(config, &metrics, &connectors);
        Ok(Arc::new(App {
            config_path,
            current: RwLock::new(Arc::new(first)),
            hub: Hub::new(),
            limiter,
            metrics,
            connectors,
            draining: watch::channel(false).0,
            unready: watch::channel(false).0,
            cluster,
        }))
    }

    /// The configuration generation serving new requests now.
    pub fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The runner of every pool's health checks, for the server to run as a background
    /// service.
    pub fn health_checks(&self) -> Arc<CheckRunner> {
        self.connectors.checks.clone()
    }

    /// Whether new streams are refused because shutdown has begun.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Whether `/readyz` fails: shutdown was asked for, streams may still be served.
    pub fn is_unready(&self) -> bool {
        *self.unready.borrow()
    }

    /// Makes `/readyz` fail, so the balancer stops sending new clients first.
    pub fn mark_unready(&self) {
        self.unready.send_replace(true);
    }

    /// Starts draining: new streams are refused and every open one is ended on an event
    /// boundary with a final `retry:`.
    pub fn drain(&self) {
        self.mark_unready();
        self.draining.send_replace(true);
        self.stop_streams();
    }

    /// Ends every open stream with a final `retry:` while still admitting new requests (the
    /// old process during an upgrade: its clients reconnect, and land on the new process).
    pub fn stop_streams(&self) {
        for route in &self.current().routes {
            route.stop.send_replace(Some(RouteStop::Shutdown));
        }
    }
}

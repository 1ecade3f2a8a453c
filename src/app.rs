//! Everything a request needs, built once from the config and shared: the compiled route
//! table, the stream hub, the limiter, metrics, the upstream client and the drain signal.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, RouteConfig, RouteKind};
use crate::limits::Limiter;
use crate::metrics::{Metrics, RouteMetrics};
use crate::routes::Captures;
use crate::server::tls::CaType;
use crate::sources::http_client::HttpClient;
use crate::stream::{Hub, StreamSpec};

/// One route, ready to serve.
pub struct Route {
    /// Its validated config.
    pub config: RouteConfig,
    /// Its metric handles.
    pub metrics: RouteMetrics,
    /// The settings its streams are created with.
    pub spec: StreamSpec,
    /// Trust store for its `https://` upstream when it sets `ca_file`: the system roots
    /// plus that file's certificates.
    pub upstream_ca: Option<Arc<CaType>>,
}

/// Shared state of the running proxy.
pub struct App {
    /// The configuration it was started with.
    pub config: Config,
    /// Routes in match order.
    pub routes: Vec<Arc<Route>>,
    /// Live streams.
    pub hub: Arc<Hub>,
    /// Connection limits.
    pub limiter: Arc<Limiter>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Upstream HTTP client.
    pub http: Arc<HttpClient>,
    /// Becomes `true` when the proxy starts draining for shutdown.
    pub draining: watch::Sender<bool>,
}

impl App {
    /// Builds the shared state for `config`.
    pub fn new(config: Config) -> Result<Arc<App>, prometheus::Error> {
        let metrics = Arc::new(Metrics::register()?);
        let routes = config
            .routes
            .iter()
            .map(|route| {
                Arc::new(Route {
                    spec: StreamSpec {
                        replay: route.stream.replay,
                        max_event_bytes: route.stream.max_event_bytes,
                        linger: route.stream.linger,
                        upstream_error_event: route.stream.upstream_error_event,
                        resumes_upstream: matches!(route.kind, RouteKind::Sse(_)),
                    },
                    metrics: metrics.route(&route.path),
                    upstream_ca: upstream_ca(route),
                    config: route.clone(),
                })
            })
            .collect();
        let (draining, _) = watch::channel(false);
        Ok(Arc::new(App {
            limiter: Limiter::new(config.limits.clone()),
            config,
            routes,
            hub: Hub::new(),
            metrics,
            http: Arc::new(HttpClient::default()),
            draining,
        }))
    }

    /// The upstream client for `route`: the shared one, or a view of it on the same
    /// connection pool that trusts the route's `ca_file` as well.
    pub fn http_for(&self, route: &Route) -> Arc<HttpClient> {
        match &route.upstream_ca {
            Some(ca) => Arc::new(self.http.with_ca(ca.clone())),
            None => self.http.clone(),
        }
    }

    /// The first route matching `path`, with its captures.
    pub fn find_route(&self, path: &str) -> Option<(&Arc<Route>, Captures)> {
        self.routes
            .iter()
            .find_map(|route| route.config.pattern.matches(path).map(|c| (route, c)))
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }
}

/// Loads the route's `ca_file` (already checked by config validation; a failure here is
/// logged and the route keeps the system roots, so its `https://` upstream fails verification).
fn upstream_ca(route: &RouteConfig) -> Option<Arc<CaType>> {
    let path = match &route.kind {
        RouteKind::Sse(sse) => sse.ca_file.as_ref(),
        RouteKind::Poll(poll) => poll.ca_file.as_ref(),
        RouteKind::WebSocket(_) | RouteKind::Http(_) => None,
    }?;
    crate::server::tls::upstream_ca(path)
        .map_err(|reason| tracing::error!(route = %route.path, %reason, "ca_file unusable"))
        .ok()
}

//! Everything a request needs, built once from the config and shared: the compiled route
//! table, the stream hub, the limiter, metrics, the upstream client and the drain signal.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::{Config, HttpRoute, Limits, RouteConfig, RouteKind, SlowClientPolicy};
use crate::limits::Limiter;
use crate::metrics::{Metrics, RouteMetrics};
use crate::routes::Captures;
use crate::sources::http_client::HttpClient;
use crate::sources::StreamKind;
use crate::stream::{self, Hub, RouteStop, StreamSpec};

/// One route, ready to serve.
pub struct Route {
    /// Its validated config.
    pub config: RouteConfig,
    /// Its metric handles.
    pub metrics: RouteMetrics,
    /// What serves its requests.
    pub handler: Handler,
    /// Ends every open stream of the route when set (shutdown, or a reload that retires it).
    pub stop: watch::Sender<Option<RouteStop>>,
}

/// How a route's requests are served.
pub enum Handler {
    /// An SSE stream, fed by its kind's source.
    Stream(StreamRoute),
    /// pingora's proxy path to a legacy API.
    Http(HttpRoute),
}

/// A stream route: its kind, made ready, and the settings its streams are made with.
pub struct StreamRoute {
    /// The source kind.
    pub kind: Box<dyn StreamKind>,
    /// The settings of its streams and their writers.
    pub spec: Arc<StreamSpec>,
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
    /// Becomes `true` when the proxy starts draining for shutdown.
    pub draining: watch::Sender<bool>,
}

impl App {
    /// Builds the shared state for `config`.
    pub fn new(config: Config) -> Result<Arc<App>, prometheus::Error> {
        let metrics = Arc::new(Metrics::register()?);
        let http = Arc::new(HttpClient::default());
        let routes = config
            .routes
            .iter()
            .map(|route| Arc::new(build_route(route, &config.limits, &metrics, &http)))
            .collect();
        let (draining, _) = watch::channel(false);
        Ok(Arc::new(App {
            limiter: Limiter::new(config.limits.clone()),
            config,
            routes,
            hub: Hub::new(),
            metrics,
            draining,
        }))
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

    /// Starts draining: new streams are refused and every open one is ended on an event
    /// boundary with a final `retry:`.
    pub fn drain(&self) {
        self.draining.send_replace(true);
        for route in &self.routes {
            route.stop.send_replace(Some(RouteStop::Shutdown));
        }
    }
}

fn build_route(
    config: &RouteConfig,
    limits: &Limits,
    metrics: &Metrics,
    http: &Arc<HttpClient>,
) -> Route {
    let handler = match &config.kind {
        RouteKind::Stream(source) => {
            let kind = crate::sources::prepare(source, http);
            let spec = Arc::new(stream_spec(config, limits, kind.resumes_upstream()));
            Handler::Stream(StreamRoute { kind, spec })
        }
        RouteKind::Http(http) => Handler::Http(http.clone()),
    };
    Route {
        metrics: metrics.route(&config.path),
        config: config.clone(),
        handler,
        stop: watch::channel(None).0,
    }
}

/// The core's settings for a route's streams: its own settings and the global limits.
fn stream_spec(route: &RouteConfig, limits: &Limits, resumes_upstream: bool) -> StreamSpec {
    let settings = &route.settings;
    StreamSpec {
        replay: settings.replay,
        max_event_bytes: settings.max_event_bytes,
        linger: settings.linger,
        upstream_error_event: settings.upstream_error_event,
        resumes_upstream,
        heartbeat: settings.heartbeat,
        retry: settings.retry,
        max_lag: limits.max_lag,
        slow_client: match limits.slow_client_policy {
            SlowClientPolicy::Disconnect => stream::SlowClientPolicy::Disconnect,
            SlowClientPolicy::DropOldest => stream::SlowClientPolicy::DropOldest,
        },
        max_lifetime: settings.max_lifetime,
    }
}

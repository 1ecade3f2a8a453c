//! The route table of one configuration generation, and how a reload builds the next one
//! so that a route whose streams did not change keeps them.
//!
//! A route's `scope` names its shared streams in the hub: it is the route's path and the
//! generation that introduced its current settings. A route carried over by a reload keeps
//! its scope (new clients join the same shared streams, the same upstream) and its stop
//! signal (so a later shutdown or change reaches its old streams too); a changed route gets
//! a new scope, so no new client ever joins a stream still running the old settings.

use std::sync::Arc;

use tokio::sync::watch;

use super::http_backend::HttpBackend;
use crate::auth::{Authenticators, Guard};
use crate::config::{Config, Limits, RouteConfig, RouteKind, SlowClientPolicy};
use crate::metrics::{Metrics, RouteMetrics};
use crate::pool::CheckRunner;
use crate::routes::Captures;
use crate::sources::http_client::HttpClient;
use crate::sources::{Prepare, StreamKind};
use crate::stream::{self, RouteStop, StreamSpec};

/// One route, ready to serve.
pub struct Route {
    /// Its validated config.
    pub config: RouteConfig,
    /// Its metric handles.
    pub metrics: RouteMetrics,
    /// What serves its requests.
    pub handler: Handler,
    /// The hub scope of its shared streams: path and the generation of its settings.
    pub scope: Arc<str>,
    /// Ends every open stream of the route when set (shutdown, or a reload that retires it).
    pub stop: Arc<watch::Sender<Option<RouteStop>>>,
    /// Checks the client's credential first; `None` on a public route.
    pub auth: Option<Guard>,
}

/// How a route's requests are served.
pub enum Handler {
    /// An SSE stream, fed by its kind's source.
    Stream(StreamRoute),
    /// pingora's proxy path to a legacy API.
    Http(Arc<HttpBackend>),
}

/// What routes reach their upstreams with, shared by every generation: the HTTP client,
/// and where pools run their health checks.
pub struct Connectors {
    /// The upstream HTTP client of sse and poll routes.
    pub http: Arc<HttpClient>,
    /// Runs the health-check loops of every route's pool.
    pub checks: Arc<CheckRunner>,
}

/// A stream route: its kind, made ready, and the settings its streams are made with.
pub struct StreamRoute {
    /// The source kind.
    pub kind: Arc<dyn StreamKind>,
    /// The settings of its streams and their writers.
    pub spec: Arc<StreamSpec>,
}

/// Everything one configuration generation serves with. A request reads the current one
/// once, at its start, and keeps it.
pub struct Generation {
    /// Counts reloads that applied: 0 for the configuration the process started with.
    pub number: u64,
    /// The configuration.
    pub config: Config,
    /// Routes in match order.
    pub routes: Vec<Arc<Route>>,
}

impl Generation {
    /// The first generation.
    pub fn first(config: Config, metrics: &Metrics, connectors: &Connectors) -> Generation {
        let built = Built::new(&config, 0, metrics, connectors);
        let routes = config
            .routes
            .iter()
            .map(|route| Arc::new(built.route(route, None)))
            .collect();
        Generation {
            number: 0,
            config,
            routes,
        }
    }

    /// The generation after this one for `config`, and the routes it retires (removed or
    /// changed), whose streams the caller stops.
    pub fn next(
        &self,
        config: Config,
        metrics: &Metrics,
        connectors: &Connectors,
    ) -> (Generation, Vec<Arc<Route>>) {
        let number = self.number + 1;
        let built = Built::new(&config, number, metrics, connectors);
        let routes: Vec<Arc<Route>> = config
            .routes
            .iter()
            .map(|route| {
                let carried = self
                    .routes
                    .iter()
                    .find(|old| old.config.serves_same_streams(route));
                Arc::new(built.route(route, carried))
            })
            .collect();
        let retired = self
            .routes
            .iter()
            .filter(|old| !routes.iter().any(|new| Arc::ptr_eq(&new.stop, &old.stop)))
            .cloned()
            .collect();
        let next = Generation {
            number,
            config,
            routes,
        };
        (next, retired)
    }

    /// The first route matching `path`, with its captures.
    pub fn find_route(&self, path: &str) -> Option<(&Arc<Route>, Captures)> {
        self.routes
            .iter()
            .find_map(|route| route.config.pattern.matches(path).map(|c| (route, c)))
    }
}

/// What every route of one generation is built with.
struct Built<'a> {
    limits: &'a Limits,
    authenticators: Authenticators,
    generation: u64,
    metrics: &'a Metrics,
    connectors: &'a Connectors,
}

impl<'a> Built<'a> {
    fn new(
        config: &'a Config,
        generation: u64,
        metrics: &'a Metrics,
        connectors: &'a Connectors,
    ) -> Self {
        Built {
            limits: &config.limits,
            authenticators: Authenticators::new(&config.auth, &connectors.http),
            generation,
            metrics,
            connectors,
        }
    }

    /// Builds `config`; a route `carried` over from the previous generation keeps its
    /// scope, stop signal and prepared kind or backends (its pool, health checks running
    /// on).
    fn route(&self, config: &RouteConfig, carried: Option<&Arc<Route>>) -> Route {
        let metrics = self.metrics.route(&config.path);
        let handler = self.handler(config, carried, &metrics);
        Route {
            metrics,
            config: config.clone(),
            handler,
            scope: carried.map_or_else(
                || format!("{}#{}", config.path, self.generation).into(),
                |old| old.scope.clone(),
            ),
            stop: carried.map_or_else(|| Arc::new(watch::channel(None).0), |old| old.stop.clone()),
            auth: config
                .auth
                .as_ref()
                .map(|auth| self.authenticators.guard(auth)),
        }
    }

    fn handler(
        &self,
        config: &RouteConfig,
        carried: Option<&Arc<Route>>,
        metrics: &RouteMetrics,
    ) -> Handler {
        let (limits, connectors) = (self.limits, self.connectors);
        match (&config.kind, carried.map(|old| &old.handler)) {
            (RouteKind::Stream(_), Some(Handler::Stream(old))) => {
                Handler::Stream(stream_route(config, limits, old.kind.clone()))
            }
            (RouteKind::Stream(source), _) => {
                let with = Prepare {
                    http: &connectors.http,
                    metrics,
                    checks: &connectors.checks,
                };
                let kind = crate::sources::prepare(source, &with);
                Handler::Stream(stream_route(config, limits, kind))
            }
            (RouteKind::Http(_), Some(Handler::Http(old))) => Handler::Http(old.clone()),
            (RouteKind::Http(http), _) => {
                let backend = HttpBackend::new(http, metrics, &connectors.checks);
                Handler::Http(Arc::new(backend))
            }
        }
    }
}

fn stream_route(config: &RouteConfig, limits: &Limits, kind: Arc<dyn StreamKind>) -> StreamRoute {
    let spec = stream_spec(config, limits, kind.resumes_upstream());
    StreamRoute {
        kind,
        spec: Arc::new(spec),
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

//! The pingora boundary: look the route up, dispatch, nothing else.
//!
//! ```text
//! connection ─► heads::HeadGuard (raw request line, header_timeout ─► 408)
//! request ─► request_filter ─► bad request line, no Host ─► 400
//!                 │            oversize headers ─────────► 431
//!                 │            no route ────────────────► 404
//!                 │            OPTIONS preflight ────────► 204 / 403
//!                 │            authenticate::check refuses ► 401 / 403 / 503 (route auth)
//!                 │            Handler::Stream ──────────► stream_route::serve ─► Ok(true)
//!                 │              admit · join the hub · SSE header · detach the connection
//!                 │              ─► ClientStream task: writer::run until the stream ends
//!                 └─ Handler::Http ─► Ok(false) ─► upstream_peer: the pool's next backend
//!                                                   ─► upstream_request_filter
//!                                                   ─► legacy API (pingora's proxy path)
//!                                    connect refused ─► fail_to_connect: retry once (GET, HEAD)
//! ```

mod access;
mod authenticate;
mod clustered;
mod downstream;
mod heads;
mod http_route;
mod hygiene;
mod respond;
mod stream_route;
mod tcp_client;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{HttpProxy, ProxyHttp, ProxyWarnLogContext, Session};
use pingora::server::configuration::ServerConf;
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use tracing::Instrument;

use crate::app::{App, Handler, HttpBackend, Route};
use authenticate::Checked;
pub use heads::HeadGuard;
use heads::HeadPolicy;

/// The service pingora runs on the proxy listeners: [`EdgeProxy`] behind the [`HeadGuard`].
pub type ProxyService = Service<HeadGuard<HttpProxy<EdgeProxy>>>;

/// The proxy service for `app`, its connections' request heads watched.
pub fn service(conf: &Arc<ServerConf>, app: Arc<App>) -> ProxyService {
    let current = app.clone();
    let policy = HeadPolicy {
        timeout: Box::new(move || current.current().config.limits.header_timeout),
        timeouts: app.metrics.refusals("header_timeout"),
    };
    let proxy = pingora::proxy::http_proxy(conf, EdgeProxy::new(app));
    Service::new("sse-edge proxy".to_string(), HeadGuard::new(proxy, policy))
}

/// The proxy: one per process, shared by every connection.
pub struct EdgeProxy {
    app: Arc<App>,
}

impl EdgeProxy {
    /// A proxy serving `app`'s routes.
    pub fn new(app: Arc<App>) -> Self {
        EdgeProxy { app }
    }
}

/// Per-request state: the `http` route being proxied, if any, the backend it went to, and
/// when the request began.
pub struct RequestCtx {
    route: Option<Arc<Route>>,
    attempt: http_route::Attempt,
    started: Instant,
}

impl RequestCtx {
    fn backend(&self) -> Result<Arc<HttpBackend>> {
        match self.route.as_ref().map(|r| &r.handler) {
            Some(Handler::Http(backend)) => Ok(backend.clone()),
            _ => Err(Error::explain(ErrorType::InternalError, "no http route")),
        }
    }
}

impl EdgeProxy {
    /// Answers the request itself, or leaves `ctx.route` set for pingora to proxy it.
    async fn serve(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let generation = self.app.current();
        let max_header_bytes = generation.config.limits.max_header_bytes;
        if let Some(refusal) = hygiene::refusal(session, max_header_bytes) {
            self.app.metrics.request_refused(refusal.reason);
            return respond::text(session, refusal.status, refusal.body, &[]).await;
        }
        let path = session.req_header().uri.path().to_string();
        let Some((route, captures)) = generation.find_route(&path) else {
            return respond::text(session, 404, "no route for this path\n", &[]).await;
        };
        let is_preflight = session.req_header().method == http::Method::OPTIONS
            && session
                .req_header()
                .headers
                .contains_key("access-control-request-method");
        if is_preflight {
            return respond::preflight(session, &route.config.settings.cors).await;
        }
        let identity = match authenticate::check(route, &captures, session).await? {
            Checked::Public => None,
            Checked::Passed(identity) => Some(identity),
            Checked::Refused => return Ok(()),
        };
        let Handler::Stream(stream) = &route.handler else {
            ctx.route = Some(route.clone());
            return Ok(());
        };
        let span = tracing::info_span!(
            "stream",
            route = %route.config.path,
            kind = route.config.kind.name(),
            client = ?session.client_addr().map(|a| a.to_string()),
        );
        stream_route::serve(&self.app, route, stream, captures, identity, session)
            .instrument(span)
            .await
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            route: None,
            attempt: Default::default(),
            started: Instant::now(),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let Err(err) = self.serve(session, ctx).await {
            // Every response here is written by us; a failed write means the client left.
            tracing::debug!(%err, "client went away");
        }
        Ok(ctx.route.is_none())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let backend = ctx.backend()?;
        http_route::peer(&backend, &mut ctx.attempt).await
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        error: Box<Error>,
    ) -> Box<Error> {
        let Ok(backend) = ctx.backend() else {
            return error;
        };
        let method = &session.req_header().method;
        http_route::fail_to_connect(&backend, method, &mut ctx.attempt, error)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let auth = ctx.route.as_ref().and_then(|route| route.auth.as_ref());
        let credential_params = auth.map_or(&[][..], |guard| guard.credential_params());
        let backend = ctx.backend()?;
        http_route::rewrite(&backend, &ctx.attempt, credential_params, upstream_request)
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        heads::next_request(session);
        if let Some(route) = &ctx.route {
            http_route::finished(
                session,
                error,
                route,
                &mut ctx.attempt,
                ctx.started.elapsed(),
            );
        }
    }

    /// pingora's own log lines name the request by this: without its query string, which
    /// may carry credentials.
    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        let request = session.req_header();
        let path = access::without_query(request.uri.path());
        format!("{} {path}", request.method)
    }

    /// `http` route failures are logged by [`http_route::finished`], once per outage.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, _error: &Error) -> bool {
        ctx.route.is_some()
    }

    /// A retry on the next backend is logged by [`http_route::fail_to_connect`], once per
    /// outage, not once per retry.
    fn suppress_proxy_warn_log(
        &self,
        _session: &Session,
        ctx: &RequestCtx,
        _error: &Error,
        _context: ProxyWarnLogContext,
    ) -> bool {
        ctx.route.is_some()
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        for name in http_route::hop_by_hop_names(&upstream_response.headers) {
            upstream_response.remove_header(&name);
        }
        Ok(())
    }
}

//! Serving one client on an SSE route (sse, poll or websocket — they differ only in the
//! source): admission, joining the shared stream, the SSE response header, the writer.

use std::sync::Arc;
use std::time::Duration;

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use tokio::sync::watch;
use tracing::Instrument;

use super::downstream::ClientConnection;
use super::respond;
use crate::app::{App, Route};
use crate::limits::{query_param, Permit, Refusal};
use crate::routes::Captures;
use crate::sources;
use crate::stream::{writer, Subscription, WriterSettings};

/// Admits the client to `route` and answers with the SSE header; the stream itself then runs
/// in a task of its own (see [`ClientConnection::detach`]).
pub async fn serve(
    app: &App,
    route: &Arc<Route>,
    captures: Captures,
    session: &mut Session,
) -> Result<()> {
    let method = session.req_header().method.clone();
    if method != http::Method::GET {
        return respond::text(
            session,
            405,
            "method not allowed: use GET\n",
            &[("Allow", "GET".into())],
        )
        .await;
    }
    let retry_after = [(
        "Retry-After",
        route.config.stream.retry.as_secs().max(1).to_string(),
    )];
    if app.is_draining() {
        route.metrics.rejected("shutting_down");
        return respond::text(session, 503, "shutting down, retry shortly\n", &retry_after).await;
    }
    let request = session.req_header();
    let query = request.uri.query().map(str::to_string);
    let last_event_id = respond::header(session, "last-event-id")
        .or_else(|| query.as_deref().and_then(|q| query_param(q, "lastEventId")));
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let client = app
        .limiter
        .identify(peer, &request.headers, query.as_deref());
    let permit = match app
        .limiter
        .acquire(&client, &route.config.path, route.config.per_client)
    {
        Ok(permit) => permit,
        Err(refusal) => {
            route.metrics.rejected(refusal.reason());
            let (status, body) = match refusal {
                Refusal::PerClient => (429, "too many streams for this client\n"),
                Refusal::MaxConnections => (503, "proxy at its connection limit\n"),
            };
            return respond::text(session, status, body, &retry_after).await;
        }
    };
    let upstream =
        sources::upstream_request(&route.config, &captures, query.as_deref(), &request.headers);
    let key = if route.config.forward_headers.is_empty() && sources::shares(&route.config) {
        format!("{}\n{}", route.config.path, upstream.url)
    } else {
        format!(
            "{}\n{}\n#{}",
            route.config.path,
            upstream.url,
            app.hub.unique_id()
        )
    };
    let subscription = app.hub.join(
        key,
        &route.spec,
        &route.metrics,
        last_event_id.as_deref(),
        |resume| sources::start(app, route, upstream, &captures, resume),
    );
    let origin = respond::header(session, "origin");
    write_sse_header(
        session,
        &respond::cors_headers(&route.config.stream.cors, origin.as_deref()),
    )
    .await?;
    let stream = ClientStream {
        client: ClientConnection::detach(session),
        subscription,
        settings: writer_settings(app, route),
        draining: app.draining.subscribe(),
        route: route.clone(),
        permit,
    };
    tokio::spawn(stream.run().instrument(tracing::Span::current()));
    Ok(())
}

/// Everything one client's stream holds once pingora's request is done with it.
struct ClientStream {
    client: ClientConnection,
    subscription: Subscription,
    settings: WriterSettings,
    draining: watch::Receiver<bool>,
    route: Arc<Route>,
    /// The client's limiter slots, released when the stream ends, however it ends.
    permit: Permit,
}

impl ClientStream {
    /// Streams until the client leaves, lags, or the proxy stops.
    async fn run(mut self) {
        let metrics = &self.route.metrics;
        metrics.connections_total.inc();
        metrics.connections_active.inc();
        let end = writer::run(
            &mut self.client,
            &mut self.subscription,
            &self.settings,
            &mut self.draining,
            metrics,
        )
        .await;
        metrics.connections_active.dec();
        tracing::debug!(?end, "stream ended");
        drop(self.subscription);
        if end != writer::StreamEnd::ClientGone {
            self.client.finish().await;
        }
        drop(self.permit);
    }
}

async fn write_sse_header(session: &mut Session, cors: &[(&'static str, String)]) -> Result<()> {
    let mut header = ResponseHeader::build(200, Some(6))?;
    header.insert_header("Content-Type", "text/event-stream; charset=utf-8")?;
    header.insert_header("Cache-Control", "no-cache")?;
    header.insert_header("X-Accel-Buffering", "no")?;
    for (name, value) in cors {
        header.insert_header(*name, value.as_str())?;
    }
    // pingora#766: generated streaming responses must not be kept alive.
    session.set_keepalive(None);
    session.write_response_header(Box::new(header), false).await
}

fn writer_settings(app: &App, route: &Route) -> WriterSettings {
    let stream = &route.config.stream;
    let jitter = |d: Duration| d.mul_f64(0.9 + fastrand::f64() * 0.2);
    WriterSettings {
        heartbeat: stream.heartbeat,
        retry: stream.retry,
        max_lag: app.config.limits.max_lag,
        policy: app.config.limits.slow_client_policy,
        lifetime: stream.max_lifetime.map(jitter),
    }
}

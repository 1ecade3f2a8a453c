//! Serving one client on a stream route (sse, poll or websocket — they differ only in the
//! source): admit, find or start the stream, write the SSE head, hand the connection over.

use std::sync::Arc;

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use tracing::Instrument;

use super::downstream::ClientConnection;
use super::respond;
use crate::app::{App, Route, StreamRoute};
use crate::limits::{query_param, Permit, Refusal};
use crate::routes::Captures;
use crate::sources::ClientRequest;
use crate::stream::{writer, Ends, StreamEnd, StreamKey, StreamSpec, Subscription};

/// Admits the client to `route` and answers with the SSE header; the stream itself then runs
/// in a task of its own (see [`ClientConnection::detach`]).
pub async fn serve(
    app: &App,
    route: &Arc<Route>,
    stream: &StreamRoute,
    captures: Captures,
    session: &mut Session,
) -> Result<()> {
    if session.req_header().method != http::Method::GET {
        let allow = [("Allow", "GET".to_string())];
        return respond::text(session, 405, "method not allowed: use GET\n", &allow).await;
    }
    let permit = match admit(app, route, session) {
        Ok(permit) => permit,
        Err((status, body)) => {
            let retry_after = [("Retry-After", retry_after(route))];
            return respond::text(session, status, body, &retry_after).await;
        }
    };
    let subscription = join(app, route, stream, &captures, session);
    let origin = respond::header(session, "origin");
    let cors = respond::cors_headers(&route.config.settings.cors, origin.as_deref());
    write_sse_header(session, &cors).await?;
    let client_stream = ClientStream {
        client: ClientConnection::detach(session),
        subscription,
        spec: stream.spec.clone(),
        ends: Ends {
            stop: route.stop.subscribe(),
            expires: None,
        },
        route: route.clone(),
        permit,
    };
    tokio::spawn(client_stream.run().instrument(tracing::Span::current()));
    Ok(())
}

/// Takes the client's limiter slots, or says why not (status and body), counted.
fn admit(
    app: &App,
    route: &Route,
    session: &Session,
) -> std::result::Result<Permit, (u16, &'static str)> {
    if app.is_draining() {
        route.metrics.rejected("shutting_down");
        return Err((503, "shutting down, retry shortly\n"));
    }
    let request = session.req_header();
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let client = app
        .limiter
        .identify(peer, &request.headers, request.uri.query());
    let route_limit = route.config.per_client;
    app.limiter
        .acquire(&client, &route.config.path, route_limit)
        .map_err(|refusal| {
            route.metrics.rejected(refusal.reason());
            match refusal {
                Refusal::PerClient => (429, "too many streams for this client\n"),
                Refusal::MaxConnections => (503, "proxy at its connection limit\n"),
            }
        })
}

/// Subscribes the client to the stream its upstream request leads to, starting it when it
/// is the first.
fn join(
    app: &App,
    route: &Route,
    stream: &StreamRoute,
    captures: &Captures,
    session: &Session,
) -> Subscription {
    let request = session.req_header();
    let query = request.uri.query();
    let last_event_id = respond::header(session, "last-event-id")
        .or_else(|| query.and_then(|q| query_param(q, "lastEventId")));
    let forward_headers = &route.config.forward_headers;
    let upstream = stream.kind.request(&ClientRequest {
        captures,
        query,
        headers: &request.headers,
        forward_headers,
    });
    let key = if forward_headers.is_empty() && stream.kind.shares() {
        StreamKey::shared(&route.scope, &upstream.url)
    } else {
        StreamKey::Private
    };
    app.hub.join(
        key,
        &stream.spec,
        &route.metrics,
        last_event_id.as_deref(),
        |out, resume| stream.kind.start(upstream, captures, resume, out),
    )
}

/// `Retry-After` for a refused stream: the route's `retry`, in whole seconds (at least 1).
fn retry_after(route: &Route) -> String {
    route.config.settings.retry.as_secs().max(1).to_string()
}

/// Everything one client's stream holds once pingora's request is done with it.
struct ClientStream {
    client: ClientConnection,
    subscription: Subscription,
    spec: Arc<StreamSpec>,
    ends: Ends,
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
            &self.spec,
            &mut self.ends,
            metrics,
        )
        .await;
        metrics.connections_active.dec();
        metrics.stream_ended(end.reason());
        tracing::debug!(?end, "stream ended");
        drop(self.subscription);
        if end != StreamEnd::ClientGone {
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

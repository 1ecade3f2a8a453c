//! Serving one client on a stream route (sse, poll or websocket — they differ only in the
//! source): admit, find or start the stream, write the SSE head, hand the connection over.

use std::sync::Arc;
use std::time::Instant;

use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::access;
use super::clustered;
use super::downstream::ClientConnection;
use super::respond;
use crate::app::{App, Route, StreamRoute};
use crate::auth::Identity;
use crate::cluster::Slot;
use crate::limits::{Permit, Refusal};
use crate::routes::{query_param, Captures};
use crate::sources::{ClientRequest, UpstreamRequest};
use crate::stream::{writer, Ends, StreamEnd, StreamKey, StreamSpec, Subscription, Tally};

/// Admits the client to `route` and answers with the SSE header; the stream itself then runs
/// in a task of its own (see [`ClientConnection::detach`]). `identity` is who the route's
/// authenticator found (`None` on a public route): its credential's expiry ends the stream.
pub async fn serve(
    app: &App,
    route: &Arc<Route>,
    stream: &StreamRoute,
    captures: Captures,
    identity: Option<Identity>,
    session: &mut Session,
) -> Result<()> {
    if session.req_header().method != http::Method::GET {
        let allow = [("Allow", "GET".to_string())];
        return respond::text(session, 405, "method not allowed: use GET\n", &allow).await;
    }
    let subject = identity.as_ref().and_then(|i| i.subject.as_deref());
    let client = client_identity(app, session, subject);
    let (permit, slot) = match admit(app, route, &client).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            access::stream_refused(&route.config.path, &client, refusal.status, refusal.reason);
            let retry_after = [("Retry-After", retry_after(route))];
            return respond::text(session, refusal.status, refusal.body, &retry_after).await;
        }
    };
    let planned = stream_of(route, stream, &captures, session);
    let subscription = join(app, route, stream, &captures, planned).await;
    let origin = respond::header(session, "origin");
    let cors = respond::cors_headers(&route.config.settings.cors, origin.as_deref());
    write_sse_header(session, &cors).await?;
    let client_stream = ClientStream {
        connection: ClientConnection::detach(session).await,
        subscription,
        spec: stream.spec.clone(),
        ends: Ends {
            stop: route.stop.subscribe(),
            expires: identity.and_then(|i| i.expires),
        },
        route: route.clone(),
        client,
        started: Instant::now(),
        permit,
        slot,
    };
    // Not instrumented with the request's span: entering and leaving it on every poll cost
    // about a tenth of an unshared stream's CPU per event. What the stream logs names its
    // route itself (the access line, and the source's upstream lines).
    tokio::spawn(client_stream.run());
    Ok(())
}

/// Why a stream was refused: its status, metric reason and body.
struct Refused {
    status: u16,
    reason: &'static str,
    body: &'static str,
}

/// The client's identity per `limits.client_id` (`authenticated`: the route's
/// authenticator found this subject).
fn client_identity(app: &App, session: &Session, authenticated: Option<&str>) -> String {
    let request = session.req_header();
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    app.limiter
        .identify(peer, &request.headers, request.uri.query(), authenticated)
}

/// Takes the client's limiter slots (this node's, and in cluster mode the cluster's), or
/// says why not, counted.
async fn admit(
    app: &App,
    route: &Route,
    client: &str,
) -> std::result::Result<(Permit, Option<Slot>), Refused> {
    let refused = |status, reason, body| {
        route.metrics.rejected(reason);
        Refused {
            status,
            reason,
            body,
        }
    };
    if app.is_draining() {
        return Err(refused(
            503,
            "shutting_down",
            "shutting down, retry shortly\n",
        ));
    }
    let route_limit = route.config.per_client;
    let per_client = |reason| refused(429, reason, "too many streams for this client\n");
    let permit = app
        .limiter
        .acquire(client, &route.config.path, route_limit)
        .map_err(|refusal| match refusal {
            Refusal::PerClient => per_client(refusal.reason()),
            Refusal::MaxConnections => {
                refused(503, refusal.reason(), "proxy at its connection limit\n")
            }
        })?;
    let slot = clustered::slot(app, route, client)
        .await
        .map_err(|()| per_client(Refusal::PerClient.reason()))?;
    Ok((permit, slot))
}

/// Subscribes the client to the stream its upstream request leads to, starting it when it
/// is the first (through the cluster when there is one).
async fn join(
    app: &App,
    route: &Route,
    stream: &StreamRoute,
    captures: &Captures,
    (key, upstream, last_event_id): (StreamKey, UpstreamRequest, Option<String>),
) -> Subscription {
    if let (Some(cluster), StreamKey::Shared(_)) = (&app.cluster, &key) {
        let (on, last) = ((route, stream), last_event_id.as_deref());
        return clustered::join(app, cluster, on, key, upstream, captures, last).await;
    }
    app.hub.join(
        key,
        &stream.spec,
        &route.metrics,
        last_event_id.as_deref(),
        |out, resume| stream.kind.start(upstream, captures, resume, out),
    )
}

/// The stream a client's request leads to: its key, its upstream request, and the client's
/// Last-Event-ID.
fn stream_of(
    route: &Route,
    stream: &StreamRoute,
    captures: &Captures,
    session: &Session,
) -> (StreamKey, UpstreamRequest, Option<String>) {
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
        credential_params: route.auth.as_ref().map_or(&[], |g| g.credential_params()),
    });
    let key = if forward_headers.is_empty() && stream.kind.shares() {
        StreamKey::shared(&route.scope, &upstream.url)
    } else {
        StreamKey::Private
    };
    (key, upstream, last_event_id)
}

/// `Retry-After` for a refused stream: the route's `retry`, in whole seconds (at least 1).
pub(super) fn retry_after(route: &Route) -> String {
    route.config.settings.retry.as_secs().max(1).to_string()
}

/// Everything one client's stream holds once pingora's request is done with it.
struct ClientStream {
    connection: ClientConnection,
    subscription: Subscription,
    spec: Arc<StreamSpec>,
    ends: Ends,
    route: Arc<Route>,
    /// The client's identity, for the access log.
    client: String,
    started: Instant,
    /// The client's limiter slots, released when the stream ends, however it ends.
    permit: Permit,
    /// The client's cluster-wide slot (cluster mode), released like the permit.
    slot: Option<Slot>,
}

impl ClientStream {
    /// Streams until the client leaves, lags, or the proxy stops.
    async fn run(mut self) {
        let metrics = &self.route.metrics;
        metrics.connections_total.inc();
        metrics.connections_active.inc();
        let mut tally = Tally::default();
        let end = writer::run(
            &mut self.connection,
            &mut self.subscription,
            &self.spec,
            &mut self.ends,
            metrics,
            &mut tally,
        )
        .await;
        metrics.connections_active.dec();
        metrics.stream_ended(end.reason());
        let (route, elapsed) = (&self.route.config.path, self.started.elapsed());
        let backend = self.subscription.backend();
        access::stream_ended(route, &self.client, &backend, elapsed, tally, end);
        drop(self.subscription);
        if end != StreamEnd::ClientGone {
            self.connection.finish().await;
        }
        drop(self.permit);
        drop(self.slot);
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

//! The `http` route kind: pingora's normal proxy path to a legacy API, round robin over the
//! route's healthy backends. A refused connection marks its backend in the pool and — for
//! `GET` and `HEAD`, before any byte of the response — is retried once on the next backend
//! (pingora calls `upstream_peer` again when `fail_to_connect` sets the error's retry flag).

use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::access;
use crate::app::{Handler, HttpBackend, Route};
use crate::routes::{query_param, query_without};

/// Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Which backend one request went to, and whether it was already retried.
#[derive(Debug, Default)]
pub struct Attempt {
    /// The backend of the current try.
    backend: Option<usize>,
    /// The backend whose connection was refused, when the request is being retried.
    refused: Option<usize>,
    /// Whether the current try's failure has been counted already.
    counted: bool,
}

/// The peer for the next try of an `http` route request: the next backend in turn (DNS
/// resolved per request), other than one that just refused it. No usable backend: 502 at
/// once, nothing is tried.
pub async fn peer(backend: &HttpBackend, attempt: &mut Attempt) -> Result<Box<HttpPeer>> {
    let Some(index) = backend.pool.round_robin(attempt.refused) else {
        let explain = "no backend passes its health check";
        return Err(upstream_error(ErrorType::ConnectNoRoute, explain));
    };
    attempt.backend = Some(index);
    attempt.counted = false;
    let uri = &backend.route.upstream.urls[index];
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or("localhost").to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next());
    let Some(addr) = addr else {
        let error = upstream_error(ErrorType::ConnectNoRoute, "cannot resolve upstream");
        backend.pool.refused(index);
        count_failure(backend, attempt, "resolve", &error);
        return Err(error);
    };
    let mut peer = HttpPeer::new(addr, tls, host);
    peer.options.tcp_keepalive = Some(crate::keepalive::settings());
    Ok(Box::new(peer))
}

/// A pingora error blamed on the upstream (so pingora answers 502).
fn upstream_error(kind: ErrorType, explain: &'static str) -> Box<Error> {
    let mut error = Error::explain(kind, explain);
    error.esource = ErrorSource::Upstream;
    error
}

/// A connection to the chosen backend failed: it is counted, its pool skips it from now on,
/// its outage is logged once, and a `GET` or `HEAD` is retried once on the next backend.
pub fn fail_to_connect(
    backend: &HttpBackend,
    method: &http::Method,
    attempt: &mut Attempt,
    mut error: Box<Error>,
) -> Box<Error> {
    let Some(index) = attempt.backend else {
        return error;
    };
    backend.pool.refused(index);
    count_failure(backend, attempt, reason(&error), &error);
    let idempotent = method == http::Method::GET || method == http::Method::HEAD;
    if idempotent && attempt.refused.is_none() && backend.pool.count() > 1 {
        attempt.refused = Some(index);
        error.set_retry(true);
    }
    error
}

/// Counts the failure of the current try against its backend, once, and logs it at `warn`
/// when it is the first of the backend's outage.
fn count_failure(
    backend: &HttpBackend,
    attempt: &mut Attempt,
    reason: &'static str,
    error: &Error,
) {
    let Some(index) = attempt.backend.filter(|_| !attempt.counted) else {
        return;
    };
    attempt.counted = true;
    if backend.failed(index, reason) {
        let (route, label) = (backend.metrics.route(), &**backend.pool.label(index));
        tracing::warn!(route, backend = label, reason, %error, "http backend failing");
    }
}

/// The `reason` label of `upstream_errors_total` for a pingora error.
fn reason(error: &Error) -> &'static str {
    use ErrorType::*;
    match error.etype() {
        ConnectTimedout => "connect_timeout",
        ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => "connect",
        TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => "tls",
        ReadTimedout | WriteTimedout => "timeout",
        ReadError | WriteError | ConnectionClosed => "read",
        InvalidHTTPHeader | H1Error | H2Error | H2Downgrade | InvalidH2 => "protocol",
        _ => "other",
    }
}

/// Prefixes the chosen backend's base path, takes the `credential_params` out of the query,
/// sets its Host, and strips hop-by-hop headers.
pub fn rewrite(
    backend: &HttpBackend,
    attempt: &Attempt,
    credential_params: &[String],
    request: &mut RequestHeader,
) -> Result<()> {
    let index = attempt
        .backend
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no backend chosen"))?;
    let uri = &backend.route.upstream.urls[index];
    let base = uri.path().trim_end_matches('/');
    if let Some(joined) = upstream_target(base, &request.uri, credential_params) {
        request.set_uri(
            joined
                .parse()
                .map_err(|_| Error::explain(ErrorType::InternalError, "bad upstream path"))?,
        );
    }
    if let Some(authority) = uri.authority() {
        request.insert_header("Host", authority.as_str())?;
    }
    for name in hop_by_hop_names(&request.headers) {
        request.remove_header(&name);
    }
    Ok(())
}

/// The request target to send upstream, when it differs from the client's: `base` before
/// the path, and the query without its credential parameters.
fn upstream_target(base: &str, uri: &http::Uri, credential_params: &[String]) -> Option<String> {
    let query = uri.query();
    let has_credential = query.is_some_and(|q| {
        credential_params
            .iter()
            .any(|n| query_param(q, n).is_some())
    });
    if base.is_empty() && !has_credential {
        return None;
    }
    let path_and_query = match query {
        Some(_) if has_credential => {
            let is_credential = |name: &str| credential_params.iter().any(|p| p == name);
            match query_without(query, is_credential) {
                kept if kept.is_empty() => uri.path().to_string(),
                kept => format!("{}?{kept}", uri.path()),
            }
        }
        _ => uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
    };
    Some(format!("{base}{path_and_query}"))
}

/// The hop-by-hop headers present, including those a `Connection` header names.
pub fn hop_by_hop_names(headers: &http::HeaderMap) -> Vec<String> {
    let named = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase());
    HOP_BY_HOP
        .iter()
        .map(|name| name.to_string())
        .chain(named)
        .filter(|name| headers.contains_key(name.as_str()))
        .collect()
}

/// Counts and logs one finished request of an `http` route. A request the backend failed
/// is counted against it and logged at `warn` for the first of an outage (with pingora's
/// error, which names the OS error), and the next answer at `info`.
pub fn finished(
    session: &Session,
    error: Option<&Error>,
    route: &Route,
    attempt: &mut Attempt,
    elapsed: Duration,
) {
    let Handler::Http(backend) = &route.handler else {
        return;
    };
    let status = session.response_written().map_or(0, |h| h.status.as_u16());
    route.metrics.http_request(status, elapsed);
    match error {
        Some(error) if *error.esource() == ErrorSource::Upstream => {
            count_failure(backend, attempt, reason(error), error);
        }
        Some(_) => {}
        None => recovered(backend, attempt),
    }
    let label = attempt.backend.map(|index| backend.pool.label(index));
    let client = session
        .client_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let request = session.req_header();
    access::http_request(&access::HttpRequest {
        route: &route.config.path,
        client: &client,
        method: request.method.as_str(),
        path: request.uri.path(),
        status,
        duration: elapsed,
        bytes: session.body_bytes_sent(),
        backend: label.map_or("", |label| &**label),
    });
}

/// The backend answered: the end of its outage is logged at `info`, once.
fn recovered(backend: &HttpBackend, attempt: &Attempt) {
    let Some(index) = attempt.backend else {
        return;
    };
    if backend.answered(index) {
        let (route, label) = (backend.metrics.route(), &**backend.pool.label(index));
        tracing::info!(route, backend = label, "http backend recovered");
    }
}

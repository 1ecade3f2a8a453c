//! The `http` route kind: pingora's normal proxy path to a legacy API.

use std::sync::atomic::Ordering;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use super::access;
use crate::app::{Handler, Route};
use crate::config::HttpRoute;

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

/// The peer for an `http` route (DNS resolved per request).
pub async fn peer(upstream: &HttpRoute) -> Result<Box<HttpPeer>> {
    let uri = &upstream.upstream.urls[0];
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or("localhost").to_string();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "cannot resolve upstream"))?;
    Ok(Box::new(HttpPeer::new(addr, tls, host)))
}

/// Prefixes the upstream's base path, sets its Host, and strips hop-by-hop headers.
pub fn rewrite(upstream: &HttpRoute, request: &mut RequestHeader) -> Result<()> {
    let uri = &upstream.upstream.urls[0];
    let base = uri.path().trim_end_matches('/');
    if !base.is_empty() {
        let path_and_query = request.uri.path_and_query().map_or("/", |p| p.as_str());
        let joined = format!("{base}{path_and_query}");
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
/// is logged at `warn` for the first of an outage (with pingora's error, which names the
/// OS error), and the next answer at `info`.
pub fn finished(session: &Session, error: Option<&Error>, route: &Route, elapsed: Duration) {
    let Handler::Http(backend) = &route.handler else {
        return;
    };
    let status = session.response_written().map_or(0, |h| h.status.as_u16());
    route.metrics.http_request(status, elapsed);
    let upstream = backend.route.upstream.urls[0].to_string();
    let path = &route.config.path;
    match error.filter(|e| *e.esource() == ErrorSource::Upstream) {
        Some(error) if !backend.failing.swap(true, Ordering::Relaxed) => {
            tracing::warn!(route = %path, upstream, %error, "http backend failing");
        }
        Some(_) => {}
        None if backend.failing.swap(false, Ordering::Relaxed) => {
            tracing::info!(route = %path, upstream, "http backend recovered");
        }
        None => {}
    }
    let client = session
        .client_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let request = session.req_header();
    access::http_request(&access::HttpRequest {
        route: path,
        client: &client,
        method: request.method.as_str(),
        path: request.uri.path(),
        status,
        duration: elapsed,
        bytes: session.body_bytes_sent(),
        backend: &upstream,
    });
}

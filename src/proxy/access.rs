//! The access log: one line per stream end, per refused stream and per `http` route
//! request, at `info` on target `sse_edge::access`, as structured fields. Paths are logged
//! without their query string, and a client identity that could be a credential (an API
//! key, a token, a cookie) only as a short hash.

use std::time::Duration;

use crate::stream::{StreamEnd, Tally};

/// A stream that was served and has ended; `backend` fed it last.
pub fn stream_ended(
    route: &str,
    client: &str,
    backend: &str,
    duration: Duration,
    tally: Tally,
    end: StreamEnd,
) {
    tracing::info!(
        target: "sse_edge::access",
        route,
        client = %loggable(client),
        backend,
        status = 200,
        duration_ms = duration.as_millis() as u64,
        events = tally.events,
        bytes = tally.bytes,
        reason = end.reason(),
        "stream"
    );
}

/// A stream request answered with an error status instead.
pub fn stream_refused(route: &str, client: &str, status: u16, reason: &str) {
    tracing::info!(
        target: "sse_edge::access",
        route,
        client = %loggable(client),
        status,
        duration_ms = 0u64,
        events = 0u64,
        bytes = 0u64,
        reason,
        "stream refused"
    );
}

/// One `http` route request, proxied (or failed) by pingora.
pub struct HttpRequest<'a> {
    /// The route's configured path.
    pub route: &'a str,
    /// The client's address.
    pub client: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request path, with or without its query (the query is cut here).
    pub path: &'a str,
    /// The status sent to the client (0: none).
    pub status: u16,
    /// From the request to the end of the response.
    pub duration: Duration,
    /// Response body bytes sent.
    pub bytes: usize,
    /// The upstream that answered, if one was chosen.
    pub backend: &'a str,
}

/// Logs one `http` route request.
pub fn http_request(request: &HttpRequest) {
    tracing::info!(
        target: "sse_edge::access",
        route = request.route,
        client = request.client,
        method = request.method,
        path = without_query(request.path),
        status = request.status,
        duration_ms = request.duration.as_millis() as u64,
        bytes = request.bytes,
        backend = request.backend,
        "http"
    );
}

/// A path without its query string: queries carry tokens.
pub fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(path, _)| path)
}

/// A client identity fit for a log line: addresses as they are, keyed identities (which may
/// be credentials) as `key#` and 8 hex digits of a hash.
fn loggable(identity: &str) -> std::borrow::Cow<'_, str> {
    use std::hash::{Hash, Hasher};
    match identity.strip_prefix("key:") {
        Some(key) => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            format!("key#{:08x}", hasher.finish() as u32).into()
        }
        None => identity.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_keys_never_reach_the_log() {
        assert_eq!(without_query("/api/x?token=secret"), "/api/x");
        assert_eq!(without_query("/api/x"), "/api/x");
        assert_eq!(loggable("ip:10.0.0.1"), "ip:10.0.0.1");
        let hashed = loggable("key:secret-api-key");
        assert!(
            hashed.starts_with("key#") && !hashed.contains("secret"),
            "{hashed}"
        );
        assert_eq!(
            hashed,
            loggable("key:secret-api-key"),
            "stable within a process"
        );
    }
}

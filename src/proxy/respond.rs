//! Responses the proxy writes itself: short text errors, CORS headers and preflights.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::config::Cors;

/// Writes a complete short `text/plain` response.
pub async fn text(
    session: &mut Session,
    status: u16,
    body: &str,
    extra: &[(&'static str, String)],
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header("Content-Type", "text/plain; charset=utf-8")?;
    header.insert_header("Content-Length", body.len().to_string())?;
    header.insert_header("Cache-Control", "no-store")?;
    for (name, value) in extra {
        header.insert_header(*name, value.as_str())?;
    }
    session.set_keepalive(None);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(Bytes::copy_from_slice(body.as_bytes())), true)
        .await
}

/// The `Access-Control-Allow-*` headers for a request from `origin`, or none when the
/// origin is not allowed.
pub fn cors_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(origin) = origin else {
        return Vec::new();
    };
    let any = cors.allow_origins.iter().any(|o| o == "*");
    if !any && !cors.allow_origins.iter().any(|o| o == origin) {
        return Vec::new();
    }
    let mut headers = Vec::new();
    if any && !cors.allow_credentials {
        headers.push(("Access-Control-Allow-Origin", "*".to_string()));
    } else {
        headers.push(("Access-Control-Allow-Origin", origin.to_string()));
        headers.push(("Vary", "Origin".to_string()));
    }
    if cors.allow_credentials {
        headers.push(("Access-Control-Allow-Credentials", "true".to_string()));
    }
    headers
}

/// Answers a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
pub async fn preflight(session: &mut Session, cors: &Cors) -> Result<()> {
    let origin = header(session, "origin");
    let mut headers = cors_headers(cors, origin.as_deref());
    if headers.is_empty() {
        return text(session, 403, "origin not allowed\n", &[]).await;
    }
    headers.push(("Access-Control-Allow-Methods", "GET, OPTIONS".to_string()));
    let requested = header(session, "access-control-request-headers");
    headers.push((
        "Access-Control-Allow-Headers",
        requested.unwrap_or_else(|| "Last-Event-ID, Cache-Control".to_string()),
    ));
    headers.push(("Access-Control-Max-Age", "600".to_string()));
    let mut header = ResponseHeader::build(204, Some(headers.len()))?;
    for (name, value) in headers {
        header.insert_header(name, value)?;
    }
    session.set_keepalive(None);
    session.write_response_header(Box::new(header), true).await
}

/// A request header as text.
pub fn header(session: &Session, name: &str) -> Option<String> {
    session
        .req_header()
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

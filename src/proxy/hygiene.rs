//! Requests refused before any routing: a malformed request line, an HTTP/1.1 request
//! without `Host` (RFC 9112 §3.2), oversize header blocks. Nothing of them goes upstream.
//!
//! Ambiguous framing needs no check here: pingora drops `Content-Length` when
//! `Transfer-Encoding` is also present (RFC 9112 §6.3) and closes the connection after the
//! response, rejects HTTP/1.0 requests with `Transfer-Encoding` outright, and refuses a
//! second `Host` field.

use pingora::proxy::Session;

/// Why a request is refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status answered.
    pub status: u16,
    /// The short text body.
    pub body: &'static str,
    /// The `sse_edge_requests_refused_total` reason.
    pub reason: &'static str,
}

/// Why `session`'s request is refused, if it is.
pub fn refusal(session: &Session, max_header_bytes: usize) -> Option<Refusal> {
    let request = session.req_header();
    if super::heads::bad_request_line(session) {
        return Some(Refusal {
            status: 400,
            body: "malformed request line\n",
            reason: "bad_request_line",
        });
    }
    if request.version == http::Version::HTTP_11
        && !request.headers.contains_key(http::header::HOST)
    {
        return Some(Refusal {
            status: 400,
            body: "an HTTP/1.1 request needs a Host header\n",
            reason: "missing_host",
        });
    }
    let header_bytes: usize = request
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + request.uri.to_string().len();
    if header_bytes > max_header_bytes {
        return Some(Refusal {
            status: 431,
            body: "request header fields too large\n",
            reason: "headers_too_large",
        });
    }
    None
}

//! Requests refused before any routing: oversize header blocks.
//!
//! Ambiguous framing needs no check here: pingora drops `Content-Length` when
//! `Transfer-Encoding` is also present (RFC 9112 §6.3) and closes the connection after the
//! response, and rejects HTTP/1.0 requests with `Transfer-Encoding` outright.

use pingora::http::RequestHeader;

/// Why a request is refused at the edge, as a status and a short reason.
pub fn refusal(request: &RequestHeader, max_header_bytes: usize) -> Option<(u16, &'static str)> {
    let header_bytes: usize = request
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + request.uri.to_string().len();
    if header_bytes > max_header_bytes {
        return Some((431, "request header fields too large\n"));
    }
    None
}

//! Why an upstream attempt failed, for every source kind: [`SourceError::reason`] is the
//! `upstream_errors_total` label (a fixed set), and `Display` is the log line, with the OS,
//! HTTP or protocol error inside.

/// One failed attempt at an upstream: a connection that ended or a poll that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The URL could not be used or its host resolved.
    #[error("cannot resolve the upstream: {0}")]
    Resolve(String),
    /// Connecting or sending the request failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Reading the response failed.
    #[error("read failed: {0}")]
    Read(String),
    /// The request did not complete in time.
    #[error("timed out")]
    Timeout,
    /// The upstream answered with a non-2xx status.
    #[error("answered status {0}")]
    Status(u16),
    /// An SSE upstream answered with another content type.
    #[error("answered Content-Type {0:?}, not text/event-stream")]
    ContentType(String),
    /// The upstream ended the stream.
    #[error("the upstream closed the stream")]
    Eof,
    /// An sse upstream sent nothing for `upstream_idle_timeout`.
    #[error("no byte within upstream_idle_timeout")]
    IdleTimeout,
    /// A polled body was larger than `max_body_bytes`.
    #[error("body larger than max_body_bytes")]
    TooLarge,
    /// Polled JSON nested deeper than `max_depth`.
    #[error("JSON nested deeper than max_depth")]
    TooDeep,
    /// A polled body was not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A text body or message was not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// The WebSocket URL or upgrade request could not be formed.
    #[error("unusable WebSocket URL: {0}")]
    Url(String),
    /// The TLS handshake failed (e.g. an untrusted certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The WebSocket upgrade failed for another reason.
    #[error("WebSocket handshake: {0}")]
    Handshake(String),
    /// The WebSocket connect and handshake took too long.
    #[error("connect timed out")]
    ConnectTimeout,
    /// Sending the `subscribe` message took too long.
    #[error("sending the subscribe message timed out")]
    SubscribeTimeout,
    /// A WebSocket upstream did not answer a ping in time.
    #[error("no pong within ping_interval")]
    PingTimeout,
    /// A WebSocket upstream closed the socket.
    #[error("the upstream closed the socket")]
    Closed,
    /// A WebSocket message was larger than `max_message_bytes`.
    #[error("message larger than max_message_bytes")]
    MessageTooLarge,
    /// A WebSocket protocol violation.
    #[error("WebSocket protocol: {0}")]
    Protocol(String),
    /// An I/O error on an open WebSocket.
    #[error("I/O: {0}")]
    Io(String),
    /// Any other WebSocket error.
    #[error("WebSocket: {0}")]
    Other(String),
    /// The route's `ca_file` could not be loaded, so nothing can connect.
    #[error("ca_file: {0}")]
    CaFile(String),
    /// Every backend of the route's pool fails its health check: nothing was attempted.
    #[error("no backend passes its health check")]
    NoBackend,
}

impl SourceError {
    /// The `reason` label value.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Resolve(_) => "resolve",
            SourceError::Connect(_) => "connect",
            SourceError::Read(_) => "read",
            SourceError::Timeout => "timeout",
            SourceError::Status(_) => "status",
            SourceError::ContentType(_) => "content_type",
            SourceError::Eof => "eof",
            SourceError::IdleTimeout => "idle_timeout",
            SourceError::TooLarge => "too_large",
            SourceError::TooDeep => "too_deep",
            SourceError::InvalidJson(_) => "invalid_json",
            SourceError::InvalidUtf8 => "invalid_utf8",
            SourceError::Url(_) => "url",
            SourceError::Tls(_) => "tls",
            SourceError::Handshake(_) => "handshake",
            SourceError::ConnectTimeout => "connect_timeout",
            SourceError::SubscribeTimeout => "subscribe_timeout",
            SourceError::PingTimeout => "ping_timeout",
            SourceError::Closed => "closed",
            SourceError::MessageTooLarge => "message_too_large",
            SourceError::Protocol(_) => "protocol",
            SourceError::Io(_) => "io",
            SourceError::Other(_) => "other",
            SourceError::CaFile(_) => "ca_file",
            SourceError::NoBackend => "no_backend",
        }
    }

    /// Whether the backend could not be reached at all (refused, unresolvable, no connection
    /// in time): its pool skips it until it is back.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            SourceError::Resolve(_) | SourceError::Connect(_) | SourceError::ConnectTimeout
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_exported_from_the_start() {
        let text = || String::from("x");
        let every = [
            SourceError::Resolve(text()),
            SourceError::Connect(text()),
            SourceError::Read(text()),
            SourceError::Timeout,
            SourceError::Status(500),
            SourceError::ContentType(text()),
            SourceError::Eof,
            SourceError::TooLarge,
            SourceError::TooDeep,
            SourceError::InvalidJson(text()),
            SourceError::InvalidUtf8,
            SourceError::Url(text()),
            SourceError::Tls(text()),
            SourceError::Handshake(text()),
            SourceError::ConnectTimeout,
            SourceError::SubscribeTimeout,
            SourceError::PingTimeout,
            SourceError::Closed,
            SourceError::MessageTooLarge,
            SourceError::Protocol(text()),
            SourceError::Io(text()),
            SourceError::Other(text()),
            SourceError::CaFile(text()),
            SourceError::NoBackend,
        ];
        for error in every {
            let reason = error.reason();
            assert!(
                crate::metrics::UPSTREAM_ERROR_REASONS.contains(&reason),
                "{reason} is not in UPSTREAM_ERROR_REASONS"
            );
        }
    }
}

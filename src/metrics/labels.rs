//! The known label values of every labelled family (SPEC §5): each is exported at 0 for
//! every route from the first scrape, so dashboards and alerts see a series before its
//! first incident. The code that counts checks, in its tests, that it uses no other value.

/// Every `reason` of `stream_ends_total` (SPEC §5).
pub const STREAM_END_REASONS: [&str; 7] = [
    "client_closed",
    "upstream_ended",
    "slow_client",
    "lifetime",
    "shutdown",
    "reload",
    "token_expired",
];

/// Every `reason` of `connections_rejected_total`.
pub const REJECTION_REASONS: [&str; 6] = [
    "per_client",
    "max_connections",
    "shutting_down",
    "unauthenticated",
    "forbidden",
    "auth_unavailable",
];

/// Every `reason` of `upstream_errors_total`: the sources' errors (`SourceError::reason`)
/// and what the stream itself refuses.
pub const UPSTREAM_ERROR_REASONS: [&str; 28] = [
    "resolve",
    "connect",
    "read",
    "timeout",
    "status",
    "content_type",
    "eof",
    "too_large",
    "too_deep",
    "invalid_json",
    "invalid_utf8",
    "url",
    "tls",
    "handshake",
    "connect_timeout",
    "subscribe_timeout",
    "ping_timeout",
    "closed",
    "message_too_large",
    "protocol",
    "io",
    "other",
    "ca_file",
    "no_backend",
    "idle_timeout",
    "oversize_event",
    "unsafe_field",
    "binary_dropped",
];

/// Why a request is refused before routing: every `reason` of `requests_refused_total`.
pub const REFUSAL_REASONS: [&str; 4] = [
    "bad_request_line",
    "missing_host",
    "headers_too_large",
    "header_timeout",
];

/// Every `result` of `polls_total`.
pub const POLL_RESULTS: [&str; 4] = ["changed", "unchanged", "not_modified", "error"];

/// Every `result` of `auth_decisions_total`.
pub const AUTH_RESULTS: [&str; 4] = ["allowed", "unauthenticated", "forbidden", "error"];

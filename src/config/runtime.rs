//! The validated configuration the rest of the proxy runs with: every default applied, every
//! URL checked, one type per route kind named for what it is. The small value enums here
//! (`Emit`, `Content`, ...) are also what the file schema parses into.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::auth::{AuthenticatorConfig, RouteAuth};
use crate::routes::{PathPattern, Template};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// SSE/HTTP listeners.
    pub listeners: Vec<Listener>,
    /// Admin listener address.
    pub admin_listen: String,
    /// Connection limits.
    pub limits: Limits,
    /// Time streams get to close on shutdown.
    pub shutdown_grace: Duration,
    /// Time `/readyz` answers 503 on SIGTERM before anything stops.
    pub drain_delay: Duration,
    /// Where `--upgrade` receives the listening sockets.
    pub upgrade_sock: String,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Routes, in match order.
    pub routes: Vec<RouteConfig>,
    /// Named authenticators.
    pub auth: BTreeMap<String, AuthenticatorConfig>,
    /// The Redis the instances of a cluster share; `None`: a single instance.
    pub cluster: Option<ClusterConfig>,
}

/// Validated `cluster:` (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis URL.
    pub redis: String,
    /// The prefix of every key.
    pub prefix: String,
    /// How long a lease or a client slot outlives its node.
    pub lease: Duration,
}

/// One SSE/HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `host:port` to bind.
    pub addr: String,
    /// Certificate and key files: an HTTPS listener with ALPN `h2`, `http/1.1`.
    pub tls: Option<TlsFiles>,
    /// Accept cleartext HTTP/2 (prior knowledge).
    pub h2c: bool,
}

/// Certificate and key files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines (colour only when standard error is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Validated `limits:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open streams for the whole proxy.
    pub max_connections: usize,
    /// Concurrent streams per client identity.
    pub per_client: usize,
    /// How a client is identified.
    pub client_id: ClientIdSource,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Bytes queued for one client before the slow-client policy applies.
    pub max_lag: u64,
    /// The slow-client policy.
    pub slow_client_policy: SlowClientPolicy,
    /// Largest request header block.
    pub max_header_bytes: usize,
    /// How long a request head may take to arrive; `None`: unlimited.
    pub header_timeout: Option<Duration>,
}

/// Where a client's identity comes from (`limits.client_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdSource {
    /// The connecting address (or the forwarded one from a trusted proxy).
    PeerIp,
    /// A request header, e.g. an API key.
    Header(String),
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
    /// The authenticated identity (JWT `sub`, forward auth's `identity_header`); the address
    /// on public routes.
    Auth,
}

/// What to do with a client whose queue passed `max_lag`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowClientPolicy {
    /// Close the stream; the client reconnects and resumes from its Last-Event-ID.
    #[default]
    Disconnect,
    /// Skip the client's oldest queued events until it is back under the limit.
    DropOldest,
}

/// One validated route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// The configured `path:` — also the `route` metric label.
    pub path: String,
    /// The compiled path pattern.
    pub pattern: PathPattern,
    /// What the route serves.
    pub kind: RouteKind,
    /// Stream settings after applying `defaults`.
    pub settings: RouteSettings,
    /// The route's own `per_client`, when it tightens the global one.
    pub per_client: Option<usize>,
    /// Request headers passed upstream (route level and kind level together); a route
    /// that forwards any gives every client its own upstream.
    pub forward_headers: Vec<String>,
    /// The route's authentication; `None` for a public route.
    pub auth: Option<RouteAuth>,
}

impl RouteConfig {
    /// Whether `other` serves the same streams: the same path, kind block, settings,
    /// forwarded headers and authentication (streams admitted under other rules end). The route's `per_client` does not count — a limit applies to new
    /// admissions only — so a reload that changes just it keeps the route's open streams.
    pub fn serves_same_streams(&self, other: &RouteConfig) -> bool {
        self.path == other.path
            && self.kind == other.kind
            && self.settings == other.settings
            && self.forward_headers == other.forward_headers
            && self.auth == other.auth
    }
}

/// A route serves a stream, or proxies plain HTTP.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    /// One of the SSE kinds.
    Stream(StreamSource),
    /// Plain reverse proxy.
    Http(HttpRoute),
}

/// Where a stream route's events come from.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamSource {
    /// Proxy an upstream SSE stream.
    Sse(SseRoute),
    /// Poll a JSON/text endpoint.
    Poll(PollRoute),
    /// Turn a WebSocket feed into SSE.
    WebSocket(WebSocketRoute),
}

impl RouteKind {
    /// The kind's key in the file (`sse`, `poll`, `websocket`, `http`).
    pub fn name(&self) -> &'static str {
        match self {
            RouteKind::Stream(StreamSource::Sse(_)) => "sse",
            RouteKind::Stream(StreamSource::Poll(_)) => "poll",
            RouteKind::Stream(StreamSource::WebSocket(_)) => "websocket",
            RouteKind::Http(_) => "http",
        }
    }
}

/// Stream settings with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    /// Idle time before a heartbeat comment; `None` disables.
    pub heartbeat: Option<Duration>,
    /// Base `retry:` value.
    pub retry: Duration,
    /// Events kept for resume.
    pub replay: usize,
    /// Largest upstream event.
    pub max_event_bytes: usize,
    /// CORS policy.
    pub cors: Cors,
    /// Stream lifetime before a jittered close; `None` = unlimited.
    pub max_lifetime: Option<Duration>,
    /// How long the upstream outlives its last subscriber.
    pub linger: Duration,
    /// Whether to tell clients about upstream failures.
    pub upstream_error_event: bool,
}

/// CORS settings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Allowed `Origin` values; `"*"` allows any. Default `["*"]`.
    #[serde(default = "any_origin")]
    pub allow_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (the origin is then echoed, never `*`).
    #[serde(default)]
    pub allow_credentials: bool,
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            allow_origins: any_origin(),
            allow_credentials: false,
        }
    }
}

fn any_origin() -> Vec<String> {
    vec!["*".to_string()]
}

/// Extra request headers a route sends upstream, as configured.
pub type ExtraHeaders = Vec<(String, String)>;

/// An `sse:` route: proxy an upstream `text/event-stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseRoute {
    /// Upstream URL templates with `{name}` placeholders: one, or a pool.
    pub upstream: Upstreams<Template>,
    /// Identical requests share one upstream stream.
    pub share: bool,
    /// Silence after which the upstream is reconnected; `None`: never.
    pub upstream_idle_timeout: Option<Duration>,
    /// Extra request headers.
    pub headers: ExtraHeaders,
    /// PEM file of an extra CA to trust for `https://` upstreams.
    pub ca_file: Option<String>,
}

/// A `poll:` route: turn a polled endpoint into a stream of changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollRoute {
    /// Endpoint URL templates with `{name}` placeholders: one, or a pool.
    pub url: Upstreams<Template>,
    /// Time between polls.
    pub interval: Duration,
    /// How changes are sent.
    pub emit: Emit,
    /// SSE event name for changes (`None`: `message`, or `patch` in the patch modes).
    pub event: Option<String>,
    /// What the endpoint returns.
    pub content: Content,
    /// Largest accepted response body.
    pub max_body_bytes: u64,
    /// Deepest accepted JSON nesting.
    pub max_depth: usize,
    /// Extra request headers.
    pub headers: ExtraHeaders,
    /// PEM file of an extra CA to trust for `https://` upstreams.
    pub ca_file: Option<String>,
}

/// How a polled document's changes are sent.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// The whole document on every change.
    #[default]
    Snapshot,
    /// RFC 6902 operations from the previous document.
    JsonPatch,
    /// An RFC 7396 merge patch from the previous document.
    MergePatch,
}

/// What a polled endpoint returns.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// JSON documents (validated, diffed).
    #[default]
    Json,
    /// Any text; sent as a snapshot on every change.
    Text,
}

/// A `websocket:` route: turn a WebSocket feed into SSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSocketRoute {
    /// `ws://` or `wss://` URL templates with `{name}` placeholders: one, or a pool.
    pub url: Upstreams<Template>,
    /// Text sent after every (re)connect, with `{name}` placeholders.
    pub subscribe: Option<Template>,
    /// How each message becomes an event.
    pub mapping: MessageMapping,
    /// `Sec-WebSocket-Protocol` to request.
    pub subprotocol: Option<String>,
    /// Extra request headers on the upgrade request.
    pub headers: ExtraHeaders,
    /// Largest accepted message (and frame).
    pub max_message_bytes: usize,
    /// Ping after this much silence; `None` disables.
    pub ping_interval: Option<Duration>,
    /// PEM file of an extra CA to trust for `wss://` upstreams.
    pub ca_file: Option<String>,
}

/// The JSON pointers and binary policy that turn a WebSocket message into an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMapping {
    /// Pointer to the SSE event name.
    pub event_from: Option<String>,
    /// Pointer to the SSE id.
    pub id_from: Option<String>,
    /// Pointer to the payload.
    pub data_from: Option<String>,
    /// What happens to binary frames.
    pub binary: BinaryPolicy,
}

/// What happens to binary WebSocket frames.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BinaryPolicy {
    /// Sent as base64 text.
    #[default]
    Base64,
    /// Dropped and counted.
    Drop,
}

/// An `http:` route: plain reverse proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// Upstream base URLs (one, or a pool used round-robin); the request path is appended to
    /// the chosen one's path.
    pub upstream: Upstreams<http::Uri>,
}

/// The backends of a route — one URL or a pool of them — and how they are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams<T> {
    /// The configured URLs, in file order; never empty.
    pub urls: Vec<T>,
    /// Active checks; `None`: backends are judged by their connections alone.
    pub health_check: Option<HealthCheck>,
}

impl<T> Upstreams<T> {
    /// The first URL: a stream's key in the pool is its URL on this backend. Validation
    /// refuses an empty list.
    pub fn first(&self) -> &T {
        &self.urls[0]
    }
}

/// A configured upstream URL as its backend is named in metrics and logs (the `backend`
/// label): without its query, which may carry a credential, and without a trailing `/`.
pub fn backend_name(url: &str) -> &str {
    let name = url.split_once('?').map_or(url, |(name, _)| name);
    name.trim_end_matches('/')
}

/// A validated `health_check:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path to `GET` (a 2xx passes); `None` on a websocket route: a TCP (or TLS) connect.
    pub path: Option<String>,
    /// Time between checks.
    pub interval: Duration,
    /// How long one check may take to connect and to answer.
    pub timeout: Duration,
}

//! The YAML schema, exactly as users write it. Every struct rejects unknown keys, and every
//! field's doc comment is the user's reference (the README's configuration table follows it).
//!
//! File-level types keep `Option`s so `defaults` and per-route overrides can be merged.
//! Nothing here leaves `config/`: validation turns it into the runtime types.

use std::collections::BTreeMap;
use std::time::Duration;

use bytesize::ByteSize;
use ipnet::IpNet;
use serde::Deserialize;

use super::auth::model::{AuthChoiceFile, AuthenticatorFile};
use super::runtime::{BinaryPolicy, Content, Cors, Emit, LogFormat, SlowClientPolicy, TlsFiles};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The SSE/HTTP listener(s). Default `0.0.0.0:8080`.
    #[serde(default)]
    pub listen: Option<Listen>,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub admin: Option<AdminFile>,
    /// Settings every route inherits.
    #[serde(default)]
    pub defaults: Tunables,
    /// Connection limits and the slow-client policy.
    #[serde(default)]
    pub limits: LimitsFile,
    /// How long SIGTERM/SIGINT waits for streams to close on an event boundary. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    /// SIGTERM/SIGINT: how long `/readyz` answers 503 while everything still works, before
    /// anything stops (set it to the balancer's health-check period). Default `0s`.
    #[serde(default, with = "humantime_serde")]
    pub drain_delay: Option<Duration>,
    /// Where `--upgrade` receives the listening sockets from the running process.
    /// Default `/tmp/sse-edge-upgrade.sock`.
    pub upgrade_sock: Option<String>,
    /// `text` or `json` (one JSON object per line). Default `text`.
    pub log_format: Option<LogFormat>,
    /// The routes, matched in order. Required.
    pub routes: Vec<RouteFile>,
    /// Named authenticators that routes choose with `auth:` (SPEC §8).
    #[serde(default)]
    pub auth: BTreeMap<String, AuthenticatorFile>,
    /// Several instances sharing upstreams, replay and limits through Redis (SPEC §9).
    /// Absent or empty: one instance, nothing shared.
    #[serde(default)]
    pub cluster: Option<ClusterFile>,
}

/// The `cluster:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `redis://[user:password@]host:port[/db]` of a Redis >= 7 (or Valkey).
    pub redis: Option<String>,
    /// Key namespace, so several deployments can share one Redis. Default `sse-edge:`.
    pub prefix: Option<String>,
    /// How long a node's claim (a stream's lease, a client's slot) outlives the node.
    /// Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub lease: Option<Duration>,
}

/// `listen:` is one address or a list of listener entries.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected \"ADDR:PORT\" or { addr, tls, h2c }, or a list of them (e.g. listen: 0.0.0.0:8080)"
)]
pub enum Listen {
    /// `listen: 0.0.0.0:8080`
    One(String),
    /// `listen: [ "0.0.0.0:8080", { addr: ..., tls: ... } ]`
    Many(Vec<ListenEntry>),
}

/// One entry of a `listen:` list.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected \"ADDR:PORT\" or { addr, tls, h2c } (tls: { cert, key })"
)]
pub enum ListenEntry {
    /// A plain cleartext address.
    Addr(String),
    /// An address with options.
    Full(ListenerFile),
}

/// A listener with TLS or h2c options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerFile {
    /// `host:port` to bind.
    pub addr: String,
    /// PEM certificate and key; makes this an HTTPS listener with ALPN `h2`, `http/1.1`.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Accept cleartext HTTP/2 (prior knowledge), for use behind a TLS-terminating balancer.
    #[serde(default)]
    pub h2c: bool,
}

/// The admin block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Admin listener address. Default `127.0.0.1:9090`.
    pub listen: Option<String>,
}

/// The `limits:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Open streams for the whole proxy; over it `503`. Default `100000`.
    pub max_connections: Option<usize>,
    /// Concurrent streams per client identity; over it `429`. Default `8`.
    pub per_client: Option<usize>,
    /// `peer_ip` | `header:NAME` | `query:NAME` | `cookie:NAME`. Default `peer_ip`.
    pub client_id: Option<String>,
    /// CIDRs whose `X-Forwarded-For` / `Forwarded` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Per-client queue limit and what happens past it.
    #[serde(default)]
    pub slow_client: SlowClientFile,
    /// Request header bytes accepted; larger requests get `431`. Default `16KiB`.
    pub max_header_bytes: Option<ByteSize>,
    /// A request head not complete this long after the connection opened (or, on a reused
    /// connection, after its first byte) gets `408` and the connection is cut. Default
    /// `10s`; `0s` disables.
    #[serde(default, with = "humantime_serde")]
    pub header_timeout: Option<Duration>,
}

/// The `limits.slow_client:` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowClientFile {
    /// Bytes queued for one client before the policy applies. Default `256KiB`.
    pub max_lag: Option<ByteSize>,
    /// `disconnect` (the client resumes with Last-Event-ID) or `drop_oldest`.
    pub policy: Option<SlowClientPolicy>,
}

/// Declares the settings that `defaults` sets and a route may override beside its `path`
/// once, for both places: `Tunables` (the `defaults:` block) and `RouteFile` (a `routes:`
/// entry: its own fields, then the same overrides), with `RouteFile::tunables` to take the
/// overrides out. (`#[serde(flatten)]` would say this without a macro, but it does not
/// combine with `deny_unknown_fields` and loses error lines.)
macro_rules! with_tunables {
    (
        $(#[$route_meta:meta])*
        pub struct RouteFile { $($(#[$own_meta:meta])* pub $own:ident: $own_ty:ty,)* }
        $(#[$tunables_meta:meta])*
        pub struct Tunables { $($(#[$meta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$tunables_meta])*
        pub struct Tunables { $($(#[$meta])* pub $field: $ty,)* }

        $(#[$route_meta])*
        pub struct RouteFile {
            $($(#[$own_meta])* pub $own: $own_ty,)*
            $($(#[$meta])* pub $field: $ty,)*
        }

        impl RouteFile {
            /// The route's own overrides, in the shape of `defaults`.
            pub fn tunables(&self) -> Tunables {
                Tunables { $($field: self.$field.clone(),)* }
            }
        }
    };
}

with_tunables! {
    /// One entry of `routes:`; exactly one of `sse`, `poll`, `websocket`, `http` is set, and
    /// any of the [`Tunables`] may be set beside `path` to override `defaults`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RouteFile {
        /// Exact path, `/prefix/*`, with optional `{name}` segment captures.
        pub path: String,
        /// Proxy an upstream SSE stream.
        pub sse: Option<SseBlock>,
        /// Poll a JSON (or text) endpoint and stream its changes.
        pub poll: Option<PollBlock>,
        /// Turn a WebSocket feed into SSE.
        pub websocket: Option<WebSocketBlock>,
        /// Plain reverse proxy.
        pub http: Option<HttpBlock>,
        /// Tightens `limits.per_client` for this route.
        pub per_client: Option<usize>,
        /// Request headers passed upstream; makes the upstream per client (never shared).
        #[serde(default)]
        pub forward_headers: Vec<String>,
    }

    /// Stream settings that `defaults` sets and each route may override.
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tunables {
        /// Idle time before a `:` comment is sent between events; `0s` disables. Default `15s`.
        #[serde(default, with = "humantime_serde")]
        pub heartbeat: Option<Duration>,
        /// `retry:` sent at stream start, with ±20% jitter per client. Default `3s`.
        #[serde(default, with = "humantime_serde")]
        pub retry: Option<Duration>,
        /// Events kept per stream for `Last-Event-ID` resume. Default `1000`.
        pub replay: Option<usize>,
        /// Larger upstream events are dropped and counted. Default `1MiB`.
        pub max_event_bytes: Option<ByteSize>,
        /// Cross-origin access for browsers on other origins.
        pub cors: Option<Cors>,
        /// Close a stream after this long (±10% jitter) so clients rebalance; `0s` = never.
        #[serde(default, with = "humantime_serde")]
        pub max_lifetime: Option<Duration>,
        /// How long a stream's upstream (and replay ring) outlives its last subscriber. Default `2s`.
        #[serde(default, with = "humantime_serde")]
        pub linger: Option<Duration>,
        /// Emit `event: upstream-error` to clients when the upstream fails. Default `false`.
        pub upstream_error_event: Option<bool>,
        /// The route's authenticator: a name under `auth:`, `none`, or
        /// `{ use: NAME, require: {...} }`. Default `none`.
        pub auth: Option<AuthChoiceFile>,
    }
}

/// `sse:` — proxy an upstream `text/event-stream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseBlock {
    /// Upstream URL (`http://` or `https://`), or a list of them (a pool); `{name}` captures
    /// and the query are substituted.
    pub upstream: Urls,
    /// Active checks of every backend of the pool.
    pub health_check: Option<HealthCheckFile>,
    /// Identical requests share one upstream stream. Default `true`.
    #[serde(default = "yes")]
    pub share: bool,
    /// Reconnect, resuming with `Last-Event-ID`, when the upstream sends no byte at all —
    /// not even a comment — for this long, counted from the request. Default `0s`: never.
    #[serde(default, with = "humantime_serde")]
    pub upstream_idle_timeout: Option<Duration>,
    /// Request headers passed upstream; makes the upstream per client.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Extra request headers sent upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM file of an extra CA to trust for `https://` upstreams.
    pub ca_file: Option<String>,
}

/// `poll:` — turn a polled endpoint into a stream of changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollBlock {
    /// Endpoint URL (`http://` or `https://`), or a list of them (a pool); `{name}` captures
    /// and the query are substituted.
    pub url: Urls,
    /// Active checks of every backend of the pool.
    pub health_check: Option<HealthCheckFile>,
    /// Time between polls (with a little jitter). Default `2s`.
    #[serde(default = "two_seconds", with = "humantime_serde")]
    pub interval: Duration,
    /// `snapshot` | `json_patch` | `merge_patch`. Default `snapshot`.
    #[serde(default)]
    pub emit: Emit,
    /// SSE event name for changes. Default `message` (`patch` in the patch modes).
    pub event: Option<String>,
    /// `json` or `text` (raw body as a snapshot). Default `json`.
    #[serde(default)]
    pub content: Content,
    /// Largest accepted response body. Default `1MiB` (like `max_event_bytes`, which every
    /// published document must also fit).
    #[serde(default = "one_mebibyte")]
    pub max_body_bytes: ByteSize,
    /// Deepest accepted JSON nesting. Default `64`.
    #[serde(default = "sixty_four")]
    pub max_depth: usize,
    /// Request headers passed upstream; makes the poller per client.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Extra request headers sent upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM file of an extra CA to trust for `https://` upstreams.
    pub ca_file: Option<String>,
}

/// `websocket:` — turn a WebSocket feed into SSE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketBlock {
    /// `ws://` or `wss://` URL, or a list of them (a pool); `{name}` captures and the query
    /// are substituted.
    pub url: Urls,
    /// Active checks of every backend of the pool (TCP, or HTTP with a `path`).
    pub health_check: Option<HealthCheckFile>,
    /// Text sent after every (re)connect; `{name}` captures are substituted.
    pub subscribe: Option<String>,
    /// JSON pointer to the SSE event name in each message.
    pub event_from: Option<String>,
    /// JSON pointer to the SSE id in each message (else the proxy numbers events).
    pub id_from: Option<String>,
    /// JSON pointer to the payload in each message (else the whole message).
    pub data_from: Option<String>,
    /// Binary frames: `base64` or `drop`. Default `base64`.
    #[serde(default)]
    pub binary: BinaryPolicy,
    /// `Sec-WebSocket-Protocol` to request.
    pub subprotocol: Option<String>,
    /// Request headers passed upstream; makes the socket per client.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Extra request headers sent on the upgrade request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Largest accepted message (and frame). Default `1MiB`.
    #[serde(default = "one_mebibyte")]
    pub max_message_bytes: ByteSize,
    /// Ping the upstream after this much silence; no pong within it again means dead. Default `20s`; `0s` disables.
    #[serde(default = "twenty_seconds", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// PEM file of an extra CA to trust for `wss://` upstreams.
    pub ca_file: Option<String>,
}

/// `http:` — plain reverse proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBlock {
    /// Upstream base URL, or a list of them (a pool, used round-robin); the request path is
    /// appended to its path.
    pub upstream: Urls,
    /// Active checks of every backend of the pool.
    pub health_check: Option<HealthCheckFile>,
}

/// `upstream:` / `url:` is one URL or a list of them: a pool of backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a URL or a list of URLs (a pool), e.g. upstream: [\"http://a:8000\", \"http://b:8000\"]"
)]
pub enum Urls {
    /// `upstream: http://legacy:8000`
    One(String),
    /// `upstream: [http://legacy-a:8000, http://legacy-b:8000]`
    Many(Vec<String>),
}

/// `health_check:` — active checks of every backend of a route's pool. A backend that fails
/// one is skipped until it passes again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// Path to `GET` on each backend's origin; a 2xx answer passes. Required on `http`, `sse`
    /// and `poll` routes; on `websocket` routes without it the check is a TCP (or, for
    /// `wss://`, TLS) connect.
    pub path: Option<String>,
    /// Time between checks. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// How long one check may take to connect and to answer. Default `2s`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

fn two_seconds() -> Duration {
    Duration::from_secs(2)
}

fn twenty_seconds() -> Duration {
    Duration::from_secs(20)
}

fn one_mebibyte() -> ByteSize {
    ByteSize::mib(1)
}

fn sixty_four() -> usize {
    64
}

//! Loading the YAML file into a validated [`Config`].
//!
//! Two layers: [`model`] is the file schema (serde, unknown keys refused); [`validate`] turns
//! it into the runtime form, collecting every semantic problem. Each reported problem names
//! its YAML path and line, so `sse-edge check` can list them all at once.

mod locate;
pub mod model;
mod validate;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

pub use model::{
    BinaryPolicy, Content, Cors, Emit, HttpUpstream, ListenerFile, PollSource, SlowClientPolicy,
    SseSource, TlsFiles, WebSocketSource,
};

use crate::routes::PathPattern;

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// SSE/HTTP listeners.
    pub listeners: Vec<ListenerFile>,
    /// Admin listener address.
    pub admin_listen: String,
    /// Connection limits.
    pub limits: Limits,
    /// Time streams get to close on shutdown.
    pub shutdown_grace: Duration,
    /// Routes, in match order.
    pub routes: Vec<RouteConfig>,
}

/// Validated `limits:`.
#[derive(Debug, Clone)]
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
}

/// One validated route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The configured `path:` — also the `route` metric label.
    pub path: String,
    /// The compiled path pattern.
    pub pattern: PathPattern,
    /// What the route serves.
    pub kind: RouteKind,
    /// Stream settings after applying `defaults`.
    pub stream: StreamSettings,
    /// The route's own `per_client`, when it tightens the global one.
    pub per_client: Option<usize>,
    /// Request headers passed upstream (route level and kind level together).
    pub forward_headers: Vec<String>,
}

/// The four route kinds.
#[derive(Debug, Clone)]
pub enum RouteKind {
    /// Proxy an upstream SSE stream.
    Sse(SseSource),
    /// Poll a JSON/text endpoint.
    Poll(PollSource),
    /// Turn a WebSocket feed into SSE.
    WebSocket(WebSocketSource),
    /// Plain reverse proxy.
    Http(HttpUpstream),
}

/// Stream settings with every default applied.
#[derive(Debug, Clone)]
pub struct StreamSettings {
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

/// One problem in the file: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// YAML path such as `routes[2].poll.interval` (empty for the whole file).
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", render_issues(file, issues))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
}

fn render_issues(file: &str, issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues
        .iter()
        .map(|issue| format!("{file}:{issue}"))
        .collect();
    lines.join("\n")
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        } else {
            f.write_str(" ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.reason)
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Config::from_yaml(&text).map_err(|issues| ConfigError::Invalid {
            file: path.display().to_string(),
            issues,
        })
    }

    /// Parses and validates configuration text, returning every problem found.
    pub fn from_yaml(text: &str) -> Result<Config, Vec<ConfigIssue>> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let file: model::FileConfig = serde_path_to_error::deserialize(deserializer)
            .map_err(|err| vec![schema_issue(&err)])?;
        validate::validate(file).map_err(|issues| {
            issues
                .into_iter()
                .map(|issue| ConfigIssue {
                    line: locate::line_of(text, &issue.path),
                    ..issue
                })
                .collect()
        })
    }

    /// A one-line description, printed by `sse-edge check`.
    pub fn summary(&self) -> String {
        let count =
            |wanted: fn(&RouteKind) -> bool| self.routes.iter().filter(|r| wanted(&r.kind)).count();
        format!(
            "{} routes ({} sse, {} poll, {} websocket, {} http), listening on {}, admin on {}",
            self.routes.len(),
            count(|k| matches!(k, RouteKind::Sse(_))),
            count(|k| matches!(k, RouteKind::Poll(_))),
            count(|k| matches!(k, RouteKind::WebSocket(_))),
            count(|k| matches!(k, RouteKind::Http(_))),
            self.listeners
                .iter()
                .map(|l| l.addr.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            self.admin_listen
        )
    }
}

/// Turns a serde error into an issue with the path serde_path_to_error tracked.
fn schema_issue(err: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigIssue {
    let inner = err.inner();
    let mut message = inner.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let mut path = err.path().to_string();
    if path == "." {
        path.clear();
    }
    // serde_yaml may prefix the message with its own copy of the path, or of an ancestor.
    if let Some((prefix, rest)) = message.split_once(": ") {
        if !prefix.is_empty() && path.starts_with(prefix) {
            message = rest.to_string();
        }
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        path = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
    }
    ConfigIssue {
        path,
        line: inner.location().map(|at| at.line()),
        reason: message,
    }
}

#[cfg(test)]
mod tests;

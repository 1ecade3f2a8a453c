//! Loading the YAML file into a validated [`Config`].
//!
//! Two layers, as river keeps them: `model` is the file schema (serde, unknown keys refused)
//! and never leaves this folder; `validate` (with `kinds` for each route kind's block) turns
//! it into the [`runtime`] types the rest of the proxy sees, collecting every semantic
//! problem. Each reported problem names its YAML path and line, so `sse-edge check` can list
//! them all at once. Before any of that, [`bounds`] refuses files too large, holding NUL or
//! nested too deep, so that the parser only ever sees a bounded document.

mod auth;
mod bounds;
mod cluster;
mod depth;
mod issues;
mod kinds;
mod locate;
mod model;
mod runtime;
mod upstreams;
mod validate;

use std::path::{Path, PathBuf};

pub use auth::{
    AuthenticatorConfig, CredentialSource, ForwardConfig, JwtConfig, JwtKeys, KeySet, RouteAuth,
    MAX_JWKS_BYTES,
};
pub use issues::ConfigIssue;
pub use runtime::{
    backend_name, BinaryPolicy, ClientIdSource, ClusterConfig, Config, Content, Cors, Emit,
    ExtraHeaders, HealthCheck, HttpRoute, Limits, Listener, LogFormat, MessageMapping, PollRoute,
    RouteConfig, RouteKind, RouteSettings, SlowClientPolicy, SseRoute, StreamSource, TlsFiles,
    Upstreams, WebSocketRoute,
};

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

/// Where the configuration is looked for when `--config` is not given, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["./conf/sse-edge.yaml", "/etc/sse-edge/sse-edge.yaml"];

impl Config {
    /// The first of [`DEFAULT_PATHS`] that exists; the error names both.
    pub fn default_path() -> Result<PathBuf, String> {
        DEFAULT_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .ok_or_else(|| {
                format!(
                    "no --config given and no configuration at {}",
                    DEFAULT_PATHS.join(" or ")
                )
            })
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let bytes = bounds::read(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        bounds::text(&bytes)
            .map_err(|issue| vec![issue])
            .and_then(Config::from_yaml)
            .map_err(|issues| ConfigError::Invalid { file, issues })
    }

    /// Parses and validates configuration text, returning every problem found. Text over
    /// the [`bounds`] is refused before it is parsed; values quoted in errors are cut short.
    pub fn from_yaml(text: &str) -> Result<Config, Vec<ConfigIssue>> {
        bounds::check(text).map_err(|issue| vec![issue])?;
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let file: model::FileConfig = serde_path_to_error::deserialize(deserializer)
            .map_err(|err| vec![schema_issue(&err).with_values_cut()])?;
        validate::validate(file).map_err(|issues| {
            issues
                .into_iter()
                .map(|issue| ConfigIssue {
                    line: locate::line_of(text, &issue.path),
                    ..issue.with_values_cut()
                })
                .collect()
        })
    }

    /// A one-line description, printed by `sse-edge check`.
    pub fn summary(&self) -> String {
        let count = |kind: &str| self.routes.iter().filter(|r| r.kind.name() == kind).count();
        format!(
            "{} routes ({} sse, {} poll, {} websocket, {} http), listening on {}, admin on {}",
            self.routes.len(),
            count("sse"),
            count("poll"),
            count("websocket"),
            count("http"),
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
    if message.ends_with("expected a duration") {
        message.push_str(" with a unit, e.g. \"250ms\", \"15s\", \"2m\"");
    }
    ConfigIssue {
        path,
        line: inner.location().map(|at| at.line()),
        reason: message,
    }
}

#[cfg(test)]
mod tests;

//! Log output: `RUST_LOG` picks what is logged (default `info`); `log_format` (or the
//! `SSE_EDGE_LOG_FORMAT` environment variable, which wins) picks text or one JSON object per
//! line. Colour codes are written only when standard error is a terminal.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// The environment variable that overrides `log_format`.
pub const FORMAT_VARIABLE: &str = "SSE_EDGE_LOG_FORMAT";

/// What is logged without `RUST_LOG`: `info`, but not pingora's own line per health-check
/// flip, which the proxy logs itself with its route, backend and error as fields.
const DEFAULT_FILTER: &str = "info,pingora_load_balancing=error";

/// Installs the process's log subscriber; `configured` is the file's `log_format`.
pub fn init(configured: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format(configured) {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// The format in effect: the environment variable when it names one, else the file's.
fn format(configured: LogFormat) -> LogFormat {
    match std::env::var(FORMAT_VARIABLE).as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("text") => LogFormat::Text,
        _ => configured,
    }
}

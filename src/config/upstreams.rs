//! A kind's `upstream:` / `url:` — one URL or a pool of them — and its `health_check:`,
//! checked entry by entry so each problem names its own path (`routes[0].sse.upstream[1]`).

use std::time::Duration;

use super::issues::Issues;
use super::model::{HealthCheckFile, Urls};
use super::runtime::{backend_name, HealthCheck};

/// The default time between health checks.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// The default bound on one health check.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The configured URLs at `at` (e.g. `routes[0].sse.upstream`, whose key is `name`) with the
/// YAML path of each: `at` itself for one URL, `routes[0].sse.upstream[1]` for a list entry.
/// An empty list and a repeated backend are reported.
pub fn list(at: String, name: &str, urls: Urls, issues: &mut Issues) -> Vec<(String, String)> {
    let listed: Vec<(String, String)> = match urls {
        Urls::One(url) => vec![(at, url)],
        Urls::Many(urls) if urls.is_empty() => {
            issues.add(at, "needs at least one URL");
            return Vec::new();
        }
        Urls::Many(urls) => urls
            .into_iter()
            .enumerate()
            .map(|(index, url)| (format!("{at}[{index}]"), url))
            .collect(),
    };
    for (index, (at, url)) in listed.iter().enumerate() {
        let earlier = listed[..index]
            .iter()
            .position(|(_, other)| backend_name(other) == backend_name(url));
        if let Some(earlier) = earlier {
            issues.add(
                at,
                format!("duplicates {name}[{earlier}] (a backend is named by its URL without the query and a trailing /)"),
            );
        }
    }
    listed
}

/// The validated `health_check:` at `at` of a kind whose backends are `listed`. Only a kind
/// that may `connect_only` (websocket) may leave out `path` (its check is then a TCP or TLS
/// connect); every backend must have a fixed host to be checked.
pub fn health_check(
    at: String,
    connect_only: bool,
    file: HealthCheckFile,
    listed: &[(String, String)],
    issues: &mut Issues,
) -> HealthCheck {
    match &file.path {
        Some(path) if !path.starts_with('/') => {
            issues.add(format!("{at}.path"), "must start with '/'");
        }
        None if !connect_only => issues.add(
            at.clone(),
            "needs a path to GET on each backend (e.g. path: /healthz); only websocket routes may check by connecting",
        ),
        _ => {}
    }
    let interval = positive(&at, "interval", file.interval, DEFAULT_INTERVAL, issues);
    let timeout = positive(&at, "timeout", file.timeout, DEFAULT_TIMEOUT, issues);
    for (url_at, url) in listed {
        let authority = url.split_once("://").map_or("", |(_, rest)| rest);
        let authority = authority.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('{') {
            issues.add(
                url_at,
                "a health-checked backend needs a fixed host, not a {placeholder}",
            );
        }
    }
    HealthCheck {
        path: file.path,
        interval,
        timeout,
    }
}

fn positive(
    at: &str,
    name: &str,
    value: Option<Duration>,
    default: Duration,
    issues: &mut Issues,
) -> Duration {
    let value = value.unwrap_or(default);
    if value.is_zero() {
        issues.add(format!("{at}.{name}"), "must be greater than 0s");
    }
    value
}

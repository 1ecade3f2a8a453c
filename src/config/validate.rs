//! Semantic checks and defaults: turns the file model into the runtime [`Config`],
//! collecting every problem (path + reason) instead of stopping at the first.

use std::net::SocketAddr;
use std::time::Duration;

use super::model::{FileConfig, Listen, ListenEntry, ListenerFile, RouteFile, Tunables};
use super::{ClientIdSource, Config, ConfigIssue, Limits, RouteConfig, RouteKind, StreamSettings};
use crate::routes::{PathPattern, Template};

const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_ADMIN: &str = "127.0.0.1:9090";

/// Collects issues while the config is being resolved.
#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            line: None,
            reason: reason.into(),
        });
    }
}

/// Validates the file model and applies defaults.
pub fn validate(file: FileConfig) -> Result<Config, Vec<ConfigIssue>> {
    let mut issues = Issues::default();
    let listeners = listeners(file.listen, &mut issues);
    let admin_listen = file
        .admin
        .and_then(|a| a.listen)
        .unwrap_or(DEFAULT_ADMIN.into());
    check_addr("admin.listen", &admin_listen, &mut issues);
    let limits = limits(file.limits, &mut issues);
    if file.routes.is_empty() {
        issues.add("routes", "at least one route is required");
    }
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (index, route) in file.routes.into_iter().enumerate() {
        let at = format!("routes[{index}]");
        if let Some(earlier) = routes.iter().position(|r| r.path == route.path) {
            issues.add(
                format!("{at}.path"),
                format!("duplicates routes[{earlier}].path"),
            );
        }
        if let Some(route) = resolve_route(&at, route, &file.defaults, &mut issues) {
            routes.push(route);
        }
    }
    if !issues.0.is_empty() {
        return Err(issues.0);
    }
    Ok(Config {
        listeners,
        admin_listen,
        limits,
        shutdown_grace: file.shutdown_grace.unwrap_or(Duration::from_secs(5)),
        routes,
    })
}

fn listeners(listen: Option<Listen>, issues: &mut Issues) -> Vec<ListenerFile> {
    let plain = |addr: String| ListenerFile {
        addr,
        tls: None,
        h2c: false,
    };
    let entries = match listen {
        None => vec![plain(DEFAULT_LISTEN.into())],
        Some(Listen::One(addr)) => vec![plain(addr)],
        Some(Listen::Many(entries)) => entries
            .into_iter()
            .map(|entry| match entry {
                ListenEntry::Addr(addr) => plain(addr),
                ListenEntry::Full(listener) => listener,
            })
            .collect(),
    };
    if entries.is_empty() {
        issues.add("listen", "at least one listener is required");
    }
    for (index, entry) in entries.iter().enumerate() {
        let at = if entries.len() == 1 {
            "listen".to_string()
        } else {
            format!("listen[{index}]")
        };
        check_addr(&at, &entry.addr, issues);
        if let Some(tls) = &entry.tls {
            crate::server::tls::check_files(tls).unwrap_or_else(|(field, reason)| {
                issues.add(format!("{at}.tls.{field}"), reason);
            });
        }
    }
    entries
}

fn check_addr(at: &str, addr: &str, issues: &mut Issues) {
    if addr.parse::<SocketAddr>().is_err() {
        issues.add(at, format!("'{addr}' is not an IP:port address"));
    }
}

fn limits(file: super::model::LimitsFile, issues: &mut Issues) -> Limits {
    let client_id = match file.client_id.as_deref() {
        None => ClientIdSource::PeerIp,
        Some(text) => parse_client_id(text).unwrap_or_else(|reason| {
            issues.add("limits.client_id", reason);
            ClientIdSource::PeerIp
        }),
    };
    let per_client = file.per_client.unwrap_or(8);
    if per_client == 0 {
        issues.add("limits.per_client", "must be at least 1");
    }
    let max_connections = file.max_connections.unwrap_or(100_000);
    if max_connections == 0 {
        issues.add("limits.max_connections", "must be at least 1");
    }
    Limits {
        max_connections,
        per_client,
        client_id,
        trusted_proxies: file.trusted_proxies,
        max_lag: file.slow_client.max_lag.map_or(256 * 1024, |b| b.as_u64()),
        slow_client_policy: file.slow_client.policy.unwrap_or_default(),
        max_header_bytes: file
            .max_header_bytes
            .map_or(16 * 1024, |b| b.as_u64() as usize),
    }
}

fn parse_client_id(text: &str) -> Result<ClientIdSource, String> {
    let named = |name: &str| -> Result<String, String> {
        if name.is_empty() {
            return Err(format!("'{text}' needs a name after ':'"));
        }
        Ok(name.to_string())
    };
    match text.split_once(':') {
        None if text == "peer_ip" => Ok(ClientIdSource::PeerIp),
        Some(("header", name)) => {
            let name = named(name)?;
            http::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("'{name}' is not a valid header name"))?;
            Ok(ClientIdSource::Header(name))
        }
        Some(("query", name)) => Ok(ClientIdSource::Query(named(name)?)),
        Some(("cookie", name)) => Ok(ClientIdSource::Cookie(named(name)?)),
        _ => Err(format!(
            "'{text}' is not one of peer_ip, header:NAME, query:NAME, cookie:NAME"
        )),
    }
}

fn resolve_route(
    at: &str,
    route: RouteFile,
    defaults: &Tunables,
    issues: &mut Issues,
) -> Option<RouteConfig> {
    let pattern = PathPattern::parse(&route.path)
        .map_err(|reason| issues.add(format!("{at}.path"), reason))
        .ok();
    if route.per_client == Some(0) {
        issues.add(format!("{at}.per_client"), "must be at least 1");
    }
    let stream = settings(&route.tunables(), defaults);
    let RouteFile {
        path,
        sse,
        poll,
        websocket,
        http,
        per_client,
        mut forward_headers,
        ..
    } = route;
    let kind = match (sse, poll, websocket, http) {
        (Some(sse), None, None, None) => {
            forward_headers.extend(sse.forward_headers.iter().cloned());
            RouteKind::Sse(sse)
        }
        (None, Some(poll), None, None) => {
            forward_headers.extend(poll.forward_headers.iter().cloned());
            RouteKind::Poll(poll)
        }
        (None, None, Some(websocket), None) => {
            forward_headers.extend(websocket.forward_headers.iter().cloned());
            RouteKind::WebSocket(websocket)
        }
        (None, None, None, Some(http)) => RouteKind::Http(http),
        (None, None, None, None) => {
            issues.add(at, "needs one of sse, poll, websocket or http");
            return None;
        }
        _ => {
            issues.add(at, "has more than one of sse, poll, websocket, http");
            return None;
        }
    };
    for (index, name) in forward_headers.iter().enumerate() {
        if http::HeaderName::try_from(name.as_str()).is_err() {
            issues.add(
                format!("{at}.forward_headers[{index}]"),
                "not a valid header name",
            );
        }
    }
    let pattern = pattern?;
    check_kind(at, &kind, &pattern, issues);
    Some(RouteConfig {
        path,
        pattern,
        kind,
        stream,
        per_client,
        forward_headers,
    })
}

fn settings(route: &Tunables, defaults: &Tunables) -> StreamSettings {
    let pick = |own: Option<Duration>, inherited: Option<Duration>, fallback: u64| {
        own.or(inherited).unwrap_or(Duration::from_secs(fallback))
    };
    let non_zero = |d: Duration| (!d.is_zero()).then_some(d);
    StreamSettings {
        heartbeat: non_zero(pick(route.heartbeat, defaults.heartbeat, 15)),
        retry: pick(route.retry, defaults.retry, 3),
        replay: route.replay.or(defaults.replay).unwrap_or(1000),
        max_event_bytes: route
            .max_event_bytes
            .or(defaults.max_event_bytes)
            .map_or(1 << 20, |b| b.as_u64() as usize),
        cors: route
            .cors
            .clone()
            .or(defaults.cors.clone())
            .unwrap_or_default(),
        max_lifetime: non_zero(pick(route.max_lifetime, defaults.max_lifetime, 0)),
        linger: pick(route.linger, defaults.linger, 2),
        upstream_error_event: route
            .upstream_error_event
            .or(defaults.upstream_error_event)
            .unwrap_or(false),
    }
}

/// Kind-specific checks: URL schemes, captures the URL needs, sensible numbers.
fn check_kind(at: &str, kind: &RouteKind, pattern: &PathPattern, issues: &mut Issues) {
    let (field, url, schemes): (&str, &str, &[&str]) = match kind {
        RouteKind::Sse(sse) => ("sse.upstream", &sse.upstream, &["http", "https"]),
        RouteKind::Poll(poll) => ("poll.url", &poll.url, &["http", "https"]),
        RouteKind::WebSocket(ws) => ("websocket.url", &ws.url, &["ws", "wss"]),
        RouteKind::Http(http) => ("http.upstream", &http.upstream, &["http", "https"]),
    };
    let at_url = format!("{at}.{field}");
    check_url(&at_url, url, schemes, issues);
    let captured: Vec<&str> = pattern.capture_names().collect();
    let mut templates = vec![(at_url, Template::new(url))];
    if let RouteKind::WebSocket(ws) = kind {
        if let Some(subscribe) = &ws.subscribe {
            templates.push((
                format!("{at}.websocket.subscribe"),
                Template::new(subscribe),
            ));
        }
        for (name, pointer) in [
            ("event_from", &ws.event_from),
            ("id_from", &ws.id_from),
            ("data_from", &ws.data_from),
        ] {
            if pointer
                .as_deref()
                .is_some_and(|p| !p.is_empty() && !p.starts_with('/'))
            {
                issues.add(
                    format!("{at}.websocket.{name}"),
                    "a JSON pointer starts with '/'",
                );
            }
        }
    }
    for (path, template) in templates {
        for name in template.placeholders() {
            if !captured.contains(&name) {
                issues.add(
                    &path,
                    format!("uses {{{name}}}, which the route path does not capture"),
                );
            }
        }
    }
    let ca_file = match kind {
        RouteKind::Sse(sse) => sse.ca_file.as_deref().map(|f| ("sse", f)),
        RouteKind::Poll(poll) => poll.ca_file.as_deref().map(|f| ("poll", f)),
        RouteKind::WebSocket(ws) => ws.ca_file.as_deref().map(|f| ("websocket", f)),
        RouteKind::Http(_) => None,
    };
    if let Some((kind_name, file)) = ca_file {
        if let Err(reason) = crate::server::tls::check_ca_file(file) {
            issues.add(format!("{at}.{kind_name}.ca_file"), reason);
        }
    }
    if let RouteKind::Poll(poll) = kind {
        if poll.interval.is_zero() {
            issues.add(format!("{at}.poll.interval"), "must be greater than 0s");
        }
        if poll.max_depth == 0 {
            issues.add(format!("{at}.poll.max_depth"), "must be at least 1");
        }
    }
}

fn check_url(at: &str, url: &str, schemes: &[&str], issues: &mut Issues) {
    let probe = Template::new(url).fill(&Default::default());
    let filled = probe.replace(['{', '}'], "x");
    match filled.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some() => {
            let scheme = uri.scheme_str().unwrap_or_default();
            if !schemes.contains(&scheme) {
                issues.add(at, format!("scheme must be {}", schemes.join(" or ")));
            }
        }
        _ => issues.add(at, format!("'{url}' is not an absolute URL")),
    }
}

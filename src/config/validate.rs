//! Semantic checks and defaults: turns the file model into the runtime [`Config`],
//! collecting every problem (path + reason) instead of stopping at the first.

use std::net::SocketAddr;
use std::time::Duration;

use super::auth::validate::route_auth as validate_auth;
use super::auth::{self};
use super::issues::{ConfigIssue, Issues};
use super::kinds::{self, Site};
use super::model::{
    FileConfig, HttpBlock, LimitsFile, Listen, ListenEntry, PollBlock, RouteFile, SseBlock,
    Tunables, WebSocketBlock,
};
use super::runtime::{
    ClientIdSource, Cors, Limits, Listener, RouteConfig, RouteKind, RouteSettings,
};
use super::Config;
use crate::routes::PathPattern;

const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_ADMIN: &str = "127.0.0.1:9090";
const DEFAULT_UPGRADE_SOCK: &str = "/tmp/sse-edge-upgrade.sock";

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
    let auth = auth::validate::authenticators(file.auth, &mut issues);
    check_cors("defaults.cors", file.defaults.cors.as_ref(), &mut issues);
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
        check_cors(&format!("{at}.cors"), route.cors.as_ref(), &mut issues);
        let (choice_at, choice) = match &route.auth {
            Some(own) => (format!("{at}.auth"), Some(own.clone())),
            None => ("defaults.auth".to_string(), file.defaults.auth.clone()),
        };
        if let Some(mut route) = resolve_route(&at, route, &file.defaults, &mut issues) {
            let pattern = Some(&route.pattern);
            route.auth = validate_auth(&choice_at, choice.as_ref(), &auth, pattern, &mut issues);
            routes.push(route);
        }
    }
    let cluster = super::cluster::validate(file.cluster, &mut issues);
    issues.into_result()?;
    Ok(Config {
        listeners,
        admin_listen,
        limits,
        shutdown_grace: file.shutdown_grace.unwrap_or(Duration::from_secs(5)),
        drain_delay: file.drain_delay.unwrap_or_default(),
        upgrade_sock: file.upgrade_sock.unwrap_or(DEFAULT_UPGRADE_SOCK.into()),
        log_format: file.log_format.unwrap_or_default(),
        routes,
        auth,
        cluster,
    })
}

/// Browsers refuse credentials with `Access-Control-Allow-Origin: *`, and echoing every
/// origin with credentials would let any site read an authenticated stream.
fn check_cors(at: &str, cors: Option<&Cors>, issues: &mut Issues) {
    if cors.is_some_and(|c| c.allow_credentials && c.allow_origins.iter().any(|o| o == "*")) {
        issues.add(
            at,
            "allow_credentials: true needs allow_origins listing the origins, not \"*\"",
        );
    }
}

fn listeners(listen: Option<Listen>, issues: &mut Issues) -> Vec<Listener> {
    let plain = |addr: String| Listener {
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
                ListenEntry::Full(listener) => Listener {
                    addr: listener.addr,
                    tls: listener.tls,
                    h2c: listener.h2c,
                },
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
            crate::certs::check_pair(&tls.cert, &tls.key).unwrap_or_else(|(file, reason)| {
                issues.add(format!("{at}.tls.{}", file.field()), reason);
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

fn limits(file: LimitsFile, issues: &mut Issues) -> Limits {
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
        header_timeout: Some(file.header_timeout.unwrap_or(Duration::from_secs(10)))
            .filter(|timeout| !timeout.is_zero()),
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
        None if text == "auth" => Ok(ClientIdSource::Auth),
        Some(("header", name)) => {
            let name = named(name)?;
            http::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("'{name}' is not a valid header name"))?;
            Ok(ClientIdSource::Header(name))
        }
        Some(("query", name)) => Ok(ClientIdSource::Query(named(name)?)),
        Some(("cookie", name)) => Ok(ClientIdSource::Cookie(named(name)?)),
        _ => Err(format!(
            "'{text}' is not one of peer_ip, auth, header:NAME, query:NAME, cookie:NAME"
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
    let settings = settings(&route.tunables(), defaults);
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
    let site = Site {
        at,
        pattern: pattern.as_ref(),
    };
    let blocks = KindBlocks {
        sse,
        poll,
        websocket,
        http,
    };
    let kind = resolve_kind(&site, blocks, &mut forward_headers, issues)?;
    for (index, name) in forward_headers.iter().enumerate() {
        if http::HeaderName::try_from(name.as_str()).is_err() {
            issues.add(
                format!("{at}.forward_headers[{index}]"),
                "not a valid header name",
            );
        }
    }
    Some(RouteConfig {
        path,
        pattern: pattern?,
        kind,
        settings,
        per_client,
        forward_headers,
        auth: None,
    })
}

/// The kind blocks of one route, of which exactly one must be set.
struct KindBlocks {
    sse: Option<SseBlock>,
    poll: Option<PollBlock>,
    websocket: Option<WebSocketBlock>,
    http: Option<HttpBlock>,
}

/// The route's one kind, converted; the headers its block forwards join `forward_headers`.
fn resolve_kind(
    site: &Site,
    blocks: KindBlocks,
    forward_headers: &mut Vec<String>,
    issues: &mut Issues,
) -> Option<RouteKind> {
    let kind = match (blocks.sse, blocks.poll, blocks.websocket, blocks.http) {
        (Some(mut block), None, None, None) => {
            forward_headers.append(&mut block.forward_headers);
            RouteKind::Stream(kinds::sse(site, block, issues))
        }
        (None, Some(mut block), None, None) => {
            forward_headers.append(&mut block.forward_headers);
            RouteKind::Stream(kinds::poll(site, block, issues))
        }
        (None, None, Some(mut block), None) => {
            forward_headers.append(&mut block.forward_headers);
            RouteKind::Stream(kinds::websocket(site, block, issues))
        }
        (None, None, None, Some(block)) => RouteKind::Http(kinds::http(site, block, issues)),
        (None, None, None, None) => {
            issues.add(site.at, "needs one of sse, poll, websocket or http");
            return None;
        }
        _ => {
            issues.add(site.at, "has more than one of sse, poll, websocket, http");
            return None;
        }
    };
    Some(kind)
}

fn settings(route: &Tunables, defaults: &Tunables) -> RouteSettings {
    let pick = |own: Option<Duration>, inherited: Option<Duration>, fallback: u64| {
        own.or(inherited).unwrap_or(Duration::from_secs(fallback))
    };
    let non_zero = |d: Duration| (!d.is_zero()).then_some(d);
    RouteSettings {
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

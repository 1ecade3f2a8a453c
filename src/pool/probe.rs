//! The active health check of a pool: pingora's own [`HttpHealthCheck`] (a `GET` of the
//! route's `health_check.path`, any 2xx passes) or [`TcpHealthCheck`] (a TCP or TLS
//! connect, for websocket routes without a path), one per backend, behind one
//! [`HealthCheck`] that pingora's health registry calls for every member.
//!
//! Why a wrapper: pingora checks `Backend::addr`, and ours is an identity, not a place to
//! connect to (see `member.rs`). This probe looks the member up by its index, resolves the
//! member's host now — following DNS while the pool lives — and hands pingora's check a
//! backend at the resolved address. Each backend keeps its own check, as each has its own
//! `Host`, SNI and port. Flips are logged here, once each, with the check's error.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use http::uri::Authority;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::{Error, ErrorType, Result};

use super::member::Index;
use crate::certs::CaType;
use crate::config;

/// Where and how one backend is checked.
struct Target {
    label: Arc<str>,
    host: String,
    port: u16,
    check: Box<dyn HealthCheck + Send + Sync>,
    /// The error of the last failed check, for the log line of the flip.
    last_error: Mutex<Option<String>>,
}

/// The health check of one pool.
pub struct Probe {
    route: String,
    targets: Vec<Target>,
    timeout: Duration,
}

impl Probe {
    /// The probe of the pool of `route` whose backends are `urls` (with their `labels`),
    /// checked per `spec`; `ca` is trusted as well for TLS backends. A URL that names no
    /// usable host (refused by validation) is checked as unreachable.
    pub fn new(
        route: &str,
        urls: &[String],
        labels: &[Arc<str>],
        spec: &config::HealthCheck,
        ca: Option<Arc<CaType>>,
    ) -> Probe {
        let targets = urls
            .iter()
            .zip(labels)
            .map(|(url, label)| target(url, label.clone(), spec, ca.clone()))
            .collect();
        Probe {
            route: route.to_string(),
            targets,
            timeout: spec.timeout,
        }
    }

    fn target(&self, backend: &Backend) -> Result<&Target> {
        backend
            .ext
            .get::<Index>()
            .and_then(|index| self.targets.get(index.0))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "not a member of this pool"))
    }

    /// The backend's host resolved now, as a pingora backend pingora's check can connect to.
    async fn resolve(&self, target: &Target) -> Result<Backend> {
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let found = tokio::time::timeout(self.timeout, lookup).await;
        let addr = match found {
            Ok(Ok(mut addrs)) => addrs.next(),
            Ok(Err(err)) => return Error::e_explain(ErrorType::ConnectNoRoute, err.to_string()),
            Err(_) => return Error::e_explain(ErrorType::ConnectTimedout, "resolving timed out"),
        };
        let addr = addr.ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no address"))?;
        Ok(Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight: 1,
            ext: Default::default(),
        })
    }
}

/// The check of one backend: its scheme, host and port come from its URL (`ws`/`wss` are
/// checked as `http`/`https`).
fn target(
    url: &str,
    label: Arc<str>,
    spec: &config::HealthCheck,
    ca: Option<Arc<CaType>>,
) -> Target {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let tls = matches!(scheme, "https" | "wss");
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let parsed: Option<Authority> = authority.parse().ok();
    let host = parsed.as_ref().map_or("", Authority::host);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .as_ref()
        .and_then(Authority::port_u16)
        .unwrap_or(if tls { 443 } else { 80 });
    let check: Box<dyn HealthCheck + Send + Sync> = match &spec.path {
        Some(path) => Box::new(http_check(&host, authority, path, tls, spec.timeout, ca)),
        None => Box::new(tcp_check(&host, tls, spec.timeout, ca)),
    };
    Target {
        label,
        host,
        port,
        check,
        last_error: Mutex::new(None),
    }
}

/// pingora's HTTP check: `GET path` with the backend's own `Host`; any 2xx passes.
fn http_check(
    host: &str,
    authority: &str,
    path: &str,
    tls: bool,
    timeout: Duration,
    ca: Option<Arc<CaType>>,
) -> HttpHealthCheck {
    let mut check = HttpHealthCheck::new(host, tls);
    if let Ok(mut request) = RequestHeader::build("GET", path.as_bytes(), None) {
        if request.insert_header("Host", authority).is_ok() {
            check.req = request;
        }
    }
    let options = &mut check.peer_template.options;
    options.connection_timeout = Some(timeout);
    options.total_connection_timeout = Some(timeout);
    options.read_timeout = Some(timeout);
    options.write_timeout = Some(timeout);
    options.ca = ca;
    check.validator = Some(Box::new(|response| {
        if response.status.is_success() {
            Ok(())
        } else {
            let code = response.status.as_u16();
            Error::e_explain(
                ErrorType::CustomCode("health check status", code),
                format!("answered {code}"),
            )
        }
    }));
    check
}

/// pingora's TCP check, with a TLS handshake for `wss://` backends.
fn tcp_check(host: &str, tls: bool, timeout: Duration, ca: Option<Arc<CaType>>) -> TcpHealthCheck {
    let mut check = if tls {
        *TcpHealthCheck::new_tls(host)
    } else {
        *TcpHealthCheck::new()
    };
    let options = &mut check.peer_template.options;
    options.connection_timeout = Some(timeout);
    options.total_connection_timeout = Some(timeout);
    options.ca = ca;
    check
}

/// A failed check in a few words, for its log line: the OS error (`ConnectRefused:
/// Connection refused (os error 111)`) or the check's own reason (`answered 503`) — not
/// pingora's whole chain, which prints every peer option.
fn summary(error: &Error) -> String {
    let root = error.root_cause();
    match root.downcast_ref::<Error>() {
        Some(root) => root.context.as_ref().map_or_else(
            || root.etype().as_str().to_string(),
            |context| context.as_str().to_string(),
        ),
        None => format!("{}: {root}", error.root_etype().as_str()),
    }
}

#[async_trait]
impl HealthCheck for Probe {
    async fn check(&self, backend: &Backend) -> Result<()> {
        let target = self.target(backend)?;
        let outcome = match self.resolve(target).await {
            Ok(resolved) => target.check.check(&resolved).await,
            Err(error) => Err(error),
        };
        let mut last = target
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *last = outcome.as_ref().err().map(|error| summary(error));
        outcome
    }

    async fn health_status_change(&self, backend: &Backend, healthy: bool) {
        let Ok(target) = self.target(backend) else {
            return;
        };
        let (route, backend) = (self.route.as_str(), &*target.label);
        if healthy {
            tracing::info!(route, backend, "backend passes its health check again");
        } else {
            let error = target
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let error = error.unwrap_or_default();
            tracing::warn!(route, backend, %error, "backend failed its health check; skipped until it passes");
        }
    }

    fn backend_summary(&self, backend: &Backend) -> String {
        let label = self.target(backend).map_or("?", |target| &*target.label);
        format!("route {} backend {label}", self.route)
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

//! Each route kind's block, turned into its runtime type with the checks that kind needs:
//! URL schemes, the captures its templates use, sensible numbers, readable CA files.

use super::issues::Issues;
use super::model::{HealthCheckFile, HttpBlock, PollBlock, SseBlock, Urls, WebSocketBlock};
use super::runtime::{
    ExtraHeaders, HttpRoute, MessageMapping, PollRoute, SseRoute, StreamSource, Upstreams,
    WebSocketRoute,
};
use super::upstreams;
use crate::routes::{PathPattern, Template};

/// Where a kind block sits (`routes[2]`) and what its route's path captures.
pub struct Site<'a> {
    /// The route's YAML path.
    pub at: &'a str,
    /// The route's compiled path; `None` when it is invalid (already reported), and then
    /// the captures its templates use are not checked.
    pub pattern: Option<&'a PathPattern>,
}

impl Site<'_> {
    /// The YAML path of a key of the route's kind block: `routes[2].poll.interval`.
    fn field(&self, kind: &str, name: &str) -> String {
        format!("{}.{kind}.{name}", self.at)
    }

    /// The URL templates of the kind — one, or a pool — with their health check: each an
    /// absolute URL with one of `schemes`, using only captures the path has.
    fn templates(
        &self,
        (kind, name): (&str, &str),
        urls: Urls,
        health_check: Option<HealthCheckFile>,
        schemes: &[&str],
        issues: &mut Issues,
    ) -> Upstreams<Template> {
        let listed = upstreams::list(self.field(kind, name), name, urls, issues);
        for (at, url) in &listed {
            check_url(at, url, schemes, issues);
            self.template(at, &Template::new(url), issues);
        }
        let health_check = health_check.map(|file| {
            let at = self.field(kind, "health_check");
            upstreams::health_check(at, kind == "websocket", file, &listed, issues)
        });
        Upstreams {
            urls: listed
                .into_iter()
                .map(|(_, url)| Template::new(url))
                .collect(),
            health_check,
        }
    }

    /// Reports each placeholder of `template` that the route path does not capture.
    pub fn template(&self, at: &str, template: &Template, issues: &mut Issues) {
        let Some(pattern) = self.pattern else {
            return;
        };
        let captured: Vec<&str> = pattern.capture_names().collect();
        for name in template.placeholders() {
            if !captured.contains(&name) {
                issues.add(
                    at,
                    format!("uses {{{name}}}, which the route path does not capture"),
                );
            }
        }
    }

    fn ca_file(&self, kind: &str, file: Option<&str>, issues: &mut Issues) {
        if let Some(file) = file {
            if let Err(reason) = crate::certs::read_certs(file) {
                issues.add(self.field(kind, "ca_file"), reason);
            }
        }
    }
}

/// `sse:`
pub fn sse(site: &Site, block: SseBlock, issues: &mut Issues) -> StreamSource {
    let upstream = site.templates(
        ("sse", "upstream"),
        block.upstream,
        block.health_check,
        &["http", "https"],
        issues,
    );
    site.ca_file("sse", block.ca_file.as_deref(), issues);
    StreamSource::Sse(SseRoute {
        upstream,
        share: block.share,
        upstream_idle_timeout: block.upstream_idle_timeout.filter(|d| !d.is_zero()),
        headers: extra_headers(block.headers),
        ca_file: block.ca_file,
    })
}

/// `poll:`
pub fn poll(site: &Site, block: PollBlock, issues: &mut Issues) -> StreamSource {
    let url = site.templates(
        ("poll", "url"),
        block.url,
        block.health_check,
        &["http", "https"],
        issues,
    );
    if block.interval.is_zero() {
        issues.add(site.field("poll", "interval"), "must be greater than 0s");
    }
    if block.max_depth == 0 {
        issues.add(site.field("poll", "max_depth"), "must be at least 1");
    }
    site.ca_file("poll", block.ca_file.as_deref(), issues);
    StreamSource::Poll(PollRoute {
        url,
        interval: block.interval,
        emit: block.emit,
        event: block.event,
        content: block.content,
        max_body_bytes: block.max_body_bytes.as_u64(),
        max_depth: block.max_depth,
        headers: extra_headers(block.headers),
        ca_file: block.ca_file,
    })
}

/// `websocket:`
pub fn websocket(site: &Site, block: WebSocketBlock, issues: &mut Issues) -> StreamSource {
    let url = site.templates(
        ("websocket", "url"),
        block.url,
        block.health_check,
        &["ws", "wss"],
        issues,
    );
    let subscribe = block.subscribe.map(Template::new);
    if let Some(subscribe) = &subscribe {
        site.template(&site.field("websocket", "subscribe"), subscribe, issues);
    }
    for (name, pointer) in [
        ("event_from", &block.event_from),
        ("id_from", &block.id_from),
        ("data_from", &block.data_from),
    ] {
        if pointer
            .as_deref()
            .is_some_and(|p| !p.is_empty() && !p.starts_with('/'))
        {
            issues.add(
                site.field("websocket", name),
                "a JSON pointer starts with '/'",
            );
        }
    }
    site.ca_file("websocket", block.ca_file.as_deref(), issues);
    StreamSource::WebSocket(WebSocketRoute {
        url,
        subscribe,
        mapping: MessageMapping {
            event_from: block.event_from,
            id_from: block.id_from,
            data_from: block.data_from,
            binary: block.binary,
        },
        subprotocol: block.subprotocol,
        headers: extra_headers(block.headers),
        max_message_bytes: usize::try_from(block.max_message_bytes.as_u64()).unwrap_or(usize::MAX),
        ping_interval: (!block.ping_interval.is_zero()).then_some(block.ping_interval),
        ca_file: block.ca_file,
    })
}

/// `http:`
pub fn http(site: &Site, block: HttpBlock, issues: &mut Issues) -> HttpRoute {
    let at = site.field("http", "upstream");
    let listed = upstreams::list(at, "upstream", block.upstream, issues);
    for (at, url) in &listed {
        check_url(at, url, &["http", "https"], issues);
    }
    let health_check = block.health_check.map(|file| {
        let at = site.field("http", "health_check");
        upstreams::health_check(at, false, file, &listed, issues)
    });
    HttpRoute {
        upstream: Upstreams {
            urls: listed
                .iter()
                .map(|(_, url)| url.parse().unwrap_or_default())
                .collect(),
            health_check,
        },
    }
}

fn extra_headers(headers: std::collections::BTreeMap<String, String>) -> ExtraHeaders {
    headers.into_iter().collect()
}

/// An absolute URL (placeholders allowed) with one of `schemes`.
pub fn check_url(at: &str, url: &str, schemes: &[&str], issues: &mut Issues) {
    let probe = Template::new(url).fill(&Default::default());
    let filled = probe.replace(['{', '}'], "x");
    match filled.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some() => {
            let scheme = uri.scheme_str().unwrap_or_default();
            if !schemes.contains(&scheme) {
                let mut reason = format!("scheme must be {}", schemes.join(" or "));
                reason.push_str(kind_hint(scheme));
                issues.add(at, reason);
            }
        }
        _ => issues.add(at, format!("'{url}' is not an absolute URL")),
    }
}

/// Which route kind a URL of `scheme` belongs to, for a scheme the kind does not take.
fn kind_hint(scheme: &str) -> &'static str {
    match scheme {
        "ws" | "wss" => "; a WebSocket upstream is a `websocket:` route (with `url:`)",
        "http" | "https" => {
            "; an http(s) upstream is an `sse:` route (a stream), `poll:` (JSON) or `http:`"
        }
        _ => "",
    }
}

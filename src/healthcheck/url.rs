//! The health-check URL: `http://host[:port][/path][?query]` split into what the request needs.
//!
//! Plain `http://` only; `https://`, credentials and spaces or control characters are refused
//! with a reason, before anything touches the network.

use super::HealthError;

/// Where a health-check request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written in the URL, without IPv6 brackets.
    pub host: String,
    /// The port (80 when the URL has none).
    pub port: u16,
    /// The `Host` header value: the URL's authority as written.
    pub authority: String,
    /// The request target: path and query, `/` when the URL has none.
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path][?query]`.
    pub fn parse(url: &str) -> Result<Target, HealthError> {
        parse(url).map_err(|reason| HealthError::Url {
            url: url.to_string(),
            reason,
        })
    }
}

/// [`Target::parse`] with the reason alone as the error.
fn parse(url: &str) -> Result<Target, &'static str> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err("only http:// URLs are supported"),
        None => return Err("expected http://HOST[:PORT]/PATH"),
    };
    if url
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("contains a space or a control character");
    }
    // The fragment is never sent; the authority ends where the path or the query begins.
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("credentials in the URL are not supported");
    }
    let (host, port) = host_and_port(authority)?;
    if host.is_empty() {
        return Err("has no host");
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok(Target {
        host: host.to_string(),
        port,
        authority: authority.to_string(),
        path,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → the host without brackets and the port (80).
fn host_and_port(authority: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').ok_or("unclosed '[' in host")?,
        None => authority.split_at(authority.rfind(':').unwrap_or(authority.len())),
    };
    let port = match port {
        "" => 80,
        p => p
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .ok_or("bad port")?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|err| panic!("{url}: {err}"))
    }

    #[test]
    fn parses_plain_http_urls() {
        let t = target("http://127.0.0.1:9090/readyz");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 9090, "/readyz")
        );
        assert_eq!(t.authority, "127.0.0.1:9090");
        let t = target("http://sse-edge");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("sse-edge", 80, "/")
        );
        let t = target("http://[::1]:9090?x=1#frag");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9090, "/?x=1")
        );
        let t = target("HTTP://h:1/a/b?c");
        assert_eq!(t.path, "/a/b?c");
    }

    #[test]
    fn refuses_what_it_cannot_ask() {
        for (url, reason) in [
            ("https://127.0.0.1:9090/readyz", "only http://"),
            ("127.0.0.1:9090/readyz", "expected http://"),
            ("http:///readyz", "no host"),
            ("http://h:99999/", "bad port"),
            ("http://h:x/", "bad port"),
            ("http://u:p@h/", "credentials"),
            ("http://h/a b", "space"),
            ("http://[::1/", "unclosed"),
        ] {
            let err = Target::parse(url).expect_err(url).to_string();
            assert!(err.contains(reason) && err.contains(url), "{url}: {err}");
        }
    }
}

//! `sse-edge healthcheck`: one blocking HTTP/1.1 `GET` of an admin URL, so a container's
//! `HEALTHCHECK` needs nothing the slim image lacks (no curl, no wget).
//!
//! Plain `http://` only, one request, one deadline for the whole exchange (connect, write,
//! status line). The answer's status line is all that is read: `2xx` is healthy, anything
//! else — another status, a refused connection, silence past the deadline — is an error
//! whose `Display` names the URL and the status or the OS error.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The URL `sse-edge healthcheck` asks when none is given: the admin listener's readiness.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/readyz";

/// The longest status line (plus whatever arrives with it) that is read.
const MAX_HEAD: usize = 8 * 1024;

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The URL is not a plain `http://host[:port][/path]` URL.
    #[error("healthcheck {url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    #[error("healthcheck {url}: cannot resolve {host}: {source}")]
    Resolve {
        /// The URL as given.
        url: String,
        /// The host part.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// Connecting, writing or reading failed (the OS error is inside).
    #[error("healthcheck {url}: {step} {addr}: {source}")]
    Io {
        /// The URL as given.
        url: String,
        /// `connect to`, `write to` or `read from`.
        step: &'static str,
        /// The address tried.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No complete status line within the deadline.
    #[error("healthcheck {url}: no answer within {timeout:?}")]
    Timeout {
        /// The URL as given.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The answer was not an HTTP/1.x response.
    #[error("healthcheck {url}: not an HTTP response: {line:?}")]
    NotHttp {
        /// The URL as given.
        url: String,
        /// The first line received (cut to 80 characters).
        line: String,
    },
    /// The server answered with a status outside 2xx.
    #[error("healthcheck {url}: status {status}")]
    Status {
        /// The URL as given.
        url: String,
        /// The status code and reason phrase, e.g. `503 Service Unavailable`.
        status: String,
    },
}

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
        let bad = |reason| HealthError::Url {
            url: url.to_string(),
            reason,
        };
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some(_) => return Err(bad("only http:// URLs are supported")),
            None => return Err(bad("expected http://HOST[:PORT]/PATH")),
        };
        if url
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("contains a space or a control character"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let path = tail.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in host"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Target {
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path,
        })
    }
}

/// `GET url` within `timeout`; `Ok` carries the status line's code and reason when it is 2xx.
pub fn check(url: &str, timeout: Duration) -> Result<String, HealthError> {
    let target = Target::parse(url)?;
    let deadline = Instant::now() + timeout;
    let timed_out = || HealthError::Timeout {
        url: url.to_string(),
        timeout,
    };
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|source| HealthError::Resolve {
            url: url.to_string(),
            host: target.host.clone(),
            source,
        })?
        .collect();
    let io = |step, addr, source: std::io::Error| match source.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => timed_out(),
        _ => HealthError::Io {
            url: url.to_string(),
            step,
            addr,
            source,
        },
    };
    // Try each resolved address in turn; report the last failure.
    let mut last_error = None;
    let mut connected = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                connected = Some((stream, addr));
                break;
            }
            Err(err) => last_error = Some(io("connect to", addr, err)),
        }
    }
    let Some((mut stream, addr)) = connected else {
        return Err(last_error.unwrap_or(HealthError::Resolve {
            url: url.to_string(),
            host: target.host.clone(),
            source: std::io::Error::new(ErrorKind::NotFound, "no address"),
        }));
    };
    let remaining = |deadline: Instant| {
        let left = deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sse-edge-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .set_write_timeout(Some(remaining(deadline).ok_or_else(timed_out)?))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|err| io("write to", addr, err))?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let line = loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            break String::from_utf8_lossy(&head[..end]).into_owned();
        }
        if head.len() >= MAX_HEAD {
            break String::from_utf8_lossy(&head).into_owned();
        }
        let left = remaining(deadline).ok_or_else(timed_out)?;
        stream
            .set_read_timeout(Some(left))
            .map_err(|err| io("read from", addr, err))?;
        match stream.read(&mut buf) {
            Ok(0) => break String::from_utf8_lossy(&head).into_owned(),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(io("read from", addr, err)),
        }
    };
    let (code, status) = parse_status_line(&line).ok_or_else(|| HealthError::NotHttp {
        url: url.to_string(),
        line: line.chars().take(80).collect(),
    })?;
    if (200..300).contains(&code) {
        Ok(status)
    } else {
        Err(HealthError::Status {
            url: url.to_string(),
            status,
        })
    }
}

/// `HTTP/1.1 503 Service Unavailable` → `(503, "503 Service Unavailable")`.
fn parse_status_line(line: &str) -> Option<(u16, String)> {
    let rest = line.strip_prefix("HTTP/")?;
    let (_version, rest) = rest.split_once(' ')?;
    let code_text = rest.get(..3)?;
    if !code_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if rest.len() > 3 && !rest[3..].starts_with(' ') {
        return None;
    }
    let code = code_text.parse().ok()?;
    Some((code, rest.trim_end().to_string()))
}

/// Parses `--timeout` values such as `2s` or `500ms`.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime_serde::re::humantime::parse_duration(text)
        .map_err(|err| format!("{err} (e.g. 2s, 500ms)"))?;
    if timeout.is_zero() {
        return Err("must be greater than 0s".into());
    }
    Ok(timeout)
}

/// The `healthcheck` command: prints `URL: STATUS` on success; the error is the one line the
/// caller prints on standard error.
pub fn run(url: &str, timeout: Duration) -> Result<(), String> {
    let status = check(url, timeout).map_err(|err| err.to_string())?;
    println!("{url}: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

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

    #[test]
    fn reads_status_lines() {
        assert_eq!(
            parse_status_line("HTTP/1.1 200 OK"),
            Some((200, "200 OK".into()))
        );
        assert_eq!(parse_status_line("HTTP/1.0 503"), Some((503, "503".into())));
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[test]
    fn timeouts_parse_with_units() {
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_timeout("2").is_err());
        assert!(parse_timeout("0s").is_err());
    }

    /// A one-shot server answering `response` (or nothing, holding the socket, when `None`).
    fn serve_once(response: Option<&'static str>) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.ends_with(b"\r\n\r\n") {
                match socket.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            match response {
                Some(answer) => {
                    let _ = socket.write_all(answer.as_bytes());
                }
                None => std::thread::sleep(Duration::from_millis(800)),
            }
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, handle)
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_the_request_is_well_formed() {
        let (addr, server) = serve_once(Some("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"));
        let url = format!("http://{addr}/readyz");
        assert_eq!(
            check(&url, Duration::from_secs(2)).expect("healthy"),
            "200 OK"
        );
        let request = server.join().expect("server");
        assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains(&format!("\r\nHost: {addr}\r\n")),
            "{request}"
        );
    }

    #[test]
    fn other_statuses_silence_and_refusals_name_the_url_and_cause() {
        let (addr, server) = serve_once(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n"));
        let url = format!("http://{addr}/readyz");
        let err = check(&url, Duration::from_secs(2))
            .expect_err("503")
            .to_string();
        assert_eq!(
            err,
            format!("healthcheck {url}: status 503 Service Unavailable")
        );
        server.join().expect("server");

        let (addr, server) = serve_once(None);
        let url = format!("http://{addr}/readyz");
        let started = Instant::now();
        let err = check(&url, Duration::from_millis(200))
            .expect_err("silent")
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by the timeout"
        );
        assert_eq!(err, format!("healthcheck {url}: no answer within 200ms"));
        server.join().expect("server");

        let free = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let url = format!("http://{free}/readyz");
        let err = check(&url, Duration::from_secs(2))
            .expect_err("refused")
            .to_string();
        assert!(
            err.starts_with(&format!("healthcheck {url}: connect to {free}: "))
                && err.contains("os error"),
            "{err}"
        );
    }
}

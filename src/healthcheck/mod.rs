//! `sse-edge healthcheck`: one blocking HTTP/1.1 `GET` of an admin URL, so a container's
//! `HEALTHCHECK` needs nothing the slim image lacks (no curl, no wget).
//!
//! Plain `http://` only, one request, one deadline for the whole exchange (connect, write,
//! status line). The answer's status line is all that is read: `2xx` is healthy, anything
//! else — another status, a refused connection, silence past the deadline — is an error
//! whose `Display` names the URL and the status or the OS error.

mod url;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub use url::Target;

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
        source: io::Error,
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
        source: io::Error,
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

/// `GET url` within `timeout`; `Ok` carries the status line's code and reason when it is 2xx.
pub fn check(url: &str, timeout: Duration) -> Result<String, HealthError> {
    let exchange = Exchange {
        target: Target::parse(url)?,
        url,
        timeout,
        deadline: Instant::now() + timeout,
    };
    let (mut stream, addr) = exchange.connect()?;
    exchange.send(&mut stream, addr)?;
    let line = exchange.read_status_line(&mut stream, addr)?;
    let (code, status) = parse_status_line(&line).ok_or_else(|| HealthError::NotHttp {
        url: url.to_string(),
        line: line.chars().take(80).collect(),
    })?;
    if !(200..300).contains(&code) {
        return Err(HealthError::Status {
            url: url.to_string(),
            status,
        });
    }
    Ok(status)
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

/// One request's context: where it goes, the URL every error names, the deadline every step
/// shares.
struct Exchange<'a> {
    target: Target,
    url: &'a str,
    timeout: Duration,
    deadline: Instant,
}

impl Exchange<'_> {
    /// Resolves the host and connects to the first address that answers; the last failure
    /// is the error.
    fn connect(&self) -> Result<(TcpStream, SocketAddr), HealthError> {
        let target = &self.target;
        let unresolved = |source| HealthError::Resolve {
            url: self.url.to_string(),
            host: target.host.clone(),
            source,
        };
        let addrs = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(unresolved)?;
        let mut last_error = unresolved(io::Error::new(ErrorKind::NotFound, "no address"));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.left()?) {
                Ok(stream) => return Ok((stream, addr)),
                Err(err) => last_error = self.io("connect to", addr, err),
            }
        }
        Err(last_error)
    }

    /// Writes the `GET` with `Connection: close`.
    fn send(&self, stream: &mut TcpStream, addr: SocketAddr) -> Result<(), HealthError> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sse-edge-healthcheck\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.target.path, self.target.authority
        );
        stream
            .set_write_timeout(Some(self.left()?))
            .and_then(|()| stream.write_all(request.as_bytes()))
            .map_err(|err| self.io("write to", addr, err))
    }

    /// Reads up to the first `\r\n`, the end of the stream or [`MAX_HEAD`] bytes, whichever
    /// comes first, and returns what came before it.
    fn read_status_line(
        &self,
        stream: &mut TcpStream,
        addr: SocketAddr,
    ) -> Result<String, HealthError> {
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
                head.truncate(end);
                break;
            }
            if head.len() >= MAX_HEAD {
                break;
            }
            stream
                .set_read_timeout(Some(self.left()?))
                .map_err(|err| self.io("read from", addr, err))?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(self.io("read from", addr, err)),
            }
        }
        Ok(String::from_utf8_lossy(&head).into_owned())
    }

    /// The time left before the deadline, or the timeout error once it has passed.
    fn left(&self) -> Result<Duration, HealthError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        Ok(left)
    }

    fn timed_out(&self) -> HealthError {
        HealthError::Timeout {
            url: self.url.to_string(),
            timeout: self.timeout,
        }
    }

    /// An OS error at `step`: the timeout error when a socket deadline fired, else `Io`.
    fn io(&self, step: &'static str, addr: SocketAddr, source: io::Error) -> HealthError {
        match source.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => self.timed_out(),
            _ => HealthError::Io {
                url: self.url.to_string(),
                step,
                addr,
                source,
            },
        }
    }
}

/// `HTTP/1.1 503 Service Unavailable` → `(503, "503 Service Unavailable")`.
fn parse_status_line(line: &str) -> Option<(u16, String)> {
    let (_version, status) = line.strip_prefix("HTTP/")?.split_once(' ')?;
    let code = status.split(' ').next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((code.parse().ok()?, status.trim_end().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

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

//! Shared test harness: the real `sse-edge` binary on free loopback ports, a builder for its
//! YAML, a raw HTTP/1.1 SSE client, and a scriptable SSE upstream. Every wait has a deadline.
#![allow(dead_code, unused_imports)]

pub mod auth_server;
pub mod backend;
pub mod certs;
pub mod chromium;
pub mod client;
pub mod config;
pub mod json_api;
pub mod promql;
pub mod redis;
pub mod sockets;
pub mod upstream;
pub mod ws_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use client::{Frame, SseClient};
pub use config::{yaml, Config, Listen, Route, Yaml};
pub use upstream::{SseUpstream, UpstreamConn};

/// A default deadline for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(10);

/// A loopback port free now (bound then released), for a process the test starts next.
/// Chosen below Linux's ephemeral range (32768–60999): a port the kernel hands out (`:0`)
/// can be taken as the source port of any outgoing connection before that process binds
/// it, and the proxy then fails to start with "Address already in use".
pub fn free_addr() -> SocketAddr {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("local addr");
        }
    }
    panic!("no free loopback port in 20000-31999 after 1000 tries")
}

/// The proxy process, killed (by its pid) when dropped.
pub struct Proxy {
    child: Child,
    /// The SSE/HTTP listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    dir: std::path::PathBuf,
}

/// The config file a proxy in `dir` runs with.
fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("sse-edge.yaml")
}

impl Proxy {
    /// Starts the proxy with `body` (YAML without `listen`/`admin`) and waits for `/healthz`.
    pub fn start(body: &str) -> Proxy {
        let addr = free_addr();
        let admin = free_addr();
        let yaml = format!("listen: {addr}\nadmin: {{ listen: {admin} }}\n{body}");
        Proxy::start_with_yaml(&yaml, addr, admin)
    }

    /// Starts the proxy with `body` like [`Proxy::start`], with `env` set and its standard
    /// error written to a file that [`Proxy::log`] reads.
    pub fn start_logged(body: &str, env: &[(&str, &str)]) -> Proxy {
        let addr = free_addr();
        let admin = free_addr();
        let yaml = format!("listen: {addr}\nadmin: {{ listen: {admin} }}\n{body}");
        Proxy::launch(&yaml, addr, admin, |command, dir| {
            let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
            command.envs(env.iter().copied()).stderr(log);
        })
    }

    /// Everything the proxy has written to standard error (after [`Proxy::start_logged`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Starts the proxy with a complete YAML file whose listeners are `addr` and `admin`.
    pub fn start_with_yaml(yaml: &str, addr: SocketAddr, admin: SocketAddr) -> Proxy {
        Proxy::launch(yaml, addr, admin, |_, _| {})
    }

    fn launch(
        yaml: &str,
        addr: SocketAddr,
        admin: SocketAddr,
        prepare: impl FnOnce(&mut Command, &std::path::Path),
    ) -> Proxy {
        let dir = std::env::temp_dir().join(format!(
            "sse-edge-test-{}-{}",
            std::process::id(),
            admin.port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = config_file(&dir);
        std::fs::write(&config, yaml).expect("write config");
        let mut command = sse_edge();
        command.arg("--config").arg(&config);
        prepare(&mut command, &dir);
        let child = command.spawn().expect("spawn sse-edge");
        let mut proxy = Proxy {
            child,
            addr,
            admin,
            dir,
        };
        proxy.wait_ready();
        proxy
    }

    /// Waits until both listeners answer; panics with the exit status and the log (after
    /// [`Proxy::start_logged`]) if the process ends first, e.g. when a port was taken.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "sse-edge exited before it was ready: {status}\n{}",
                    self.log()
                );
            }
            if http_get(self.admin, "/healthz").is_some_and(|(status, _)| status == 200)
                && TcpStream::connect(self.addr).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "sse-edge did not become ready on {} within {WAIT:?}",
            self.addr
        );
    }

    /// Rewrites the config file with `body` (YAML without `listen`/`admin`, which stay as
    /// they are), sends SIGHUP, and waits until the reload has been counted. Returns
    /// whether it applied (`config_reloads_total{result="ok"}` moved).
    pub fn reload(&self, body: &str) -> bool {
        let yaml = format!(
            "listen: {}\nadmin: {{ listen: {} }}\n{body}",
            self.addr, self.admin
        );
        self.reload_with_yaml(&yaml)
    }

    /// Like [`Proxy::reload`] with a complete file.
    pub fn reload_with_yaml(&self, yaml: &str) -> bool {
        let count = |result: &str| {
            self.metric(&format!(
                "sse_edge_config_reloads_total{{result=\"{result}\"}}"
            ))
        };
        let (ok, error) = (count("ok"), count("error"));
        std::fs::write(config_file(&self.dir), yaml).expect("write config");
        self.signal("HUP");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if count("ok") > ok {
                return true;
            }
            if count("error") > error {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the reload was not counted within {WAIT:?}");
    }

    /// Starts a second process on this proxy's config file with `--upgrade`: it waits for
    /// this one's listening sockets, which [`Proxy::signal`]`("QUIT")` hands over. Not
    /// waited for: it cannot answer before the handover.
    pub fn spawn_upgrade(&self) -> Child {
        sse_edge()
            .arg("--config")
            .arg(config_file(&self.dir))
            .arg("--upgrade")
            .spawn()
            .expect("spawn sse-edge --upgrade")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://ADDR/path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The Prometheus text from `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The value of one sample, e.g. `sse_edge_connections_active{route="/s"}`; 0 if absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }

    /// Sends a signal (e.g. `"TERM"`) to the proxy process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The proxy's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `sse-edge` binary under test, logging at `RUST_LOG` (default `warn`) to stderr.
pub fn sse_edge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-edge"));
    command
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Writes `yaml` to `dir/name` and runs `sse-edge check` on it: success and all output.
pub fn check_config(dir: &std::path::Path, name: &str, yaml: &str) -> (bool, String) {
    let file = dir.join(name);
    std::fs::write(&file, yaml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .expect("run check");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A request head as the test servers read it: its path and headers (names lowercased).
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The request target.
    pub path: String,
    /// `(name, value)` pairs in order, names lowercased.
    pub headers: Vec<(String, String)>,
}

/// Reads and parses one request head; `None` if the connection ended first.
pub async fn parse_request_head<R>(reader: &mut R) -> Option<RequestHead>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(RequestHead { path, headers });
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

/// Reads a request head up to its blank line; false if the connection ended first.
pub async fn read_request_head<R>(reader: &mut R) -> bool
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.trim().is_empty() => return true,
            Ok(_) => {}
        }
    }
}

/// The value of `sample` in Prometheus text — `name`, or `name{label="value",...}` — summed
/// over every series of `name` that has all of those labels (a series may have more, such as
/// the `backend` of `upstream_errors_total`); 0 when there is none.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    let (name, wanted) = series(sample);
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series_part, value) = line.rsplit_once(' ')?;
            let (series_name, labels) = series(series_part);
            let all = wanted.iter().all(|label| labels.contains(label));
            (series_name == name && all).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// A series' name and its `label="value"` pairs.
fn series(text: &str) -> (&str, Vec<&str>) {
    let Some((name, labels)) = text.split_once('{') else {
        return (text, Vec::new());
    };
    let labels = labels.strip_suffix('}').unwrap_or(labels);
    let mut pairs = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (at, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pairs.push(&labels[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        pairs.push(&labels[start..]);
    }
    (name, pairs)
}

/// What `sse-edge demo` exports at `/metrics` once it runs (it is started on free ports
/// and killed by pid before this returns): the families and label values the deployment
/// kit's dashboards and alerts may name.
pub fn demo_metrics() -> String {
    let (listen, admin) = (free_addr(), free_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
        .args(["demo", "--listen", &listen.to_string()])
        .args(["--admin", &admin.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sse-edge demo");
    let _demo = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((200, body)) = http_get(admin, "/metrics") {
            if body.contains("# TYPE sse_edge_") {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no /metrics from the demo within 15s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the child (by pid) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking `GET` returning status and body (for admin endpoints).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Polls `check` until it is true or `limit` passes; returns whether it became true.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    check()
}

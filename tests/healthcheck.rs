//! `sse-edge healthcheck`, the container HEALTHCHECK: exit 0 against a live admin listener,
//! non-zero with a one-line message naming the URL and the cause otherwise.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_addr, Proxy};

const CONFIG: &str = "routes:\n  - path: /api/*\n    http: { upstream: \"http://127.0.0.1:9\" }\n";

/// Runs `sse-edge healthcheck ARGS`, killing it if it outlives `limit`.
fn healthcheck(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
        .arg("healthcheck")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sse-edge healthcheck");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sse-edge healthcheck {args:?} did not exit within {limit:?}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_live_admin_listener_is_healthy() {
    let proxy = Proxy::start(CONFIG);
    let url = format!("http://{}/readyz", proxy.admin);
    let out = healthcheck(&["--url", &url], Duration::from_secs(10));
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), format!("{url}: 200 OK\n"));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_non_2xx_answer_fails_with_its_status() {
    let proxy = Proxy::start(CONFIG);
    let url = format!("http://{}/no-such-endpoint", proxy.admin);
    let out = healthcheck(&["--url", &url], Duration::from_secs(10));
    assert!(!out.status.success(), "a 404 is not healthy");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("status 404"),
        "{stderr}"
    );
}

#[test]
fn a_port_nobody_listens_on_fails_with_the_os_error() {
    let dead = free_addr();
    let url = format!("http://{dead}/readyz");
    let out = healthcheck(&["--url", &url, "--timeout", "2s"], Duration::from_secs(10));
    assert!(!out.status.success(), "nothing listens on {dead}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&url) && stderr.contains("os error"),
        "names the URL and the OS error: {stderr}"
    );
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn https_urls_are_refused_up_front() {
    let out = healthcheck(
        &["--url", "https://127.0.0.1:9090/readyz"],
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("only http:// URLs are supported"),
        "{}",
        text(&out.stderr)
    );
}

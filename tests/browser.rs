//! `sse-edge demo` in a real browser: Debian's headless Chromium, driven over the Chrome
//! DevTools Protocol, loads the demo page through the proxy and the test reads the page's
//! `window.demoState`. Skipped (with a printed reason) only when `/usr/bin/chromium` is absent.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{free_addr, http_get, metric_value};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A child process killed (by its pid) and reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo as the real binary, on a free port with a free admin port.
struct Demo {
    _child: Killed,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Demo {
    fn start() -> Demo {
        let addr = free_addr();
        let admin = free_addr();
        let child = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
            .args(["demo", "--listen", &addr.to_string()])
            .args(["--admin", &admin.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sse-edge demo");
        let demo = Demo {
            _child: Killed(child),
            addr,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let page = http_get(addr, "/")
                .is_some_and(|(status, body)| status == 200 && body.contains("window.demoState"));
            let admin_ok = http_get(admin, "/healthz").is_some_and(|(status, _)| status == 200);
            if page && admin_ok {
                return demo;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not serve its page on {addr} within 15s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of the first `name{...}` sample holding every one of `labels`; 0 if absent.
    fn sample_with(&self, name: &str, labels: &[&str]) -> f64 {
        let text = http_get(self.admin, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .find(|line| labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    fn metric(&self, sample: &str) -> f64 {
        metric_value(
            &http_get(self.admin, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default(),
            sample,
        )
    }
}

/// Headless Chromium with a fresh profile; its DevTools websocket URL read from stderr.
struct Browser {
    _child: Killed,
    ws_url: String,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `_child` is dropped after this body: kill first, then remove the profile.
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// `None` (after printing why) when Chromium is not installed.
    fn launch(name: &str) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() {
            eprintln!(
                "SKIPPED: {CHROMIUM} not found; install Debian's `chromium` package to run the \
                 browser tests (.ci/run does)"
            );
            return None;
        }
        let profile = std::env::temp_dir().join(format!(
            "sse-edge-chromium-{}-{name}-{}",
            std::process::id(),
            fastrand_suffix()
        ));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chromium");
        let stderr = child.stderr.take().expect("chromium stderr");
        let child = Killed(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stderr after the URL so Chromium never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let ws_url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed `DevTools listening on ws://...` within 30s");
        Some(Browser {
            _child: child,
            ws_url,
            profile,
        })
    }
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A Chrome DevTools Protocol connection attached (flat mode) to one page target.
struct Cdp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    /// Connects to the browser and attaches to a new blank page.
    async fn open_page(browser: &Browser) -> Cdp {
        let (ws, _) = timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(browser.ws_url.as_str()),
        )
        .await
        .expect("CDP connect within 10s")
        .expect("CDP websocket");
        let mut cdp = Cdp {
            ws,
            next_id: 0,
            session: None,
        };
        let target = cdp
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = cdp
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        cdp.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        );
        cdp.call("Page.enable", json!({})).await;
        cdp
    }

    /// Sends one command and waits (10s at most) for its result, skipping events.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        timeout(
            Duration::from_secs(10),
            self.ws.send(Message::text(message.to_string())),
        )
        .await
        .expect("CDP send within 10s")
        .expect("CDP send");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no CDP answer to {method} within 10s"))
                .expect("CDP connection open")
                .expect("CDP frame");
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).expect("CDP JSON");
            if reply["id"].as_u64() == Some(id) {
                assert!(reply.get("error").is_none(), "{method} failed: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// `window.demoState` as JSON (the EventSource objects left out).
    async fn demo_state(&mut self) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": "window.demoState ? JSON.stringify(window.demoState, \
                                   (k, v) => k === 'source' ? undefined : v) : 'null'",
                    "returnByValue": true,
                }),
            )
            .await;
        let text = result["result"]["value"].as_str().unwrap_or("null");
        serde_json::from_str(text).expect("demoState JSON")
    }

    /// Polls `demoState` until `check` holds or `limit` passes; returns the last state.
    async fn wait_state(&mut self, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let state = self.demo_state().await;
            if check(&state) || Instant::now() >= deadline {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a PNG of the page under `target/browser-artifacts/`.
    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("browser-artifacts");
        std::fs::create_dir_all(&dir).expect("artifact dir");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

fn events(state: &Value, stream: &str) -> u64 {
    state["streams"][stream]["events"].as_u64().unwrap_or(0)
}

fn ids(state: &Value, stream: &str) -> Vec<u64> {
    state["streams"][stream]["ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|id| {
                    id.as_str()
                        .and_then(|id| id.parse().ok())
                        .unwrap_or_else(|| panic!("{stream} id {id} is not a number"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Events after the last reconnect: the stream's ids since its last `open`.
fn reconnected_and_flowing(state: &Value) -> bool {
    let prices = &state["streams"]["prices"];
    prices["reconnects"].as_u64().unwrap_or(0) >= 1
        && prices["readyState"] == "open"
        && events(state, "prices") >= 4
}

#[tokio::test(flavor = "multi_thread")]
async fn page_streams_prices_resumes_without_gaps_and_reports_429() {
    let Some(browser) = Browser::launch("sse") else {
        return;
    };
    let demo = Demo::start();
    let mut page = Cdp::open_page(&browser).await;
    page.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/", demo.addr) }),
    )
    .await;

    let state = page
        .wait_state(Duration::from_secs(20), |s| {
            events(s, "prices") >= 3 && s["limit"]["probes"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert!(
        events(&state, "prices") >= 3,
        "prices events reached the page: {}",
        state["streams"]["prices"]
    );

    // The proxy closes price streams after max_lifetime (10s ±10%); EventSource reconnects
    // about 1s later by itself, sending Last-Event-ID.
    let state = page
        .wait_state(Duration::from_secs(30), |s| {
            reconnected_and_flowing(s) && s["limit"]["saw429"] == true
        })
        .await;
    let shot = page.screenshot("demo.png").await;
    eprintln!("screenshot: {}", shot.display());

    let prices = &state["streams"]["prices"];
    assert!(
        reconnected_and_flowing(&state),
        "the browser reconnected after the proxy closed the stream: {prices}"
    );
    let ids = ids(&state, "prices");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids are consecutive across the reconnect (no gap, no duplicate): {ids:?}"
    );
    assert_eq!(prices["gaps"], 0, "the page saw no gap: {prices}");
    assert!(
        demo.metric("sse_edge_replay_hits_total{route=\"/events/prices\"}") >= 1.0,
        "the reconnect was served from the replay ring (Last-Event-ID)"
    );

    let limit = &state["limit"];
    assert_eq!(limit["saw429"], true, "the page reported a 429: {limit}");
    let statuses: Vec<u64> = limit["statuses"]
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(
        statuses.windows(2).any(|w| w == [200, 429]),
        "first stream accepted, second refused: {statuses:?}"
    );
    assert!(
        demo.sample_with(
            "sse_edge_connections_rejected_total",
            &["route=\"/events/limited\"", "reason=\"per_client\""]
        ) >= 1.0,
        "the 429 was counted"
    );

    // When the proxy goes away the page says so instead of going blank.
    drop(demo);
    let state = page
        .wait_state(Duration::from_secs(10), |s| {
            s["streams"]["prices"]["error"].is_string()
        })
        .await;
    page.screenshot("demo-proxy-down.png").await;
    let prices = &state["streams"]["prices"];
    assert!(
        prices["error"].is_string() && prices["errors"].as_u64().unwrap_or(0) >= 1,
        "the page shows an error state once the proxy is gone: {prices}"
    );
}

/// Waits on the `poll` and `websocket` sources (being built in other branches).
#[tokio::test(flavor = "multi_thread")]
async fn page_streams_orders_and_trades() {
    let Some(browser) = Browser::launch("sources") else {
        return;
    };
    let demo = Demo::start();
    let mut page = Cdp::open_page(&browser).await;
    page.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/", demo.addr) }),
    )
    .await;
    let state = page
        .wait_state(Duration::from_secs(20), |s| {
            events(s, "orders") >= 2 && events(s, "trades") >= 2
        })
        .await;
    page.screenshot("demo-sources.png").await;

    let orders = &state["streams"]["orders"];
    assert!(
        events(&state, "orders") >= 2,
        "the polled orders API reached the page (snapshot + a change): {orders}"
    );
    assert!(
        orders["doc"]["items"].is_array(),
        "the page rebuilt the order document from snapshot and patches: {orders}"
    );
    let version = orders["doc"]["version"].as_u64().expect("document version");
    assert_eq!(
        orders["doc"],
        sse_edge::demo::upstreams::order_document("1", version),
        "snapshot + patches rebuilt exactly the upstream's document"
    );
    let trades = &state["streams"]["trades"];
    assert!(
        trades["names"]["trade"].as_u64().unwrap_or(0) >= 1,
        "trade messages from the WebSocket feed reached the page: {trades}"
    );
    let ids = ids(&state, "trades");
    assert!(
        ids.windows(2).all(|w| w[1] > w[0]),
        "trade ids (from /seq) increase: {ids:?}"
    );
}

#[test]
fn demo_refuses_a_taken_port_and_names_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let child = Command::new(env!("CARGO_BIN_EXE_sse-edge"))
        .args(["demo", "--listen", &addr.to_string()])
        .args(["--admin", &free_addr().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sse-edge demo");
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not exit within 10s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "non-zero exit on a taken port");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "the message names the port: {stderr}"
    );
}

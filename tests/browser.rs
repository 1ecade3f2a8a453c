//! `sse-edge demo` in a real browser: Debian's headless Chromium, driven over the Chrome
//! DevTools Protocol, loads the demo page through the proxy and the test reads the page's
//! `window.demoState`. Skipped (with a printed reason) only when `/usr/bin/chromium` is absent.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::chromium::{Browser, Cdp, Killed};
use common::{free_addr, http_get, metric_value};
use serde_json::{json, Value};

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
        let child = common::sse_edge()
            .args(["demo", "--listen", &addr.to_string()])
            .args(["--admin", &admin.to_string()])
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

/// Chromium showing the demo page; `None` (test skipped) without Chromium.
async fn open_demo_page(name: &str) -> Option<(Browser, Demo, Cdp)> {
    let browser = Browser::launch(name)?;
    let demo = Demo::start();
    let mut page = Cdp::open_page(&browser).await;
    page.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/", demo.addr) }),
    )
    .await;
    Some((browser, demo, page))
}

#[tokio::test(flavor = "multi_thread")]
async fn page_streams_prices_resumes_without_gaps_and_reports_429() {
    let Some((_browser, demo, mut page)) = open_demo_page("sse").await else {
        return;
    };

    let state = page
        .wait_state("demoState", Duration::from_secs(20), |s| {
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
        .wait_state("demoState", Duration::from_secs(30), |s| {
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
        .wait_state("demoState", Duration::from_secs(10), |s| {
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

/// The polled orders and the WebSocket trades reach the page.
#[tokio::test(flavor = "multi_thread")]
async fn page_streams_orders_and_trades() {
    let Some((_browser, _demo, mut page)) = open_demo_page("sources").await else {
        return;
    };
    let state = page
        .wait_state("demoState", Duration::from_secs(20), |s| {
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

/// The signed-in stream: the demo backend's token cookie opens the user's stream, and the
/// same request without the cookie is refused with 401.
#[tokio::test(flavor = "multi_thread")]
async fn page_signs_in_and_streams_per_user_beside_a_401() {
    let Some((_browser, demo, mut page)) = open_demo_page("auth").await else {
        return;
    };
    let state = page
        .wait_state("demoState", Duration::from_secs(20), |s| {
            s["auth"]["events"].as_u64().unwrap_or(0) >= 2 && s["auth"]["status"].is_u64()
        })
        .await;
    page.screenshot("demo-auth.png").await;
    let auth = &state["auth"];
    assert_eq!(auth["status"], 401, "no cookie, no stream: {auth}");
    assert_eq!(auth["challenge"], "Bearer", "{auth}");
    assert_eq!(auth["user"], sse_edge::demo::upstreams::DEMO_USER, "{auth}");
    assert!(
        auth["events"].as_u64().unwrap_or(0) >= 2,
        "the user's notifications reached the page: {auth}"
    );
    let last: Value = serde_json::from_str(auth["last"].as_str().unwrap_or("null")).expect("json");
    assert_eq!(last["user"], sse_edge::demo::upstreams::DEMO_USER, "{auth}");
    let route = "route=\"/events/users/{user}\"";
    assert!(
        demo.sample_with(
            "sse_edge_auth_decisions_total",
            &[route, "result=\"allowed\""]
        ) >= 1.0
    );
    assert!(
        demo.sample_with(
            "sse_edge_auth_decisions_total",
            &[route, "result=\"unauthenticated\""]
        ) >= 1.0
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

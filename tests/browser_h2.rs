//! HTTP/2 in a real browser: headless Chromium loads a page over the proxy's TLS listener and
//! opens eight `EventSource`s to the same origin. Over HTTP/1.1 Chromium allows six
//! connections per origin, so the seventh and eighth stream would stall; over h2 they all share
//! one connection and every stream receives events. The certificate is trusted only by its SPKI
//! hash (`--ignore-certificate-errors-spki-list`). Skipped (with a printed reason) only when
//! `/usr/bin/chromium` is absent.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::certs::Pki;
use common::chromium::Browser;
use common::chromium::Cdp;
use common::{free_addr, Config, Listen, Proxy, Route, SseUpstream, UpstreamConn};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const STREAMS: usize = 8;

/// The page: opens `STREAMS` EventSources to `/events/0` .. `/events/7` and records, per
/// stream, its state and the data of every event in `window.h2State`.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>sse-edge h2</title></head>
<body><h1>8 EventSources over one origin</h1><ol id="list"></ol>
<script>
window.h2State = { streams: [] };
for (let n = 0; n < 8; n++) {
  const entry = { n, opens: 0, errors: 0, events: 0, data: [], readyState: 'connecting' };
  window.h2State.streams.push(entry);
  const item = document.createElement('li');
  item.textContent = `stream ${n}: connecting`;
  document.getElementById('list').appendChild(item);
  const render = () => {
    item.textContent = `stream ${n}: ${entry.readyState}, ${entry.events} events ${entry.data.join(' | ')}`;
  };
  const source = new EventSource(`/events/${n}`);
  source.onopen = () => { entry.opens++; entry.readyState = 'open'; render(); };
  source.onerror = () => { entry.errors++; entry.readyState = source.readyState === 2 ? 'closed' : 'connecting'; render(); };
  source.onmessage = (e) => { entry.events++; entry.data.push(e.data); render(); };
}
</script></body></html>"#;

/// A tiny HTTP/1.1 server answering every request with `PAGE`.
async fn page_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind page");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                if !common::read_request_head(&mut reader).await {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = reader.get_mut().write_all(response.as_bytes()).await;
                let _ = reader.get_mut().shutdown().await;
            });
        }
    });
    addr
}

/// Events each stream received, in page order.
fn event_counts(state: &Value) -> Vec<u64> {
    state["streams"]
        .as_array()
        .map(|streams| {
            streams
                .iter()
                .map(|s| s["events"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

fn all_streams_have(state: &Value, events: u64) -> bool {
    let counts = event_counts(state);
    counts.len() == STREAMS && counts.iter().all(|&c| c >= events)
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_event_sources_on_one_origin_all_stream_over_h2() {
    let pki = Pki::new("browser-h2");
    let Some(browser) = Browser::launch_with(
        "h2",
        &[format!(
            "--ignore-certificate-errors-spki-list={}",
            pki.spki_sha256_base64()
        )],
    ) else {
        return;
    };
    let mut upstream = SseUpstream::start().await;
    let page_addr = page_server().await;
    let addr = free_addr();
    let admin = free_addr();
    let yaml = Config::new()
        .listen([Listen::tls(addr, pki.path("cert.pem"), pki.path("key.pem"))])
        .admin(admin)
        .set("limits.per_client", 20)
        .set("defaults.heartbeat", "1s")
        .route(Route::sse("/events/{n}", upstream.url("/stream/{n}")))
        .route(Route::http("/", format!("http://{page_addr}")))
        .yaml();
    let proxy = Proxy::start_with_yaml(&yaml, addr, admin);

    let mut page = Cdp::open_page(&browser).await;
    page.call(
        "Page.navigate",
        json!({ "url": format!("https://127.0.0.1:{}/", proxy.addr.port()) }),
    )
    .await;

    // Every stream reaches the upstream: 8 distinct upstream requests, one per path.
    // (The deadline stays under `next_conn`'s own, so a stall fails the assertion below.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
    let mut conns: Vec<UpstreamConn> = Vec::new();
    for _ in 0..STREAMS {
        match tokio::time::timeout_at(deadline, upstream.next_conn()).await {
            Ok(conn) => conns.push(conn),
            Err(_) => break,
        }
    }
    let state = page.state("h2State").await;
    let mut paths: Vec<String> = conns.iter().map(|c| c.path.clone()).collect();
    paths.sort();
    let expected: Vec<String> = (0..STREAMS).map(|n| format!("/stream/{n}")).collect();
    assert_eq!(
        paths, expected,
        "all {STREAMS} EventSources reached the upstream through the proxy; page: {state}"
    );

    for round in 1..=2 {
        for conn in &mut conns {
            let n = conn.path.trim_start_matches("/stream/").to_string();
            conn.send(&format!("id: {round}\ndata: stream {n} event {round}\n\n"))
                .await;
        }
    }
    let state = page
        .wait_state("h2State", Duration::from_secs(15), |s| {
            all_streams_have(s, 2)
        })
        .await;
    let shot = page.screenshot("h2.png").await;
    eprintln!("screenshot: {}", shot.display());

    assert!(
        all_streams_have(&state, 2),
        "all {STREAMS} streams received both events (counts {:?}): {state}",
        event_counts(&state)
    );
    for (n, stream) in state["streams"]
        .as_array()
        .expect("streams array")
        .iter()
        .enumerate()
    {
        assert_eq!(
            stream["data"],
            json!([format!("stream {n} event 1"), format!("stream {n} event 2")]),
            "stream {n} got its own events, in order"
        );
        assert_eq!(stream["readyState"], "open", "stream {n} is open: {stream}");
    }

    let protocol = page
        .evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")
        .await;
    assert_eq!(protocol, "h2", "the page was loaded over HTTP/2");
    let stream_protocols = page
        .evaluate(
            "JSON.stringify(performance.getEntriesByType('resource')\
             .filter(e => e.name.includes('/events/')).map(e => e.nextHopProtocol))",
        )
        .await;
    eprintln!("event-stream resource protocols: {stream_protocols}");
    assert!(
        (proxy.metric("sse_edge_connections_active{route=\"/events/{n}\"}") - STREAMS as f64).abs()
            < f64::EPSILON,
        "the proxy holds {STREAMS} active streams"
    );

    drop(page);
    drop(browser);
    drop(proxy);
}

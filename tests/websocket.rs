//! `websocket` routes end to end: the real binary between a scripted WebSocket upstream and a
//! raw SSE client.

mod common;

use std::time::Duration;

use common::ws_server::WsServer;
use common::{eventually, Config, Frame, Proxy, Route, SseClient, WAIT};

/// A `websocket` route at `path` reading `server`'s `/feed`.
fn ws_route(path: &str, server: &WsServer) -> Route {
    Route::websocket(path, server.url("/feed"))
}

/// `routes` with quick heartbeats and linger.
fn config(routes: impl IntoIterator<Item = Route>) -> Config {
    let defaults = Config::new()
        .set("defaults.heartbeat", "200ms")
        .set("defaults.linger", "200ms");
    routes.into_iter().fold(defaults, Config::route)
}

/// Connects a client and reads past the stream's `retry:` frame, so it is subscribed.
async fn subscribe(proxy: &Proxy, path: &str) -> SseClient {
    let mut client = SseClient::connect(&proxy.url(path), &[]).await;
    assert_eq!(client.status, 200);
    let first = client.next_frame().await.expect("retry frame");
    assert!(
        first.retry().is_some(),
        "stream starts with retry: {first:?}"
    );
    client
}

async fn wait_open(server: &WsServer, open: usize) {
    assert!(
        eventually(WAIT, || server.open() == open).await,
        "expected {open} open upstream sockets, have {}",
        server.open()
    );
}

fn data_lines(frame: &Frame) -> Vec<&str> {
    frame
        .lines
        .iter()
        .filter(|l| l.starts_with("data"))
        .map(String::as_str)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn text_messages_arrive_in_order_and_cannot_forge_fields() {
    let server = WsServer::start().await;
    let proxy = Proxy::start(&config([ws_route("/ws", &server)]).yaml());
    let mut client = subscribe(&proxy, "/ws").await;
    wait_open(&server, 1).await;

    let mut last_id = 0u64;
    for i in 0..10 {
        server.send_text(&format!("message {i}"));
        let frame = client.next_event().await.expect("event");
        assert_eq!(frame.data(), Some(format!("message {i}")));
        assert_eq!(frame.event(), None);
        let id: u64 = frame.id().expect("id").parse().expect("numeric proxy id");
        assert!(id > last_id, "ids increase");
        last_id = id;
    }

    server.send_text("line1\nline2\r\nline3\rline4");
    let frame = client.next_event().await.expect("multi-line event");
    assert_eq!(
        data_lines(&frame),
        ["data: line1", "data: line2", "data: line3", "data: line4"]
    );

    server.send_text("x\n\nevent: admin\ndata: pwn");
    let frame = client.next_event().await.expect("injection attempt");
    assert_eq!(frame.event(), None);
    assert!(
        !frame.lines.iter().any(|l| l.starts_with("event")),
        "no event field: {frame:?}"
    );
    assert_eq!(
        data_lines(&frame),
        ["data: x", "data:", "data: event: admin", "data: data: pwn"]
    );
    // The whole message was one event: the next one is the next message.
    server.send_text("after");
    let frame = client.next_event().await.expect("next event");
    assert_eq!(frame.data().as_deref(), Some("after"));
    assert_eq!(frame.event(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_pointers_set_event_and_id_and_non_json_falls_back() {
    let server = WsServer::start().await;
    let route = ws_route("/ws", &server)
        .opt("event_from", "/type")
        .opt("id_from", "/seq")
        .opt("data_from", "/body");
    let proxy = Proxy::start(&config([route]).yaml());
    let mut client = subscribe(&proxy, "/ws").await;
    wait_open(&server, 1).await;

    server.send_text(r#"{"type":"trade","seq":7,"body":{"price":1.5}}"#);
    let frame = client.next_event().await.expect("event");
    assert_eq!(frame.event().as_deref(), Some("trade"));
    assert_eq!(frame.id().as_deref(), Some("7"));
    assert_eq!(frame.data().as_deref(), Some(r#"{"price":1.5}"#));

    server.send_text(r#"{"type":"quote","seq":"q-8","body":"plain body"}"#);
    let frame = client.next_event().await.expect("event");
    assert_eq!(frame.event().as_deref(), Some("quote"));
    assert_eq!(frame.id().as_deref(), Some("q-8"));
    assert_eq!(frame.data().as_deref(), Some("plain body"));

    server.send_text("not json at all");
    let frame = client.next_event().await.expect("fallback event");
    assert_eq!(frame.event(), None);
    assert_eq!(frame.data().as_deref(), Some("not json at all"));
    let id = frame.id().expect("proxy id");
    assert!(id.parse::<u64>().is_ok(), "proxy-assigned id, got {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_is_resent_after_reconnect_with_heartbeats_and_no_duplicates() {
    let server = WsServer::start().await;
    let route = ws_route("/ws/{room}", &server)
        .opt("subscribe", r#"{"op":"sub","room":"{room}"}"#)
        .opt("id_from", "/seq");
    let proxy = Proxy::start(&config([route]).yaml());
    let mut client = subscribe(&proxy, "/ws/lobby").await;
    let subscribe = r#"{"op":"sub","room":"lobby"}"#;
    assert!(eventually(WAIT, || server.received().len() == 1).await);
    assert_eq!(server.received(), [subscribe]);

    for seq in 1..=2 {
        server.send_text(&format!(r#"{{"seq":{seq},"v":"a"}}"#));
        let frame = client.next_event().await.expect("event");
        assert_eq!(frame.id(), Some(seq.to_string()));
    }

    server.drop_all();
    assert!(
        eventually(WAIT, || server.connections() == 2
            && server.received().len() == 2)
        .await,
        "the proxy reconnects and subscribes again"
    );
    assert_eq!(server.received(), [subscribe, subscribe]);
    wait_open(&server, 1).await;
    let closed = r#"sse_edge_upstream_errors_total{reason="closed",route="/ws/{room}"}"#;
    assert_eq!(proxy.metric(closed), 1.0, "{}", proxy.metrics());
    assert_eq!(
        proxy.metric(r#"sse_edge_upstream_connects_total{route="/ws/{room}"}"#),
        2.0
    );

    // Quiet upstream: the client keeps receiving heartbeats.
    let frame = client
        .next_frame_within(Duration::from_secs(2))
        .await
        .expect("heartbeat");
    assert!(frame.is_comment(), "heartbeat expected, got {frame:?}");

    // The upstream replays what it already sent, then continues.
    for seq in 1..=3 {
        server.send_text(&format!(r#"{{"seq":{seq},"v":"b"}}"#));
    }
    let frame = client.next_event().await.expect("event after reconnect");
    assert_eq!(frame.id().as_deref(), Some("3"), "no duplicates: {frame:?}");
    assert_eq!(frame.data().as_deref(), Some(r#"{"seq":3,"v":"b"}"#));
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_clients_share_one_socket_which_closes_when_they_leave() {
    let server = WsServer::start().await;
    // All ten come from 127.0.0.1: lift the default per-client limit of 8.
    let body = config([ws_route("/ws", &server)]).set("limits.per_client", 20);
    let proxy = Proxy::start(&body.yaml());
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(subscribe(&proxy, "/ws").await);
    }
    wait_open(&server, 1).await;
    assert_eq!(server.connections(), 1);

    server.send_text("to everyone");
    for client in &mut clients {
        let frame = client.next_event().await.expect("event");
        assert_eq!(frame.data().as_deref(), Some("to everyone"));
    }
    assert_eq!(
        server.connections(),
        1,
        "one upstream socket for ten clients"
    );

    drop(clients);
    wait_open(&server, 0).await;
    assert_eq!(server.connections(), 1);
    assert!(
        eventually(WAIT, || proxy
            .metric(r#"sse_edge_upstream_streams_active{route="/ws"}"#)
            == 0.0)
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_frames_follow_the_route_policy() {
    let base64_server = WsServer::start().await;
    let drop_server = WsServer::start().await;
    let proxy = Proxy::start(
        &config([
            ws_route("/b64", &base64_server).opt("binary", "base64"),
            ws_route("/drop", &drop_server).opt("binary", "drop"),
        ])
        .yaml(),
    );
    let mut b64 = subscribe(&proxy, "/b64").await;
    let mut dropping = subscribe(&proxy, "/drop").await;
    wait_open(&base64_server, 1).await;
    wait_open(&drop_server, 1).await;

    base64_server.send_binary(&[0, 255, 10, b'\n', b'\r']);
    let frame = b64.next_event().await.expect("base64 event");
    assert_eq!(frame.data().as_deref(), Some("AP8KCg0="));

    drop_server.send_binary(b"\0raw\nbytes");
    drop_server.send_text("after binary");
    let frame = dropping.next_event().await.expect("text event");
    assert_eq!(frame.data().as_deref(), Some("after binary"));
    assert_eq!(
        proxy.metric(r#"sse_edge_upstream_errors_total{reason="binary_dropped",route="/drop"}"#),
        1.0
    );
    assert_eq!(
        drop_server.connections(),
        1,
        "a dropped frame is no reason to reconnect"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_frame_closes_the_socket_is_counted_and_reconnects() {
    let server = WsServer::start().await;
    let route = ws_route("/ws", &server).opt("max_message_bytes", "1KiB");
    let proxy = Proxy::start(&config([route]).yaml());
    let mut client = subscribe(&proxy, "/ws").await;
    wait_open(&server, 1).await;

    server.send_text(&"y".repeat(1000));
    let frame = client.next_event().await.expect("event under the limit");
    assert_eq!(frame.data().map(|d| d.len()), Some(1000));

    server.send_oversize(2000);
    let too_large = r#"sse_edge_upstream_errors_total{reason="message_too_large",route="/ws"}"#;
    assert!(eventually(WAIT, || proxy.metric(too_large) == 1.0).await);
    assert!(
        eventually(WAIT, || server.connections() == 2).await,
        "the proxy reconnects"
    );
    wait_open(&server, 1).await;

    server.send_text("small again");
    let frame = client.next_event().await.expect("event after reconnect");
    assert_eq!(frame.data().as_deref(), Some("small again"));
}

#[tokio::test(flavor = "multi_thread")]
async fn handshake_carries_headers_and_subprotocol() {
    let server = WsServer::start().await;
    let route = ws_route("/ws", &server)
        .set("forward_headers", ["Authorization"])
        .opt("subprotocol", "feed.v1")
        .opt("headers.X-Api-Key", "k1");
    let proxy = Proxy::start(&config([route]).yaml());
    let mut client = SseClient::connect(&proxy.url("/ws"), &[("Authorization", "Bearer t")]).await;
    assert_eq!(client.status, 200);
    wait_open(&server, 1).await;
    let headers = server.handshake_headers().remove(0);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("x-api-key"), Some("k1"));
    assert_eq!(get("authorization"), Some("Bearer t"));
    assert_eq!(get("sec-websocket-protocol"), Some("feed.v1"));
    server.send_text("hello");
    let frame = client.next_event().await.expect("event");
    assert_eq!(frame.data().as_deref(), Some("hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_spares_a_live_socket_and_replaces_a_dead_one() {
    let server = WsServer::start().await;
    let route = ws_route("/ws", &server).opt("ping_interval", "200ms");
    let proxy = Proxy::start(&config([route]).yaml());
    let mut client = subscribe(&proxy, "/ws").await;
    wait_open(&server, 1).await;

    // Idle but answering pings: the socket stays.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server.connections(), 1, "a responsive upstream is kept");

    // Silent and not answering: declared dead after about two intervals, then replaced.
    server.freeze_all();
    let timeout = r#"sse_edge_upstream_errors_total{reason="ping_timeout",route="/ws"}"#;
    assert!(eventually(WAIT, || proxy.metric(timeout) == 1.0).await);
    assert!(eventually(WAIT, || server.connections() == 2).await);
    wait_open(&server, 1).await;
    server.send_text("alive");
    let frame = client.next_event().await.expect("event after reconnect");
    assert_eq!(frame.data().as_deref(), Some("alive"));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_text_is_counted_never_forwarded_and_the_proxy_reconnects() {
    let server = WsServer::start().await;
    let proxy = Proxy::start(&config([ws_route("/ws", &server)]).yaml());
    let mut client = subscribe(&proxy, "/ws").await;
    wait_open(&server, 1).await;

    server.send_invalid_utf8();
    let invalid = r#"sse_edge_upstream_errors_total{reason="invalid_utf8",route="/ws"}"#;
    assert!(
        eventually(WAIT, || proxy.metric(invalid) == 1.0).await,
        "{}",
        proxy.metrics()
    );
    assert!(eventually(WAIT, || server.connections() == 2).await);
    wait_open(&server, 1).await;
    server.send_text("clean");
    let frame = client.next_event().await.expect("event after reconnect");
    assert_eq!(
        frame.data().as_deref(),
        Some("clean"),
        "nothing of the bad frame"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_over_max_event_bytes_are_dropped_and_counted() {
    let server = WsServer::start().await;
    let body = config([ws_route("/ws", &server)]).set("defaults.max_event_bytes", "100B");
    let proxy = Proxy::start(&body.yaml());
    let mut client = subscribe(&proxy, "/ws").await;
    wait_open(&server, 1).await;

    // 90 bytes fit as a frame but not as base64 (120 bytes).
    server.send_binary(&[7; 90]);
    server.send_text(&"z".repeat(101));
    server.send_text("fits");
    let frame = client.next_event().await.expect("event");
    assert_eq!(frame.data().as_deref(), Some("fits"));
    let oversize = r#"sse_edge_upstream_errors_total{reason="oversize_event",route="/ws"}"#;
    assert_eq!(proxy.metric(oversize), 2.0);
    assert_eq!(server.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wss_upstream_with_a_private_ca() {
    let server = WsServer::start_tls().await;
    let route = ws_route("/wss", &server).opt("ca_file", server.ca_file());
    let proxy = Proxy::start(&config([route]).yaml());
    let mut client = subscribe(&proxy, "/wss").await;
    wait_open(&server, 1).await;
    server.send_text("over tls");
    let frame = client.next_event().await.expect("event");
    assert_eq!(frame.data().as_deref(), Some("over tls"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wss_upstream_with_an_untrusted_certificate_is_refused() {
    let server = WsServer::start_tls().await;
    let proxy = Proxy::start(&config([ws_route("/wss", &server)]).yaml());
    let mut client = subscribe(&proxy, "/wss").await;
    let tls = r#"sse_edge_upstream_errors_total{reason="tls",route="/wss"}"#;
    assert!(
        eventually(WAIT, || proxy.metric(tls) >= 1.0).await,
        "{}",
        proxy.metrics()
    );
    assert_eq!(server.connections(), 0);
    let frame = client
        .next_frame_within(Duration::from_secs(2))
        .await
        .expect("heartbeat");
    assert!(frame.is_comment(), "{frame:?}");
}

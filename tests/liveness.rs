//! Liveness of idle connections: TCP keepalive on every socket the proxy holds (read back
//! from the proxy process with getsockopt), and `upstream_idle_timeout` on sse routes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ws_server::WsServer;
use common::{eventually, sockets, Config, Proxy, Route, SseClient, SseUpstream, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_is_set_on_client_and_every_kind_of_upstream_socket() {
    let mut upstream = SseUpstream::start().await;
    let ws = WsServer::start().await;
    let ws_addr: SocketAddr = ws
        .url("")
        .trim_start_matches("ws://")
        .parse()
        .expect("addr");
    // An http route's upstream that accepts and never answers, so its socket stays open.
    let legacy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let legacy_addr = legacy.local_addr().expect("addr");
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::sse("/s", upstream.url("/stream")))
            .route(Route::websocket("/w", ws.url("/feed")))
            .route(Route::http("/api/*", format!("http://{legacy_addr}")))
            .yaml(),
    );
    let _sse = SseClient::connect(&proxy.url("/s"), &[]).await;
    let _conn = upstream.next_conn().await;
    let _ws = SseClient::connect(&proxy.url("/w"), &[]).await;
    let mut api = TcpStream::connect(proxy.addr).await.expect("connect");
    api.write_all(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let _held = tokio::time::timeout(WAIT, legacy.accept())
        .await
        .expect("http upstream reached in time")
        .expect("accept");

    let pid = proxy.pid();
    let wanted = |all: &[sockets::TcpSocket]| {
        let upstreams = [upstream.addr, ws_addr, legacy_addr]
            .iter()
            .all(|peer| all.iter().any(|s| s.remote == *peer));
        let clients = all.iter().filter(|s| s.local == proxy.addr).count();
        upstreams && clients == 3
    };
    assert!(
        eventually(WAIT, || wanted(&sockets::established(pid))).await,
        "sockets: {:?}",
        sockets::established(pid)
    );
    let all = sockets::established(pid);
    let checked: Vec<_> = all
        .iter()
        .filter(|s| {
            s.local == proxy.addr || [upstream.addr, ws_addr, legacy_addr].contains(&s.remote)
        })
        .collect();
    assert_eq!(checked.len(), 6, "{all:?}");
    for socket in checked {
        assert!(socket.keepalive, "no SO_KEEPALIVE: {socket:?}");
        assert_eq!(socket.keepalive_idle, Duration::from_secs(60), "{socket:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_upstream_is_reconnected_with_last_event_id() {
    let mut upstream = SseUpstream::start().await;
    let route = Route::sse("/s", upstream.url("/stream")).opt("upstream_idle_timeout", "400ms");
    let proxy = Proxy::start(&Config::new().route(route).yaml());
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    conn.send("id: 1\ndata: one\n\n").await;
    let one = client.next_event().await.expect("one");
    assert_eq!(one.data().as_deref(), Some("one"));

    // A comment is a byte: 1.2 s of them, 100 ms apart, keep the upstream.
    for _ in 0..12 {
        conn.send(": ping\n").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "reconnected although comments kept coming"
    );

    // Then silence: dropped after 400 ms and reconnected, resuming after id 1.
    let silent_since = Instant::now();
    let mut again = upstream.next_conn().await;
    let waited = silent_since.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(2)).contains(&waited),
        "reconnected after {waited:?}"
    );
    assert_eq!(again.header("last-event-id"), Some("1"));
    assert!(
        conn.closed_within(WAIT).await,
        "the silent connection was closed"
    );
    assert_eq!(
        proxy.metric("sse_edge_upstream_errors_total{reason=\"idle_timeout\",route=\"/s\"}"),
        1.0
    );
    // The client never noticed.
    again.send("id: 2\ndata: two\n\n").await;
    let two = client.next_event().await.expect("two");
    assert_eq!(
        (two.id().as_deref(), two.data().as_deref()),
        (Some("2"), Some("two"))
    );
}

//! Live reload (SIGHUP), the drain delay and the zero-downtime upgrade, against the real
//! binary: unchanged routes keep their streams through any number of reloads, changed ones
//! hand their clients over with `retry:`, invalid files change nothing.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, free_addr, http_get, Config, Proxy, Route, SseClient, SseUpstream, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config with the stable route `/s` and the route `/t`, whose heartbeat is `variant`.
fn config(upstream: &SseUpstream, variant: u32, per_client: u32) -> String {
    Config::new()
        .set("defaults.heartbeat", "10s")
        .set("limits.per_client", per_client)
        .route(Route::sse("/s", upstream.url("/stream")))
        .route(
            Route::sse("/t", upstream.url("/other")).set("heartbeat", format!("{}s", 20 + variant)),
        )
        .yaml()
}

fn metric(proxy: &Proxy, name: &str, labels: &str) -> f64 {
    proxy.metric(&format!("sse_edge_{name}{{{labels}}}"))
}

/// Reads events until id `last`, returning every id seen on this one connection.
async fn ids_until(client: &mut SseClient, last: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    while let Some(frame) = client.next_event_within(WAIT).await {
        let id: u64 = frame
            .id()
            .and_then(|id| id.parse().ok())
            .expect("numeric id");
        ids.push(id);
        if id == last {
            break;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_reloads_lose_duplicate_or_delay_nothing_on_an_unchanged_route() {
    const CLIENTS: usize = 100;
    const EVENTS: u64 = 150;
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream, 0, 1000));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
        assert_eq!(client.status, 200);
        client.next_frame().await.expect("retry frame");
        clients.push(client);
    }
    let mut conn = upstream.next_conn().await;
    let publisher = tokio::spawn(async move {
        for id in 1..=EVENTS {
            conn.send(&format!("id: {id}\ndata: {id}\n\n")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        conn
    });
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| tokio::spawn(async move { ids_until(&mut client, EVENTS).await }))
        .collect();
    for variant in 1..=50 {
        let body = config(&upstream, variant, 1000);
        // `reload` waits for the counter; the readers keep running on the other workers.
        let applied = tokio::task::block_in_place(|| proxy.reload(&body));
        assert!(applied, "reload {variant} applied");
    }
    let _conn = publisher.await.expect("publisher");
    let expected: Vec<u64> = (1..=EVENTS).collect();
    for reader in readers {
        assert_eq!(
            reader.await.expect("reader"),
            expected,
            "every id once, in order"
        );
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "the upstream kept its one connection"
    );
    assert_eq!(
        metric(&proxy, "config_reloads_total", r#"result="ok""#),
        50.0
    );
    assert_eq!(
        metric(&proxy, "stream_ends_total", r#"reason="reload",route="/s""#),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_route_hands_its_clients_over_and_they_resume() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream, 0, 8));
    let mut client = SseClient::connect(&proxy.url("/t"), &[]).await;
    client.next_frame().await.expect("retry frame");
    let mut conn = upstream.next_conn().await;
    conn.send("id: 7\ndata: before\n\n").await;
    assert_eq!(
        client.next_event().await.and_then(|f| f.id()).as_deref(),
        Some("7")
    );

    assert!(proxy.reload(&config(&upstream, 1, 8)));
    let rest = client.read_to_end(WAIT).await;
    assert!(
        rest.contains("retry: "),
        "a final retry before the close: {rest:?}"
    );
    assert!(client.ended, "the stream was closed");
    assert_eq!(
        metric(&proxy, "stream_ends_total", r#"reason="reload",route="/t""#),
        1.0
    );

    let mut resumed = SseClient::connect(&proxy.url("/t"), &[("Last-Event-ID", "7")]).await;
    assert_eq!(resumed.status, 200);
    let mut next = upstream.next_conn().await;
    assert_eq!(
        next.header("last-event-id"),
        Some("7"),
        "the new stream resumes upstream"
    );
    next.send("id: 8\ndata: after\n\n").await;
    assert_eq!(
        resumed.next_event().await.and_then(|f| f.id()).as_deref(),
        Some("8")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_changes_nothing_and_is_counted() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream, 0, 8));
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    client.next_frame().await.expect("retry frame");
    let mut conn = upstream.next_conn().await;

    assert!(!proxy.reload("routes:\n  - path: /s\n    sse: { upstream: 'ftp://nope' }\n"));
    assert_eq!(
        metric(&proxy, "config_reloads_total", r#"result="error""#),
        1.0
    );
    assert_eq!(proxy.metric("sse_edge_config_last_reload_successful"), 0.0);
    conn.send("id: 1\ndata: still here\n\n").await;
    assert_eq!(
        client.next_event().await.and_then(|f| f.data()).as_deref(),
        Some("still here")
    );
    let other = SseClient::connect(&proxy.url("/t"), &[]).await;
    assert_eq!(other.status, 200, "the old routes still serve");

    assert!(proxy.reload(&config(&upstream, 0, 8)));
    assert_eq!(proxy.metric("sse_edge_config_last_reload_successful"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lowered_per_client_cuts_nobody_and_refuses_newcomers() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream, 0, 3));
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
        assert_eq!(client.status, 200);
        client.next_frame().await.expect("retry frame");
        open.push(client);
    }
    let mut conn = upstream.next_conn().await;
    assert!(proxy.reload(&config(&upstream, 0, 1)));
    let refused = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert_eq!(refused.status, 429, "the new limit applies to newcomers");
    conn.send("id: 1\ndata: x\n\n").await;
    for client in &mut open {
        assert_eq!(
            client.next_event().await.and_then(|f| f.id()).as_deref(),
            Some("1")
        );
    }
    drop(open);
    let proxy_ref = &proxy;
    assert!(
        eventually(WAIT, || proxy_ref
            .metric(r#"sse_edge_connections_active{route="/s"}"#)
            == 0.0)
        .await
    );
    let admitted = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert_eq!(admitted.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_delay_keeps_serving_while_readyz_fails() {
    let upstream = SseUpstream::start().await;
    let yaml = Config::new()
        .set("drain_delay", "1500ms")
        .route(Route::sse("/s", upstream.url("/stream")))
        .yaml();
    let mut proxy = Proxy::start(&yaml);
    let mut open = SseClient::connect(&proxy.url("/s"), &[]).await;
    open.next_frame().await.expect("retry frame");
    proxy.signal("TERM");
    let admin = proxy.admin;
    assert!(
        eventually(WAIT, || http_get(admin, "/readyz")
            .is_some_and(|(s, _)| s == 503))
        .await,
        "/readyz fails at once"
    );
    let during = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert_eq!(
        during.status, 200,
        "new streams are still served during the delay"
    );
    let rest = open.read_to_end(WAIT).await;
    assert!(rest.contains("retry: "), "then streams drain: {rest:?}");
    assert_eq!(proxy.wait_exit(WAIT), Some(0));
}

/// An HTTP/1.1 server answering every request `200 ok`.
async fn ok_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                while let Ok(1..) = socket.read(&mut buf).await {
                    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One request on a fresh connection: the status, or the error (e.g. a refusal).
async fn get_once(addr: std::net::SocketAddr) -> Result<u16, String> {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    let request = "GET /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    socket
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    socket
        .read_to_end(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgrade_refuses_no_connection_and_answers_every_request() {
    let api = ok_server().await;
    let upstream = SseUpstream::start().await;
    let (addr, admin) = (free_addr(), free_addr());
    let sock = std::env::temp_dir().join(format!("sse-edge-upgrade-{}.sock", admin.port()));
    let yaml = Config::new()
        .listen([common::Listen::plain(addr)])
        .admin(admin)
        .set("upgrade_sock", sock.to_string_lossy().to_string())
        .route(Route::sse("/s", upstream.url("/stream")))
        .route(Route::http("/api/*", format!("http://{api}")))
        .yaml();
    let mut old = Proxy::start_with_yaml(&yaml, addr, admin);
    let mut stream = SseClient::connect(&old.url("/s"), &[]).await;
    stream.next_frame().await.expect("retry frame");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = stop.clone();
    let requests = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        while !looping.load(std::sync::atomic::Ordering::Relaxed) {
            outcomes.push(get_once(addr).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        outcomes
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut new = old.spawn_upgrade();
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("QUIT");
    let rest = stream.read_to_end(Duration::from_secs(15)).await;
    assert!(
        rest.contains("retry: "),
        "the old process's stream drains: {rest:?}"
    );
    assert_eq!(
        old.wait_exit(Duration::from_secs(20)),
        Some(0),
        "the old process exits"
    );
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = requests.await.expect("request loop");
    let failed: Vec<_> = outcomes.iter().filter(|o| **o != Ok(200)).collect();
    assert!(outcomes.len() > 100, "the loop ran: {}", outcomes.len());
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    let resumed = SseClient::connect(&format!("http://{addr}/s"), &[]).await;
    assert_eq!(resumed.status, 200, "the new process serves streams");
    assert!(started.elapsed() < WAIT);
    let _ = new.kill();
    let _ = new.wait();
}

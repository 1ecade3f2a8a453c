//! Limits, slow clients, CORS, edge hygiene and graceful shutdown, against the real binary.

mod common;

use std::time::Duration;

use common::{Config, Proxy, Route, SseClient, SseUpstream, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `/s` in front of `upstream`'s `/stream`, with quick heartbeats and linger; tests add limits.
fn config(upstream: &SseUpstream) -> Config {
    Config::new()
        .set("defaults.heartbeat", "200ms")
        .set("defaults.linger", "100ms")
        .route(route(upstream))
}

/// The route `/s` in front of `upstream`'s `/stream`.
fn route(upstream: &SseUpstream) -> Route {
    Route::sse("/s", upstream.url("/stream"))
}

async fn open(proxy: &Proxy, headers: &[(&str, &str)]) -> SseClient {
    SseClient::connect(&proxy.url("/s"), headers).await
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_limit_refuses_the_next_stream_until_one_closes() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).set("limits.per_client", 2).yaml());
    let mut first = open(&proxy, &[]).await;
    let mut second = open(&proxy, &[]).await;
    let mut third = open(&proxy, &[]).await;
    assert_eq!(third.status, 429);
    assert!(third
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().is_ok()));
    assert!(third.read_to_end(WAIT).await.contains("too many streams"));

    let mut conn = upstream.next_conn().await;
    conn.send("data: still flowing\n\n").await;
    for client in [&mut first, &mut second] {
        assert_eq!(
            client.next_event().await.and_then(|f| f.data()).as_deref(),
            Some("still flowing")
        );
    }
    drop(first);
    let admitted = common::eventually(WAIT, || {
        proxy.metric("sse_edge_connections_active{route=\"/s\"}") == 1.0
    })
    .await;
    assert!(admitted);
    assert_eq!(
        open(&proxy, &[]).await.status,
        200,
        "a closed stream frees its slot"
    );
    assert!(
        proxy.metric("sse_edge_connections_rejected_total{reason=\"per_client\",route=\"/s\"}")
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn header_identities_are_counted_separately() {
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &config(&upstream)
            .set("limits.per_client", 1)
            .set("limits.client_id", "header:X-Api-Key")
            .yaml(),
    );
    let _a = open(&proxy, &[("X-Api-Key", "alpha")]).await;
    let _b = open(&proxy, &[("X-Api-Key", "beta")]).await;
    assert_eq!(_a.status, 200);
    assert_eq!(_b.status, 200);
    assert_eq!(open(&proxy, &[("X-Api-Key", "alpha")]).await.status, 429);
    assert_eq!(open(&proxy, &[("X-Api-Key", "beta")]).await.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let upstream = SseUpstream::start().await;
    let untrusted = Proxy::start(&config(&upstream).set("limits.per_client", 1).yaml());
    let _one = open(&untrusted, &[("X-Forwarded-For", "203.0.113.1")]).await;
    let spoofed = open(&untrusted, &[("X-Forwarded-For", "203.0.113.2")]).await;
    assert_eq!(
        spoofed.status, 429,
        "spoofed X-Forwarded-For bought an extra stream"
    );

    let trusted = Proxy::start(
        &config(&upstream)
            .set("limits.per_client", 1)
            .set("limits.trusted_proxies", ["127.0.0.0/8"])
            .yaml(),
    );
    let a = open(&trusted, &[("X-Forwarded-For", "203.0.113.1")]).await;
    let b = open(&trusted, &[("Forwarded", "for=203.0.113.2")]).await;
    let again = open(
        &trusted,
        &[("X-Forwarded-For", "198.51.100.7, 203.0.113.1")],
    )
    .await;
    assert_eq!((a.status, b.status, again.status), (200, 200, 429));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_answers_503() {
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &config(&upstream)
            .set("limits.max_connections", 2)
            .set("limits.client_id", "query:u")
            .yaml(),
    );
    let _a = SseClient::connect(&proxy.url("/s?u=1"), &[]).await;
    let _b = SseClient::connect(&proxy.url("/s?u=2"), &[]).await;
    let mut over = SseClient::connect(&proxy.url("/s?u=3"), &[]).await;
    assert_eq!(over.status, 503);
    assert!(over.header("retry-after").is_some());
    assert!(!over.read_to_end(WAIT).await.is_empty());
    assert!(
        proxy
            .metric("sse_edge_connections_rejected_total{reason=\"max_connections\",route=\"/s\"}")
            >= 1.0
    );
}

/// A client that sends its request and then never reads, with a tiny receive buffer.
async fn stalled_client(proxy: &Proxy) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /s HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("request");
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_client_is_cut_off_without_slowing_the_others() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .set("defaults.heartbeat", "1s")
            .set("defaults.replay", 20000)
            .set("limits.slow_client.max_lag", "1MiB")
            .route(route(&upstream))
            .yaml(),
    );
    let mut fast = open(&proxy, &[]).await;
    let mut conn = upstream.next_conn().await;
    let payload = "x".repeat(1000);
    let mut baseline = 0;
    for round in 0..2 {
        let mut stalled = stalled_client(&proxy).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reader = tokio::spawn(async move {
            let mut received = 0;
            while received < 4000 {
                let Some(frame) = fast.next_event().await else {
                    break;
                };
                assert_eq!(frame.data().map(|d| d.len()), Some(1006), "event intact");
                received += 1;
            }
            (fast, received)
        });
        for i in 0..4000 {
            conn.send(&format!("data: {i:05} {payload}\n\n")).await;
            if i % 10 == 0 {
                // About 2 MB/s: a reading client has half a second of slack even on a loaded
                // machine; a stalled one passes max_lag within a second.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let (back, received) = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("fast client in time")
            .expect("reader");
        fast = back;
        assert_eq!(received, 4000, "the fast client got every event");
        let cut = common::eventually(WAIT, || {
            proxy.metric("sse_edge_slow_client_disconnects_total{route=\"/s\"}")
                >= (round + 1) as f64
        })
        .await;
        assert!(cut, "stalled client disconnected past max_lag");
        // The stalled socket is closed by the proxy: reading drains what was buffered, then ends.
        let mut sink = vec![0u8; 1 << 16];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match stalled.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert_eq!(closed.ok(), Some(true));
        if round == 0 {
            baseline = proxy.rss_kib();
        }
    }
    let growth = proxy.rss_kib().saturating_sub(baseline);
    assert!(
        growth < 32 * 1024,
        "RSS grew {growth} KiB in a second identical round"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn abrupt_disconnect_churn_leaks_no_slot() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).set("limits.per_client", 2).yaml());
    let _keeper = SseClient::connect(&proxy.url("/s?keeper"), &[]).await;
    let mut conn = upstream.next_conn().await;
    for i in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(proxy.addr)
            .await
            .expect("connect");
        stream
            .write_all(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("request");
        if i % 2 == 0 {
            let mut head = [0u8; 64];
            let _ = tokio::time::timeout(WAIT, stream.read(&mut head)).await;
        }
        if i % 3 == 0 {
            stream.set_zero_linger().expect("linger"); // RST instead of FIN
        }
        drop(stream);
        if i % 50 == 0 {
            conn.send("data: tick\n\n").await;
        }
    }
    let drained = common::eventually(WAIT, || {
        proxy.metric("sse_edge_connections_active{route=\"/s\"}") == 1.0
    })
    .await;
    assert!(drained, "only the keeper is left open");
    // The identity's counter is back to one: exactly one more stream fits.
    let extra = open(&proxy, &[]).await;
    assert_eq!(extra.status, 200);
    assert_eq!(open(&proxy, &[]).await.status, 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_response_headers() {
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .set("defaults.cors.allow_origins", ["https://app.example"])
            .set("defaults.cors.allow_credentials", true)
            .route(route(&upstream))
            .yaml(),
    );
    let preflight = |origin: &'static str| {
        let url = proxy.url("/s");
        async move {
            SseClient::request(
                "OPTIONS",
                &url,
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "GET"),
                    ("Access-Control-Request-Headers", "last-event-id"),
                ],
            )
            .await
        }
    };
    let allowed = preflight("https://app.example").await;
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(allowed
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));
    assert_eq!(
        allowed.header("access-control-allow-headers"),
        Some("last-event-id")
    );
    let refused = preflight("https://evil.example").await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);

    let stream = open(&proxy, &[("Origin", "https://app.example")]).await;
    assert_eq!(
        stream.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        stream.header("access-control-allow-credentials"),
        Some("true")
    );
    let foreign = open(&proxy, &[("Origin", "https://evil.example")]).await;
    assert_eq!(foreign.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_headers_and_unknown_paths_are_refused() {
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &config(&upstream)
            .set("limits.max_header_bytes", "4KiB")
            .yaml(),
    );
    let big = "y".repeat(8 * 1024);
    let oversize = open(&proxy, &[("X-Big", &big)]).await;
    assert_eq!(oversize.status, 431);
    let post = SseClient::request("POST", &proxy.url("/s"), &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 405);
    let missing = SseClient::connect(&proxy.url("/nowhere"), &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(upstream.accepted(), 0, "nothing was sent upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_sends_retry_closes_streams_and_exits_zero() {
    let mut upstream = SseUpstream::start().await;
    let mut proxy = Proxy::start(&config(&upstream).set("shutdown_grace", "3s").yaml());
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(SseClient::connect(&proxy.url("/s"), &[]).await);
    }
    let mut conn = upstream.next_conn().await;
    conn.send("id: 1\ndata: before\n\n").await;
    for client in &mut clients {
        assert_eq!(
            client.next_event().await.and_then(|f| f.data()).as_deref(),
            Some("before")
        );
    }
    proxy.signal("TERM");
    for client in &mut clients {
        let rest = client.read_to_end(WAIT).await;
        assert!(rest.contains("retry: "), "final retry missing: {rest:?}");
        assert!(
            rest.ends_with("\n\n"),
            "closed on an event boundary: {rest:?}"
        );
        assert!(client.ended, "stream closed cleanly");
    }
    assert_eq!(proxy.wait_exit(Duration::from_secs(5)), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_oldest_keeps_a_stalled_client_connected_and_skips_ahead() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .set("defaults.heartbeat", "1s")
            .set("defaults.replay", 20000)
            .set("limits.slow_client.max_lag", "64KiB")
            .set("limits.slow_client.policy", "drop_oldest")
            .route(route(&upstream))
            .yaml(),
    );
    let stalled = stalled_client(&proxy).await;
    let mut conn = upstream.next_conn().await;
    let payload = "z".repeat(1000);
    for i in 0..3000 {
        conn.send(&format!("id: {i}\ndata: {payload}\n\n")).await;
    }
    conn.send("id: last\ndata: last\n\n").await;
    // Now read everything the stalled client gets: old events first, then a jump to the end.
    let mut reader = tokio::io::BufReader::new(stalled);
    let mut ids = Vec::new();
    let mut line = String::new();
    let read_all = tokio::time::timeout(WAIT, async {
        use tokio::io::AsyncBufReadExt;
        while reader.read_line(&mut line).await.unwrap_or(0) > 0 {
            if let Some(id) = line.trim_end().strip_prefix("id: ") {
                ids.push(id.to_string());
                if id == "last" {
                    break;
                }
            }
            line.clear();
        }
    })
    .await;
    assert!(read_all.is_ok(), "stalled client got to the newest event");
    let numbers: Vec<u32> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    let skipped = numbers.windows(2).any(|pair| pair[1] != pair[0] + 1) || numbers.len() < 3000;
    assert!(
        skipped,
        "oldest queued events were dropped: got {} events",
        numbers.len()
    );
    assert_eq!(ids.last().map(String::as_str), Some("last"));
    assert!(proxy.metric("sse_edge_slow_client_disconnects_total{route=\"/s\"}") >= 1.0);
    assert_eq!(
        proxy.metric("sse_edge_connections_active{route=\"/s\"}"),
        1.0,
        "still connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_lifetime_ends_streams_with_a_retry_hint() {
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .set("defaults.max_lifetime", "500ms")
            .set("defaults.heartbeat", "100ms")
            .route(route(&upstream))
            .yaml(),
    );
    let mut client = open(&proxy, &[]).await;
    let started = std::time::Instant::now();
    let rest = client.read_to_end(WAIT).await;
    let lived = started.elapsed();
    assert!(client.ended, "stream closed");
    assert!(
        lived >= Duration::from_millis(400) && lived < Duration::from_secs(3),
        "lived {lived:?}"
    );
    assert!(
        rest.trim_end().ends_with(|c: char| c.is_ascii_digit()) && rest.contains("retry: "),
        "{rest:?}"
    );
}

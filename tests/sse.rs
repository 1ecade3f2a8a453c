//! `sse` routes end to end: the real binary between a scripted upstream and a raw client.

mod common;

use common::{Config, Proxy, Route, SseClient, SseUpstream};
use std::time::Duration;

/// One `sse` route, `/s`, in front of `upstream`'s `/stream`.
fn config(upstream: &SseUpstream) -> Config {
    Config::new().route(Route::sse("/s", upstream.url("/stream")))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_in_order_and_complete_with_sse_headers() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).yaml());
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert_eq!(client.status, 200);
    assert_eq!(
        client.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(client.header("cache-control"), Some("no-cache"));
    assert_eq!(client.header("x-accel-buffering"), Some("no"));
    assert_eq!(client.header("content-length"), None);
    assert_eq!(client.header("content-encoding"), None);
    let retry = client
        .next_frame()
        .await
        .expect("retry frame")
        .retry()
        .expect("retry value");
    assert!((2400..=3600).contains(&retry), "retry {retry} is 3s ±20%");

    let mut conn = upstream.next_conn().await;
    assert_eq!(conn.header("accept"), Some("text/event-stream"));
    for i in 0..20 {
        conn.send(&format!(
            "id: {i}\nevent: tick\ndata: n={i}\ndata: second line\n\n"
        ))
        .await;
        // Each event must arrive before the next is written: nothing is buffered.
        let frame = client.next_event().await.expect("event");
        assert_eq!(frame.id().as_deref(), Some(i.to_string().as_str()));
        assert_eq!(frame.event().as_deref(), Some("tick"));
        assert_eq!(frame.data(), Some(format!("n={i}\nsecond line")));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_fall_between_events_never_inside_one() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).set("defaults.heartbeat", "100ms").yaml());
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    conn.send("id: a\ndata: first half\n").await;

    // Half an event upstream: the client sees heartbeats, never the half.
    let mut heartbeats = 0;
    let mut second_half_pending = true;
    let event = loop {
        let frame = client.next_frame().await.expect("frame");
        if frame.is_comment() {
            heartbeats += 1;
            if heartbeats == 3 && second_half_pending {
                conn.send("data: second half\n\n").await;
                second_half_pending = false;
            }
        } else if frame.data().is_some() {
            break frame;
        } else {
            assert!(
                frame.retry().is_some(),
                "only retry, comments or whole events: {frame:?}"
            );
        }
    };
    assert!(heartbeats >= 3, "the event came before its second half");
    assert_eq!(
        event.lines,
        ["id: a", "data: first half", "data: second half"]
    );
    // Idle again: heartbeats continue after the event.
    assert!(client.next_frame().await.expect("heartbeat").is_comment());
    assert!(proxy.metric("sse_edge_heartbeats_sent_total{route=\"/s\"}") >= 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_dying_mid_event_never_dispatches_the_partial_event() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).yaml());
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    conn.send("id: 1\ndata: whole\n\nid: 2\ndata: partial")
        .await;
    drop(conn);
    // The proxy reconnects, resuming from the last complete event's id.
    let mut again = upstream.next_conn().await;
    assert_eq!(again.header("last-event-id"), Some("1"));
    again.send("id: 3\ndata: after\n\n").await;
    let first = client.next_event().await.expect("first");
    let second = client.next_event().await.expect("second");
    assert_eq!(first.data().as_deref(), Some("whole"));
    assert_eq!(
        second.data().as_deref(),
        Some("after"),
        "partial event leaked: {second:?}"
    );
    assert!(proxy.metric("sse_edge_upstream_errors_total{reason=\"eof\",route=\"/s\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_id_with_nul_is_refused_and_counted() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).yaml());
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    conn.send("id: 5\ndata: five\n\nid: 6\0x\ndata: forged\n\nid: 7\ndata: seven\n\n")
        .await;
    let five = client.next_event().await.expect("five");
    let seven = client.next_event().await.expect("seven");
    assert_eq!(five.data().as_deref(), Some("five"));
    assert_eq!(
        (seven.id().as_deref(), seven.data().as_deref()),
        (Some("7"), Some("seven")),
        "the event with a NUL id is not delivered under any id"
    );
    assert_eq!(
        proxy.metric("sse_edge_upstream_errors_total{reason=\"unsafe_field\",route=\"/s\"}"),
        1.0
    );
    // The refused id is never the resume point: it could not be sent as a header.
    conn.send("id: 8\0y\ndata: forged again\n\n").await;
    drop(conn);
    let again = upstream.next_conn().await;
    assert_eq!(again.header("last-event-id"), Some("7"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_returns_exactly_the_missed_events() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).yaml());
    // A second client keeps the shared stream (and its ring) alive.
    let mut keeper = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    let mut leaver = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert!(leaver.next_frame().await.and_then(|f| f.retry()).is_some());
    for i in 1..=3 {
        conn.send(&format!("id: e{i}\ndata: {i}\n\n")).await;
        assert_eq!(
            leaver.next_event().await.and_then(|f| f.id()),
            Some(format!("e{i}"))
        );
    }
    drop(leaver);
    for i in 4..=6 {
        conn.send(&format!("id: e{i}\ndata: {i}\n\n")).await;
    }
    for i in 1..=6 {
        assert_eq!(
            keeper.next_event().await.and_then(|f| f.id()),
            Some(format!("e{i}"))
        );
    }
    let mut back = SseClient::connect(&proxy.url("/s"), &[("Last-Event-ID", "e3")]).await;
    conn.send("id: e7\ndata: 7\n\n").await;
    let ids: Vec<String> = [
        back.next_event().await,
        back.next_event().await,
        back.next_event().await,
        back.next_event().await,
    ]
    .into_iter()
    .map(|f| f.and_then(|f| f.id()).expect("event"))
    .collect();
    assert_eq!(ids, ["e4", "e5", "e6", "e7"]);
    // The query form works for clients that cannot set headers.
    let mut by_query = SseClient::connect(&proxy.url("/s?lastEventId=e6"), &[]).await;
    assert_eq!(
        by_query.next_event().await.and_then(|f| f.id()).as_deref(),
        Some("e7")
    );
    assert_eq!(
        upstream.accepted(),
        1,
        "lastEventId must not change the shared upstream"
    );
    assert!(proxy.metric("sse_edge_replay_hits_total{route=\"/s\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_old_id_yields_a_gap_marker() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).set("defaults.replay", 2).yaml());
    let mut keeper = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    for i in 1..=5 {
        conn.send(&format!("id: e{i}\ndata: {i}\n\n")).await;
        keeper.next_event().await.expect("event");
    }
    let mut late = SseClient::connect(&proxy.url("/s"), &[("Last-Event-ID", "e1")]).await;
    let marker = late.next_event().await.expect("gap marker");
    assert_eq!(marker.event().as_deref(), Some("gap"));
    assert_eq!(
        marker.id().as_deref(),
        Some("e5"),
        "resuming from the marker continues live"
    );
    assert!(marker.data().is_some_and(|d| d.contains("e1")));
    conn.send("id: e6\ndata: 6\n\n").await;
    assert_eq!(
        late.next_event().await.and_then(|f| f.id()).as_deref(),
        Some("e6")
    );
    assert!(proxy.metric("sse_edge_replay_misses_total{route=\"/s\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_routes_use_one_upstream_and_forwarded_headers_make_it_per_client() {
    let mut upstream = SseUpstream::start().await;
    let stream = upstream.url("/stream");
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::sse("/shared", &stream))
            .route(Route::sse("/private", &stream).set("forward_headers", ["Authorization"]))
            .yaml(),
    );
    let mut a = SseClient::connect(&proxy.url("/shared"), &[]).await;
    let mut b = SseClient::connect(&proxy.url("/shared"), &[]).await;
    let mut conn = upstream.next_conn().await;
    conn.send("data: both\n\n").await;
    assert_eq!(
        a.next_event().await.and_then(|f| f.data()).as_deref(),
        Some("both")
    );
    assert_eq!(
        b.next_event().await.and_then(|f| f.data()).as_deref(),
        Some("both")
    );
    assert_eq!(upstream.accepted(), 1);

    let _alice =
        SseClient::connect(&proxy.url("/private"), &[("Authorization", "Bearer alice")]).await;
    let first = upstream.next_conn().await;
    let _bob =
        SseClient::connect(&proxy.url("/private"), &[("Authorization", "Bearer alice")]).await;
    let second = upstream.next_conn().await;
    assert_eq!(first.header("authorization"), Some("Bearer alice"));
    assert_eq!(second.header("authorization"), Some("Bearer alice"));
    assert_eq!(
        upstream.accepted(),
        3,
        "forward_headers streams are never shared"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_upstreams_are_counted_while_clients_keep_their_heartbeats() {
    let mut html = SseUpstream::start_with(200, "text/html").await;
    let mut failing = SseUpstream::start_with(503, "text/event-stream").await;
    let mut oversize = SseUpstream::start().await;
    let closed = common::free_addr();
    let proxy = Proxy::start(
        &Config::new()
            .set("defaults.heartbeat", "100ms")
            .set("defaults.max_event_bytes", 64)
            .route(Route::sse("/html", html.url("/")))
            .route(Route::sse("/503", failing.url("/")))
            .route(Route::sse("/refused", format!("http://{closed}/x")))
            .route(Route::sse("/big", oversize.url("/")))
            .yaml(),
    );
    let mut clients = Vec::new();
    for path in ["/html", "/503", "/refused", "/big"] {
        clients.push(SseClient::connect(&proxy.url(path), &[]).await);
    }
    let _ = html.next_conn().await;
    let _ = failing.next_conn().await;
    let mut big = oversize.next_conn().await;
    big.send(&format!("data: {}\n\ndata: small\n\n", "x".repeat(200)))
        .await;
    assert_eq!(
        clients[3]
            .next_event()
            .await
            .and_then(|f| f.data())
            .as_deref(),
        Some("small")
    );
    for client in &mut clients {
        let frame = client.next_frame_within(Duration::from_secs(3)).await;
        assert!(frame.is_some(), "client still streaming");
        assert!(client.next_frame().await.expect("heartbeat").is_comment());
    }
    for (route, reason) in [
        ("/html", "content_type"),
        ("/503", "status"),
        ("/refused", "connect"),
        ("/big", "oversize_event"),
    ] {
        let sample =
            format!("sse_edge_upstream_errors_total{{reason=\"{reason}\",route=\"{route}\"}}");
        assert!(
            proxy.metric(&sample) >= 1.0,
            "no upstream error counted for {reason}:\n{}",
            proxy.metrics()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_subscriber_leaving_closes_the_upstream() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&config(&upstream).set("defaults.linger", "100ms").yaml());
    let client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    assert!(
        common::eventually(common::WAIT, || proxy
            .metric("sse_edge_connections_active{route=\"/s\"}")
            == 1.0)
        .await
    );
    drop(client);
    assert!(
        conn.closed_within(common::WAIT).await,
        "upstream connection closed after the last client left"
    );
    assert!(
        common::eventually(common::WAIT, || proxy
            .metric("sse_edge_connections_active{route=\"/s\"}")
            == 0.0)
        .await
    );
    assert_eq!(
        proxy.metric("sse_edge_upstream_streams_active{route=\"/s\"}"),
        0.0
    );
}

#[test]
fn check_reports_each_config_error_with_its_path() {
    let dir = std::env::temp_dir().join(format!("sse-edge-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let run = |name: &str, yaml: &str| common::check_config(&dir, name, yaml);
    let (ok, out) = run(
        "unknown.yaml",
        "routes:\n  - path: /a\n    sse: { upstream: 'http://h/' , shared: true }\n",
    );
    assert!(
        !ok && out.contains(":3: routes[0].sse.shared") && out.contains("unknown field"),
        "{out}"
    );
    let (ok, out) = run(
        "duration.yaml",
        "routes:\n  - path: /a\n    heartbeat: often\n    sse: { upstream: 'http://h/' }\n",
    );
    assert!(!ok && out.contains(":3: routes[0].heartbeat"), "{out}");
    let (ok, out) = run("missing.yaml", "listen: 127.0.0.1:1\n");
    assert!(
        !ok && out.contains("routes") && out.contains("missing field"),
        "{out}"
    );
    let (ok, out) = run(
        "good.yaml",
        "routes:\n  - path: /a\n    sse: { upstream: 'http://h/' }\n",
    );
    assert!(
        ok && out.lines().count() == 1 && out.contains("1 routes"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

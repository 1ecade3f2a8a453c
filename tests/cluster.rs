//! Cluster mode (SPEC §9) end to end: a real redis-server of the test's own and two or three
//! real sse-edge processes pointing at it, with upstreams written in the test.

mod common;

use std::time::Duration;

use common::json_api::{json, JsonApi};
use common::redis::Redis;
use common::{eventually, Config, Frame, Proxy, Route, SseClient, SseUpstream, WAIT};
use serde_json::json;

/// Leases as short as the cluster accepts, so takeovers are quick to test.
const LEASE: &str = "1s";

/// The configuration of a cluster node with `route` as its only route.
fn node_config(redis: &Redis, route: Route) -> Config {
    Config::new()
        .set("cluster.redis", redis.url())
        .set("cluster.lease", LEASE)
        .set("cluster.prefix", "t:")
        .route(route)
}

/// A cluster node with `route` as its only route.
fn node(redis: &Redis, route: Route) -> Proxy {
    Proxy::start(&node_config(redis, route).yaml())
}

/// The node holding the lease, among `nodes`, once one does.
async fn holder(nodes: &[&Proxy]) -> usize {
    let mut found = None;
    let held = eventually(WAIT, || {
        found = nodes
            .iter()
            .position(|n| n.metric("sse_edge_cluster_leases_held") == 1.0);
        found.is_some()
    })
    .await;
    assert!(held, "no node took the lease");
    found.unwrap_or_default()
}

/// The next event that is not a heartbeat, within the deadline.
async fn event(client: &mut SseClient) -> Frame {
    client.next_event().await.expect("an event in time")
}

fn sse_route(upstream: &SseUpstream) -> Route {
    Route::sse("/s", upstream.url("/stream"))
        .set("heartbeat", "200ms")
        .set("linger", "0s")
}

#[tokio::test]
async fn a_shared_sse_route_has_one_upstream_connection_for_three_nodes() {
    let redis = Redis::start();
    let mut upstream = SseUpstream::start().await;
    let nodes: Vec<Proxy> = (0..3).map(|_| node(&redis, sse_route(&upstream))).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(SseClient::connect(&node.url("/s"), &[]).await);
    }
    let mut conn = upstream.next_conn().await;
    let all: Vec<&Proxy> = nodes.iter().collect();
    holder(&all).await;
    // Followers read the log once they follow it: give their first read a moment.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for n in 1..=5 {
        conn.send(&format!("id: {n}\ndata: tick {n}\n\n")).await;
    }
    for client in &mut clients {
        for n in 1..=5 {
            let frame = event(client).await;
            assert_eq!(frame.id().as_deref(), Some(n.to_string().as_str()));
            assert_eq!(frame.data().as_deref(), Some(format!("tick {n}").as_str()));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        upstream.accepted(),
        1,
        "one upstream connection for the cluster"
    );
    let relayed: f64 = nodes
        .iter()
        .map(|n| n.metric("sse_edge_cluster_events_relayed_total"))
        .sum();
    assert_eq!(
        relayed, 15.0,
        "5 appended by the holder, 5 read by each follower"
    );
    assert!(nodes.iter().all(|n| n.metric("sse_edge_cluster_up") == 1.0));
}

#[tokio::test]
async fn a_poll_route_with_clients_on_three_nodes_is_polled_once_per_interval() {
    let redis = Redis::start();
    let api = JsonApi::start(json(&json!({"v": 0}), None)).await;
    let route = || {
        Route::poll("/o", api.url("/doc"))
            .opt("interval", "200ms")
            .opt("emit", "snapshot")
            .set("linger", "0s")
    };
    let nodes: Vec<Proxy> = (0..3).map(|_| node(&redis, route())).collect();
    let mut clients = Vec::new();
    for node in &nodes {
        let mut client = SseClient::connect(&node.url("/o"), &[]).await;
        let first = event(&mut client).await;
        assert_eq!(first.data().as_deref(), Some("{\"v\":0}"));
        clients.push(client);
    }
    let before = api.requests();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = api.requests() - before;
    assert!(
        (8..=12).contains(&polls),
        "2 s at 200 ms is about 10 polls for the cluster, not 30: {polls}"
    );
    api.set_json(&json!({"v": 1}));
    for client in &mut clients {
        let change = event(client).await;
        assert_eq!(change.data().as_deref(), Some("{\"v\":1}"));
    }
}

#[tokio::test]
async fn resume_on_another_node_is_exact() {
    let redis = Redis::start();
    let mut upstream = SseUpstream::start().await;
    let a = node(&redis, sse_route(&upstream));
    let b = node(&redis, sse_route(&upstream));
    let mut first = SseClient::connect(&a.url("/s"), &[]).await;
    let mut conn = upstream.next_conn().await;
    holder(&[&a, &b]).await;
    // Proxy-assigned ids (no id from the upstream), then upstream ids.
    for n in 1..=3 {
        conn.send(&format!("data: p{n}\n\n")).await;
    }
    for n in 4..=6 {
        conn.send(&format!("id: u{n}\ndata: u{n}\n\n")).await;
    }
    let mut ids = Vec::new();
    for _ in 1..=6 {
        ids.push(event(&mut first).await.id().expect("an id"));
    }
    let proxy_ids: Vec<u64> = ids[..3]
        .iter()
        .map(|id| id.parse().expect("numeric"))
        .collect();
    assert!(proxy_ids.windows(2).all(|w| w[0] < w[1]));
    assert!(proxy_ids.iter().all(|id| *id < 1 << 53));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Resume after a proxy id, then after an upstream id: exactly the rest, then live.
    for (after, live) in [(1, "live1"), (4, "live2")] {
        let header = [("Last-Event-ID", ids[after].as_str())];
        let mut resumed = SseClient::connect(&b.url("/s"), &header).await;
        for want in &ids[after + 1..] {
            assert_eq!(event(&mut resumed).await.id().as_ref(), Some(want));
        }
        conn.send(&format!("id: {live}\ndata: {live}\n\n")).await;
        assert_eq!(
            event(&mut resumed).await.id().as_deref(),
            Some(live),
            "no gap"
        );
        assert_eq!(event(&mut first).await.id().as_deref(), Some(live));
        drop(resumed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        ids.push(live.to_string());
    }
    // An id the cluster's window no longer holds is marked, not silently skipped.
    let header = [("Last-Event-ID", "long-gone")];
    let mut stale = SseClient::connect(&b.url("/s"), &header).await;
    assert_eq!(event(&mut stale).await.event().as_deref(), Some("gap"));
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn kill_9_of_the_holder_is_taken_over_within_lease_plus_one_second() {
    let redis = Redis::start();
    let mut upstream = SseUpstream::start().await;
    let mut nodes: Vec<Option<Proxy>> = (0..3)
        .map(|_| Some(node(&redis, sse_route(&upstream))))
        .collect();
    let mut clients = Vec::new();
    for node in nodes.iter().flatten() {
        clients.push(SseClient::connect(&node.url("/s"), &[]).await);
    }
    let mut conn = upstream.next_conn().await;
    let live: Vec<&Proxy> = nodes.iter().flatten().collect();
    let dead = holder(&live).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    for n in 1..=3 {
        conn.send(&format!("id: {n}\ndata: {n}\n\n")).await;
    }
    for client in &mut clients {
        for n in 1..=3 {
            assert_eq!(event(client).await.id(), Some(n.to_string()));
        }
    }
    let killed = std::time::Instant::now();
    nodes[dead] = None; // SIGKILL: no lease release, no goodbye
    clients.remove(dead);
    let mut next = tokio::time::timeout(Duration::from_secs(3), upstream.next_conn())
        .await
        .expect("a takeover connection");
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_millis(2100),
        "takeover took {took:?}"
    );
    assert_eq!(
        next.header("last-event-id"),
        Some("3"),
        "resumes after the last event"
    );
    for n in 4..=6 {
        next.send(&format!("id: {n}\ndata: {n}\n\n")).await;
    }
    for client in &mut clients {
        for n in 4..=6 {
            assert_eq!(
                event(client).await.id(),
                Some(n.to_string()),
                "nothing missed"
            );
        }
    }
    assert_eq!(upstream.accepted(), 2);
}

/// Two nodes on one shared sse route with a client each, one of them holding the stream,
/// for the Redis outage tests.
struct Pair {
    redis: Redis,
    upstream: SseUpstream,
    a: Proxy,
    b: Proxy,
    on_a: SseClient,
    on_b: SseClient,
    /// The holder's upstream connection.
    first: common::UpstreamConn,
}

impl Pair {
    async fn start() -> Pair {
        let redis = Redis::start();
        let mut upstream = SseUpstream::start().await;
        let a = node(&redis, sse_route(&upstream));
        let b = node(&redis, sse_route(&upstream));
        let on_a = SseClient::connect(&a.url("/s"), &[]).await;
        let on_b = SseClient::connect(&b.url("/s"), &[]).await;
        let first = upstream.next_conn().await;
        holder(&[&a, &b]).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        Pair {
            redis,
            upstream,
            a,
            b,
            on_a,
            on_b,
            first,
        }
    }
}

#[tokio::test]
async fn redis_killed_and_restarted_streams_keep_flowing_and_cluster_up_goes_0_then_1() {
    let Pair {
        mut redis,
        mut upstream,
        a,
        b,
        mut on_a,
        mut on_b,
        mut first,
    } = Pair::start().await;
    first.send("id: 1\ndata: 1\n\n").await;
    assert_eq!(event(&mut on_a).await.id().as_deref(), Some("1"));
    assert_eq!(event(&mut on_b).await.id().as_deref(), Some("1"));

    redis.kill();
    let down = eventually(WAIT, || {
        a.metric("sse_edge_cluster_up") == 0.0 && b.metric("sse_edge_cluster_up") == 0.0
    })
    .await;
    assert!(down, "cluster_up 0 on both nodes");
    // The follower runs the source itself once the lease it cannot see would have lapsed.
    let mut second = tokio::time::timeout(Duration::from_secs(4), upstream.next_conn())
        .await
        .expect("the follower connects upstream on its own");
    first.send("id: 2\ndata: 2\n\n").await;
    second.send("id: 2\ndata: 2\n\n").await;
    let (a2, b2) = (event(&mut on_a).await, event(&mut on_b).await);
    assert_eq!(
        (a2.id().as_deref(), b2.id().as_deref()),
        (Some("2"), Some("2"))
    );

    redis.restart();
    let up = eventually(WAIT, || {
        a.metric("sse_edge_cluster_up") == 1.0 && b.metric("sse_edge_cluster_up") == 1.0
    })
    .await;
    assert!(up, "cluster_up back to 1");
    let one = eventually(WAIT, || {
        a.metric("sse_edge_cluster_leases_held") + b.metric("sse_edge_cluster_leases_held") == 1.0
    })
    .await;
    assert!(one, "the two sources converge to one holder");
    assert!(on_a
        .next_frame_within(Duration::from_millis(300))
        .await
        .is_some());
    assert!(on_b
        .next_frame_within(Duration::from_millis(300))
        .await
        .is_some());
    assert!(!on_a.ended && !on_b.ended, "no client stream was dropped");
}

/// The events `client` receives within `limit`, as `(event, data)` pairs.
async fn events_within(client: &mut SseClient, limit: Duration) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(frame) = client.next_event_within(left).await else {
            return seen;
        };
        let name = frame.event().unwrap_or_else(|| "message".into());
        seen.push((name, frame.data().unwrap_or_default()));
    }
}

#[tokio::test]
async fn a_node_that_ran_alone_while_redis_was_away_marks_the_split_when_it_follows_again() {
    let Pair {
        mut redis,
        mut upstream,
        a,
        b,
        mut on_a,
        mut on_b,
        mut first,
    } = Pair::start().await;

    redis.kill();
    let mut second = tokio::time::timeout(Duration::from_secs(4), upstream.next_conn())
        .await
        .expect("the follower connects upstream on its own");
    // Split: each node's source publishes an event of its own, with a proxy id.
    first.send("data: from-first\n\n").await;
    second.send("data: from-second\n\n").await;
    let (a1, b1) = (event(&mut on_a).await, event(&mut on_b).await);
    assert_ne!(a1.data(), b1.data(), "each node served its own source");

    redis.restart();
    let one = eventually(WAIT, || {
        a.metric("sse_edge_cluster_leases_held") + b.metric("sse_edge_cluster_leases_held") == 1.0
    })
    .await;
    assert!(one, "the two sources converge to one holder");
    let seen_a = events_within(&mut on_a, Duration::from_secs(3)).await;
    let seen_b = events_within(&mut on_b, Duration::from_secs(3)).await;
    let gaps = |seen: &[(String, String)]| seen.iter().filter(|(name, _)| name == "gap").count();
    assert_eq!(
        gaps(&seen_a) + gaps(&seen_b),
        1,
        "the node that follows again marks the split once: {seen_a:?} {seen_b:?}"
    );

    // Live events from the one holder reach both nodes' clients after the marker.
    for _ in 0..2 {
        first.try_send("data: after\n\n").await;
        second.try_send("data: after\n\n").await;
    }
    let live = |seen: Vec<(String, String)>| seen.iter().any(|(_, data)| data == "after");
    assert!(live(events_within(&mut on_a, Duration::from_secs(2)).await));
    assert!(live(events_within(&mut on_b, Duration::from_secs(2)).await));
    assert!(!on_a.ended && !on_b.ended, "no client stream was dropped");
}

#[tokio::test]
async fn per_client_counts_across_nodes_and_a_closed_slot_frees_at_once() {
    let redis = Redis::start();
    let upstream = SseUpstream::start().await;
    let route = || sse_route(&upstream).set("per_client", 2);
    let a = node(&redis, route());
    let b = node(&redis, route());
    let one = SseClient::connect(&a.url("/s"), &[]).await;
    let two = SseClient::connect(&b.url("/s"), &[]).await;
    assert_eq!((one.status, two.status), (200, 200));
    let third = SseClient::connect(&a.url("/s"), &[]).await;
    assert_eq!(
        third.status, 429,
        "the client holds 2 streams across the cluster"
    );
    let other_node = SseClient::connect(&b.url("/s"), &[]).await;
    assert_eq!(other_node.status, 429);
    drop(two);
    let freed = {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let mut status = 0;
        while std::time::Instant::now() < deadline && status != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            status = SseClient::connect(&a.url("/s"), &[]).await.status;
        }
        status
    };
    assert_eq!(
        freed, 200,
        "a closed stream's slot is usable on another node within 1 s"
    );
    assert_eq!(
        a.metric("sse_edge_connections_rejected_total{reason=\"per_client\",route=\"/s\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_dead_nodes_slots_are_freed_within_the_lease() {
    let redis = Redis::start();
    let upstream = SseUpstream::start().await;
    let route = || sse_route(&upstream).set("per_client", 1);
    let a = node(&redis, route());
    let b = node(&redis, route());
    let held = SseClient::connect(&a.url("/s"), &[]).await;
    assert_eq!(held.status, 200);
    assert_eq!(SseClient::connect(&b.url("/s"), &[]).await.status, 429);
    drop(a); // SIGKILL: its slot is never released, only not renewed
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(SseClient::connect(&b.url("/s"), &[]).await.status, 200);
    drop(held);
}

#[tokio::test]
async fn a_poll_takeover_continues_from_the_last_document_without_a_duplicate_or_reset() {
    let redis = Redis::start();
    let api = JsonApi::start(json(&json!({"v": 0}), None)).await;
    let route = || {
        Route::poll("/o", api.url("/doc"))
            .opt("interval", "200ms")
            .opt("emit", "json_patch")
            .set("linger", "0s")
    };
    let mut nodes = [Some(node(&redis, route())), Some(node(&redis, route()))];
    let mut clients = Vec::new();
    for node in nodes.iter().flatten() {
        let mut client = SseClient::connect(&node.url("/o"), &[]).await;
        assert_eq!(
            event(&mut client).await.data().as_deref(),
            Some("{\"v\":0}")
        );
        clients.push(client);
    }
    api.set_json(&json!({"v": 1}));
    let mut last_ids = Vec::new();
    for client in &mut clients {
        let patch = event(client).await;
        assert_eq!(patch.event().as_deref(), Some("patch"));
        last_ids.push(patch.id().expect("id"));
    }
    assert_eq!(last_ids[0], last_ids[1], "one id for the cluster");
    let live: Vec<&Proxy> = nodes.iter().flatten().collect();
    let dead = holder(&live).await;
    nodes[dead] = None;
    let mut survivor = clients.remove(1 - dead);
    let quiet = survivor
        .next_event_within(Duration::from_millis(2500))
        .await;
    assert!(
        quiet.is_none(),
        "no duplicate snapshot, no reset: {quiet:?}"
    );
    let taken = nodes.iter().flatten().next().expect("the survivor");
    assert_eq!(taken.metric("sse_edge_cluster_leases_held"), 1.0);
    api.set_json(&json!({"v": 2}));
    let patch = event(&mut survivor).await;
    assert_eq!(patch.event().as_deref(), Some("patch"));
    assert!(patch.data().expect("data").contains("\"value\":2"));
    let (before, after): (u64, u64) = (
        last_ids[0].parse().expect("numeric"),
        patch.id().expect("id").parse().expect("numeric"),
    );
    assert!(after > before, "ids keep increasing across the takeover");
}

#[tokio::test]
async fn websocket_resume_on_another_node_is_exact_with_one_upstream_socket() {
    let redis = Redis::start();
    let server = common::ws_server::WsServer::start().await;
    let route = || Route::websocket("/w", server.url("/feed")).set("linger", "0s");
    let a = node(&redis, route());
    let b = node(&redis, route());
    let mut first = SseClient::connect(&a.url("/w"), &[]).await;
    assert!(eventually(WAIT, || server.open() == 1).await);
    holder(&[&a, &b]).await;
    for n in 1..=3 {
        server.send_text(&format!("{{\"n\":{n}}}"));
    }
    let mut ids = Vec::new();
    for _ in 1..=3 {
        ids.push(event(&mut first).await.id().expect("an id"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut resumed = SseClient::connect(&b.url("/w"), &[("Last-Event-ID", ids[0].as_str())]).await;
    for want in &ids[1..] {
        assert_eq!(event(&mut resumed).await.id().as_ref(), Some(want));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.send_text("{\"n\":4}");
    let (on_a, on_b) = (event(&mut first).await, event(&mut resumed).await);
    assert_eq!(
        on_a.id(),
        on_b.id(),
        "live after the replay, the same id on both nodes"
    );
    assert_eq!(
        server.connections(),
        1,
        "one upstream socket for the cluster"
    );
}

/// `XADD` and `XREAD` calls while `events` events flow to `per_node` clients on each of
/// two nodes.
async fn stream_commands(per_node: usize, events: usize) -> (u64, u64) {
    let redis = Redis::start();
    let mut upstream = SseUpstream::start().await;
    let config = node_config(&redis, sse_route(&upstream)).set("limits.per_client", 100);
    let (a, b) = (Proxy::start(&config.yaml()), Proxy::start(&config.yaml()));
    let mut clients = Vec::new();
    for proxy in [&a, &b] {
        for _ in 0..per_node {
            clients.push(SseClient::connect(&proxy.url("/s"), &[]).await);
        }
    }
    let mut conn = upstream.next_conn().await;
    holder(&[&a, &b]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    redis.command(&["CONFIG", "RESETSTAT"]);
    for n in 0..events {
        conn.send(&format!("id: {n}\ndata: {n}\n\n")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for client in &mut clients {
        for n in 0..events {
            assert_eq!(event(client).await.id(), Some(n.to_string()));
        }
    }
    (redis.calls("xadd"), redis.calls("xread"))
}

#[tokio::test]
async fn redis_commands_per_event_do_not_grow_with_subscribers() {
    let events = 30;
    let (few_xadd, few_xread) = stream_commands(1, events).await;
    let (many_xadd, many_xread) = stream_commands(20, events).await;
    assert!(few_xadd <= events as u64 + 1 && many_xadd <= events as u64 + 1);
    assert!(
        many_xadd <= few_xadd + 2,
        "appends: {few_xadd} vs {many_xadd}"
    );
    assert!(
        many_xread <= few_xread + 5 && many_xread <= events as u64 + 6,
        "one read per event at most for the one follower node: {few_xread} vs {many_xread}"
    );
}

#[tokio::test]
async fn a_slot_taken_while_redis_was_away_counts_once_it_is_back() {
    let mut redis = Redis::start();
    let upstream = SseUpstream::start().await;
    let route = || sse_route(&upstream).set("per_client", 1);
    let a = node(&redis, route());
    let b = node(&redis, route());
    redis.kill();
    assert!(eventually(WAIT, || a.metric("sse_edge_cluster_up") == 0.0).await);
    let alone = SseClient::connect(&a.url("/s"), &[]).await;
    assert_eq!(alone.status, 200, "admitted on the node's own count");
    redis.restart();
    assert!(eventually(WAIT, || a.metric("sse_edge_cluster_up") == 1.0).await);
    // The renewal runs every third of the lease: within a second the slot is in Redis.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let other = SseClient::connect(&b.url("/s"), &[]).await;
    assert_eq!(
        other.status, 429,
        "the renewal wrote the slot once Redis was back"
    );
    drop(alone);
}

#[tokio::test]
async fn a_holder_whose_clients_left_gives_the_stream_to_a_node_that_has_some() {
    let redis = Redis::start();
    let mut upstream = SseUpstream::start().await;
    let a = node(&redis, sse_route(&upstream));
    let b = node(&redis, sse_route(&upstream));
    let on_a = SseClient::connect(&a.url("/s"), &[]).await;
    let mut first = upstream.next_conn().await;
    assert_eq!(holder(&[&a, &b]).await, 0);
    let mut on_b = SseClient::connect(&b.url("/s"), &[]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.send("id: 1\ndata: 1\n\n").await;
    assert_eq!(event(&mut on_b).await.id().as_deref(), Some("1"));
    let left = std::time::Instant::now();
    drop(on_a);
    // The lease is given back at once, not left to lapse: b takes over on its next try.
    let mut next = tokio::time::timeout(Duration::from_secs(2), upstream.next_conn())
        .await
        .expect("b connects upstream");
    assert!(
        left.elapsed() < Duration::from_millis(900),
        "{:?}",
        left.elapsed()
    );
    assert_eq!(next.header("last-event-id"), Some("1"));
    assert!(
        first.closed_within(Duration::from_secs(1)).await,
        "a stopped its source"
    );
    next.send("id: 2\ndata: 2\n\n").await;
    assert_eq!(event(&mut on_b).await.id().as_deref(), Some("2"));
    assert_eq!(b.metric("sse_edge_cluster_leases_held"), 1.0);
    assert_eq!(a.metric("sse_edge_cluster_leases_held"), 0.0);
}

#[tokio::test]
async fn an_upstream_that_says_stop_is_asked_once_and_ends_the_holders_streams() {
    let redis = Redis::start();
    let upstream = SseUpstream::start_with(204, "text/event-stream").await;
    // The stream outlives its last client by a second: time enough to ask again, if it did.
    let a = node(&redis, sse_route(&upstream).set("linger", "1s"));
    let mut client = SseClient::connect(&a.url("/s"), &[]).await;
    client.read_to_end(WAIT).await;
    assert!(client.ended, "the 204 ends the stream");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        upstream.accepted(),
        1,
        "a stopped upstream is not asked again"
    );
}

#[tokio::test]
async fn an_upstream_that_says_stop_ends_the_stream_on_every_node_and_a_new_client_asks_again() {
    let redis = Redis::start();
    // The first request streams, the holder's reconnect hears "stop", the next streams again.
    let mut upstream = SseUpstream::start_answering(&[200, 204, 200], "text/event-stream").await;
    let a = node(&redis, sse_route(&upstream));
    let b = node(&redis, sse_route(&upstream));
    let mut on_a = SseClient::connect(&a.url("/s"), &[]).await;
    let mut first = upstream.next_conn().await;
    assert_eq!(holder(&[&a, &b]).await, 0);
    let mut on_b = SseClient::connect(&b.url("/s"), &[]).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.send("id: 1\ndata: 1\n\n").await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(event(client).await.id().as_deref(), Some("1"));
    }
    drop(first);
    let _stop = upstream.next_conn().await;
    let ended = r#"sse_edge_stream_ends_total{reason="upstream_ended",route="/s"}"#;
    for (name, node, client) in [("holder", &a, &mut on_a), ("follower", &b, &mut on_b)] {
        client.read_to_end(WAIT).await;
        assert!(client.ended, "the {name}'s client is ended");
        let counted = eventually(WAIT, || node.metric(ended) == 1.0).await;
        assert!(counted, "the {name} counts upstream_ended");
    }
    // A client after the end is a new request: the stream's next holder asks again, from
    // the last event.
    let mut again = SseClient::connect(&b.url("/s"), &[]).await;
    let mut third = upstream.next_conn().await;
    assert_eq!(third.header("last-event-id"), Some("1"));
    third.send("id: 2\ndata: 2\n\n").await;
    assert_eq!(event(&mut again).await.id().as_deref(), Some("2"));
    assert_eq!(upstream.accepted(), 3);
}

#[tokio::test]
async fn slot_renewals_call_the_script_by_its_hash_not_with_its_body() {
    let redis = Redis::start();
    let upstream = SseUpstream::start().await;
    let config = node_config(&redis, sse_route(&upstream)).set("limits.per_client", 1000);
    let a = Proxy::start(&config.yaml());
    let mut clients = Vec::new();
    for _ in 0..100 {
        clients.push(SseClient::connect(&a.url("/s"), &[]).await);
    }
    redis.command(&["CONFIG", "RESETSTAT"]);
    // Renewals run every third of the 1 s lease: three rounds or more.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (bodies, hashes) = (redis.calls("eval"), redis.calls("evalsha"));
    let received = redis.stat("total_net_input_bytes");
    assert_eq!(bodies, 0, "no script body sent per slot");
    assert!(hashes >= 200, "every slot renewed each round: {hashes}");
    // A renewal by hash is about 150 bytes; the script's body alone is 210.
    let per_renewal = received / hashes;
    assert!(
        per_renewal < 200,
        "{per_renewal} bytes received per renewal"
    );
    drop(clients);
}

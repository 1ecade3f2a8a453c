//! Upstream pools end to end (SPEC §2): requests spread over the backends of an `http`
//! route, failover from a killed backend for `http` and `sse` routes, health checks that
//! skip a backend and bring it back, the all-down behaviour, and the same backend for the
//! same stream key in two proxy processes.

mod common;

use std::time::{Duration, Instant};

use common::backend::Backend;
use common::{eventually, http_get, Config, Proxy, Route, SseClient, WAIT};

/// `GET path` on the proxy: status and body.
async fn get(proxy: &Proxy, path: &str) -> (u16, String) {
    let (addr, path) = (proxy.addr, path.to_string());
    tokio::task::spawn_blocking(move || http_get(addr, &path))
        .await
        .expect("join")
        .expect("a response")
}

/// `sse_edge_upstream_backend_healthy` of `backend` on `route`.
fn healthy(proxy: &Proxy, route: &str, backend: &str) -> f64 {
    proxy.metric(&format!(
        "sse_edge_upstream_backend_healthy{{backend=\"{backend}\",route=\"{route}\"}}"
    ))
}

/// Waits until `backend`'s gauge on `route` reads `value`.
async fn gauge_becomes(proxy: &Proxy, route: &str, backend: &str, value: f64) {
    let reached = eventually(WAIT, || healthy(proxy, route, backend) == value).await;
    assert!(
        reached,
        "{backend} never read healthy={value}:\n{}",
        proxy.metrics()
    );
}

/// An `http` route `/api/*` over `backends`, with `health_check` when given.
fn http_pool(backends: &[&Backend], health_check: Option<&str>) -> String {
    let urls: Vec<String> = backends.iter().map(|b| b.url("")).collect();
    let mut route = Route::http("/api/*", urls);
    if let Some(interval) = health_check {
        route = route
            .opt("health_check.path", "/healthz")
            .opt("health_check.interval", interval)
            .opt("health_check.timeout", "1s");
    }
    Config::new().route(route).yaml()
}

/// `count` requests to `/api/x`, every one expected to be answered 200: the names of the
/// backends that answered.
async fn names(proxy: &Proxy, count: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..count {
        let (status, body) = get(proxy, "/api/x").await;
        assert_eq!(status, 200, "answered by {body:?}");
        names.push(body);
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn http_requests_take_turns_over_the_backends() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = Proxy::start(&http_pool(&[&a, &b], None));
    let answered = names(&proxy, 10).await;
    assert_eq!((a.requests(), b.requests()), (5, 5), "{answered:?}");
    for backend in [&a, &b] {
        assert_eq!(healthy(&proxy, "/api/*", &backend.url("")), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_route_fails_over_from_a_killed_backend_without_a_502() {
    let (mut a, b) = (Backend::start("a").await, Backend::start("b").await);
    let env = [("RUST_LOG", "warn,sse_edge::access=info")];
    let proxy = Proxy::start_logged(&http_pool(&[&a, &b], None), &env);
    names(&proxy, 4).await;
    a.kill().await;
    // The first request to reach the dead backend is retried on b; a is skipped after it.
    let answered = names(&proxy, 10).await;
    assert!(answered.iter().all(|name| name == "b"), "{answered:?}");
    let dead = a.url("");
    gauge_becomes(&proxy, "/api/*", &dead, 0.0).await;
    assert_eq!(healthy(&proxy, "/api/*", &b.url("")), 1.0);
    let refused = format!(
        "sse_edge_upstream_errors_total{{backend=\"{dead}\",reason=\"connect\",route=\"/api/*\"}}"
    );
    assert!(proxy.metric(&refused) >= 1.0, "{}", proxy.metrics());
    let log = proxy.log();
    let warned = log
        .lines()
        .filter(|line| line.contains("http backend failing"))
        .collect::<Vec<_>>();
    assert_eq!(warned.len(), 1, "one warning per outage:\n{log}");
    assert!(warned[0].contains(&dead), "{log}");
    let access = format!("backend=\"{}\"", b.url(""));
    assert!(
        log.lines()
            .any(|l| l.contains("sse_edge::access") && l.contains(&access)),
        "the access log names the backend:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_health_check_skips_a_backend_until_it_passes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = Proxy::start(&http_pool(&[&a, &b], Some("100ms")));
    names(&proxy, 4).await;
    a.set_health(503);
    gauge_becomes(&proxy, "/api/*", &a.url(""), 0.0).await;
    let before = a.requests();
    let answered = names(&proxy, 8).await;
    assert!(answered.iter().all(|name| name == "b"), "{answered:?}");
    assert_eq!(a.requests(), before, "nothing sent to a failing backend");
    a.set_health(200);
    gauge_becomes(&proxy, "/api/*", &a.url(""), 1.0).await;
    let answered = names(&proxy, 8).await;
    assert_eq!(
        answered.iter().filter(|name| *name == "a").count(),
        4,
        "a takes its turns again: {answered:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_backend_failing_its_check_http_answers_502_at_once() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let proxy = Proxy::start(&http_pool(&[&a, &b], Some("100ms")));
    for backend in [&a, &b] {
        backend.set_health(503);
    }
    for backend in [&a, &b] {
        gauge_becomes(&proxy, "/api/*", &backend.url(""), 0.0).await;
    }
    let started = Instant::now();
    let (status, _) = get(&proxy, "/api/x").await;
    assert_eq!(status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((a.requests(), b.requests()), (0, 0));
    b.set_health(200);
    gauge_becomes(&proxy, "/api/*", &b.url(""), 1.0).await;
    assert_eq!(get(&proxy, "/api/x").await, (200, "b".to_string()));
}

/// The next event's id and data, within the default deadline.
async fn next(client: &mut SseClient) -> (u64, String) {
    let frame = client
        .next_event()
        .await
        .expect("an event on the same connection");
    let id = frame
        .id()
        .and_then(|id| id.parse().ok())
        .expect("numeric id");
    (id, frame.data().expect("data"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_stream_moves_to_the_next_backend_and_resumes_with_its_last_id() {
    let mut backends = [Backend::start("a").await, Backend::start("b").await];
    let urls: Vec<String> = backends.iter().map(|b| b.url("/events/ticks")).collect();
    let proxy = Proxy::start(&Config::new().route(Route::sse("/s", urls)).yaml());
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let (mut last, data) = next(&mut client).await;
    let first = backends
        .iter()
        .position(|b| data.starts_with(&b.name))
        .expect("a backend");
    for _ in 0..3 {
        last = next(&mut client).await.0;
    }
    backends[first].kill().await;
    let other = &backends[1 - first];
    let mut moved = false;
    for _ in 0..10 {
        let (id, data) = next(&mut client).await;
        assert_eq!(id, last + 1, "ids stay contiguous across the failover");
        last = id;
        moved |= data.starts_with(&other.name);
    }
    assert!(moved, "the stream is fed by {} now", other.name);
    let streams = other.streams();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert!(
        streams[0].1.is_some(),
        "resumed with Last-Event-ID: {streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_backend_down_a_stream_keeps_its_heartbeats_and_comes_back() {
    let mut backends = [Backend::start("a").await, Backend::start("b").await];
    let urls: Vec<String> = backends.iter().map(|b| b.url("/events/ticks")).collect();
    let config = Config::new()
        .set("defaults.heartbeat", "150ms")
        .route(Route::sse("/s", urls))
        .yaml();
    let proxy = Proxy::start(&config);
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    let mut last = 0;
    for _ in 0..3 {
        last = next(&mut client).await.0;
    }
    for backend in &mut backends {
        backend.kill().await;
    }
    // Events already on their way still arrive; then only heartbeats, on the same connection.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut heartbeats = 0;
    while Instant::now() < until {
        let frame = client.next_frame_within(Duration::from_millis(500)).await;
        let frame = frame.expect("the connection stays open while every backend is down");
        match frame.id().and_then(|id| id.parse().ok()) {
            Some(id) if heartbeats == 0 => last = id,
            Some(id) => panic!("event {id} while every backend is down"),
            None => heartbeats += usize::from(frame.is_comment()),
        }
    }
    assert!(heartbeats >= 5, "heartbeats go on: {heartbeats}");
    let errors = r#"sse_edge_upstream_errors_total{reason="connect",route="/s"}"#;
    assert!(proxy.metric(errors) >= 2.0, "{}", proxy.metrics());
    backends[1].restart().await;
    let (id, data) = next(&mut client).await;
    assert_eq!(id, last + 1, "resumed after the last event seen");
    assert!(data.starts_with('b'), "{data}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_picks_the_same_backend_in_two_proxies() {
    let backends = [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ];
    let urls: Vec<String> = backends.iter().map(|b| b.url("/events/{id}")).collect();
    let config = Config::new().route(Route::sse("/s/{id}", urls)).yaml();
    let proxies = [Proxy::start(&config), Proxy::start(&config)];
    // The second proxy is asked in the reverse order: only a pick that depends on the key
    // alone (not on how many streams came before) agrees.
    let keys: Vec<usize> = (0..12).collect();
    let first = picks(&proxies[0], keys.iter().copied()).await;
    let second = picks(&proxies[1], keys.iter().rev().copied()).await;
    let second: Vec<String> = second.into_iter().rev().collect();
    assert_eq!(first, second, "key by key, over {keys:?}");
    let mut picked = first;
    picked.sort();
    picked.dedup();
    assert!(
        picked.len() >= 2,
        "keys spread over the backends: {picked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_pool_checks_by_connecting_and_reads_the_live_backend() {
    let live = common::ws_server::WsServer::start().await;
    let dead = format!("ws://{}/feed", common::free_addr());
    let route = Route::websocket("/w", [dead.clone(), live.url("/feed")])
        .opt("health_check.interval", "100ms")
        .opt("health_check.timeout", "1s");
    let proxy = Proxy::start(&Config::new().route(route).yaml());
    gauge_becomes(&proxy, "/w", &dead, 0.0).await;
    assert_eq!(healthy(&proxy, "/w", &live.url("/feed")), 1.0);
    let mut client = SseClient::connect(&proxy.url("/w"), &[]).await;
    assert!(
        eventually(WAIT, || live.open() == 1).await,
        "the stream opens on the live one"
    );
    live.send_text("hello");
    let frame = client.next_event().await.expect("an event");
    assert_eq!(frame.data().as_deref(), Some("hello"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poll_pool_moves_past_a_refused_backend() {
    let api = common::json_api::JsonApi::start_json(&serde_json::json!({ "n": 1 })).await;
    // Keys until one prefers the dead backend (each does with even odds, by how the ports
    // hash: six keys once all missed it, at odds of 1 in 64), each answered by the live one.
    let dead = format!("http://{}/doc/{{id}}", common::free_addr());
    let route =
        Route::poll("/p/{id}", [dead.clone(), api.url("/doc/{id}")]).opt("interval", "100ms");
    let proxy = Proxy::start(&Config::new().route(route).yaml());
    for key in 0..32 {
        let mut client = SseClient::connect(&proxy.url(&format!("/p/{key}")), &[]).await;
        let frame = client
            .next_event()
            .await
            .expect("a snapshot from the live backend");
        assert_eq!(frame.data().as_deref(), Some(r#"{"n":1}"#));
        if healthy(&proxy, "/p/{id}", &dead) == 0.0 {
            break;
        }
    }
    gauge_becomes(&proxy, "/p/{id}", &dead, 0.0).await;
}

/// The backend that serves each of `keys` (`/s/k{key}`) on `proxy`, in the order asked.
async fn picks(proxy: &Proxy, keys: impl Iterator<Item = usize>) -> Vec<String> {
    let mut names = Vec::new();
    for key in keys {
        let mut client = SseClient::connect(&proxy.url(&format!("/s/k{key}")), &[]).await;
        let (_, data) = next(&mut client).await;
        names.push(data.split(' ').next().expect("a name").to_string());
    }
    names
}

#[test]
fn check_validates_every_url_of_a_pool_at_its_own_path() {
    let dir = std::env::temp_dir().join(format!("sse-edge-pools-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let route = Route::poll(
        "/p/{id}",
        ["http://a:1/o/{id}", "ftp://b:1/o/{id}", "http://c:1/{x}"],
    );
    let (ok, out) = common::check_config(&dir, "bad.yaml", &Config::new().route(route).yaml());
    assert!(!ok, "{out}");
    assert!(out.contains("routes[0].poll.url[1]:"), "{out}");
    assert!(out.contains("routes[0].poll.url[2]:"), "{out}");
    assert!(!out.contains("routes[0].poll.url[0]"), "{out}");
    let good = Route::poll("/p/{id}", ["http://a:1/o/{id}", "http://b:1/o/{id}"])
        .opt("health_check.path", "/healthz");
    let (ok, out) = common::check_config(&dir, "good.yaml", &Config::new().route(good).yaml());
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

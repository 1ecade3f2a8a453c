//! `poll` routes end to end: the real binary between a scripted JSON API and raw clients.

mod common;

use std::time::Duration;

use common::json_api::{json, JsonApi, Reply};
use common::{eventually, Config, Frame, Proxy, Route, SseClient};
use serde_json::{json, Value};

/// A route `/o` polling `api` every 100ms, with 200ms heartbeats; tests add options with
/// `opt` (inside `poll:`) and `set` (beside `path`).
fn route(api: &JsonApi) -> Route {
    Route::poll("/o", api.url("/doc"))
        .set("heartbeat", "200ms")
        .opt("interval", "100ms")
}

/// The proxy with `route` as its only route.
fn start(route: Route) -> Proxy {
    Proxy::start(&Config::new().route(route).yaml())
}

fn polls(proxy: &Proxy, result: &str) -> f64 {
    proxy.metric(&format!(
        "sse_edge_polls_total{{result=\"{result}\",route=\"/o\"}}"
    ))
}

fn errors(proxy: &Proxy, reason: &str) -> f64 {
    proxy.metric(&format!(
        "sse_edge_upstream_errors_total{{reason=\"{reason}\",route=\"/o\"}}"
    ))
}

fn parse(frame: &Frame) -> Value {
    serde_json::from_str(&frame.data().expect("data")).expect("event data is JSON")
}

/// The `i`th document of a sequence whose steps add, remove and replace keys, reorder, grow
/// and shrink arrays, nest objects, and now and then hold a `null`.
fn document(i: u64) -> Value {
    let mut doc = json!({
        "version": i,
        "items": (0..(i % 5 + 1)).map(|k| (k * 7 + i) % 11).collect::<Vec<_>>(),
        "users": [{"name": "ann"}, {"name": "bob", "tags": ["x"]}, {"name": "cy"}],
        "about": "a long unchanging text, the part of a document patches do not resend ".repeat(20),
    });
    let users = doc["users"].as_array_mut().expect("users");
    users.rotate_left((i % 3) as usize);
    doc["nested"] = match i % 3 {
        0 => json!({"a": {"b": {"c": i}}}),
        1 => json!({"a": {"d": [i, {"e": "x"}], "b": {"c": 0}}}),
        _ => json!("flat"),
    };
    if i.is_multiple_of(4) {
        doc["extra"] = json!({"k": i, "deep": {"list": [[i], [i + 1]]}});
    }
    if i % 7 == 3 {
        doc["maybe"] = Value::Null;
    }
    if i % 6 == 5 {
        doc["users"][0]["gone"] = json!(null);
    }
    doc
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_mode_sends_each_distinct_document_once() {
    let api = JsonApi::start_json(&json!({"v": 0})).await;
    let proxy = start(route(&api));
    let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
    let first = client.next_event().await.expect("first document");
    assert_eq!(first.event(), None, "default event type is message");
    assert_eq!(parse(&first), json!({"v": 0}));
    let mut last_id: u64 = first.id().expect("id").parse().expect("numeric id");

    for v in 1..=4 {
        // Several polls of an unchanged document (reformatted, too) send nothing.
        let unchanged = polls(&proxy, "unchanged");
        api.set(Reply::Raw(format!("{{ \"v\" :\n {} }}", v - 1)));
        assert!(
            eventually(common::WAIT, || polls(&proxy, "unchanged")
                >= unchanged + 2.0)
            .await,
            "the reformatted document is polled and found unchanged"
        );
        assert!(
            client
                .next_event_within(Duration::from_millis(100))
                .await
                .is_none(),
            "no event while unchanged"
        );
        api.set_json(&json!({"v": v}));
        let frame = client.next_event().await.expect("changed document");
        assert_eq!(parse(&frame), json!({"v": v}));
        let id: u64 = frame.id().expect("id").parse().expect("numeric id");
        assert!(id > last_id, "ids increase");
        last_id = id;
    }
    assert!(polls(&proxy, "unchanged") >= 8.0);
    assert_eq!(polls(&proxy, "changed"), 5.0);
    assert_eq!(polls(&proxy, "error"), 0.0);

    // A late subscriber first receives the current document.
    let mut late = SseClient::connect(&proxy.url("/o"), &[]).await;
    let frame = late.next_event().await.expect("join snapshot");
    assert_eq!(frame.event().as_deref().unwrap_or("message"), "message");
    assert_eq!(parse(&frame), json!({"v": 4}));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_content_is_sent_as_is() {
    let api = JsonApi::start(Reply::Raw("line one\nline two".into())).await;
    let proxy = start(route(&api).opt("content", "text").opt("event", "doc"));
    let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
    let frame = client.next_event().await.expect("text");
    assert_eq!(frame.event().as_deref(), Some("doc"));
    assert_eq!(frame.data().as_deref(), Some("line one\nline two"));
    api.set(Reply::Raw("not json either".into()));
    let frame = client.next_event().await.expect("text");
    assert_eq!(frame.data().as_deref(), Some("not json either"));
}

/// Follows 25 changes through `emit`, applying each event to the first snapshot.
async fn reconstructs(emit: &str, apply: fn(&mut Value, &str)) {
    let api = JsonApi::start_json(&document(0)).await;
    let proxy = start(route(&api).opt("emit", emit));
    let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
    let first = client.next_event().await.expect("snapshot");
    assert_eq!(first.event().as_deref(), Some("snapshot"));
    let mut doc = parse(&first);
    assert_eq!(doc, document(0));
    let mut patches = 0;
    for i in 1..=25 {
        api.set_json(&document(i));
        let frame = client.next_event().await.expect("change");
        match frame.event().as_deref() {
            Some("patch") => {
                apply(&mut doc, &frame.data().expect("data"));
                patches += 1;
            }
            Some("snapshot") => doc = parse(&frame),
            other => panic!("unexpected event {other:?}"),
        }
        assert_eq!(doc, document(i), "after change {i}");
    }
    assert!(patches >= 20, "{patches} of 25 changes were patches");
    assert!(proxy.metric("sse_edge_patch_bytes_saved_total{route=\"/o\"}") > 0.0);

    // A late subscriber starts from the current full document.
    let mut late = SseClient::connect(&proxy.url("/o"), &[]).await;
    let frame = late.next_event().await.expect("join snapshot");
    assert_eq!(frame.event().as_deref(), Some("snapshot"));
    assert_eq!(parse(&frame), document(25));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_patch_events_reconstruct_the_document() {
    reconstructs("json_patch", |doc, data| {
        let patch: Vec<json_patch::PatchOperation> =
            serde_json::from_str(data).expect("patch parses");
        json_patch::patch(doc, &patch).expect("patch applies");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn merge_patch_events_reconstruct_the_document() {
    reconstructs("merge_patch", |doc, data| {
        let patch: Value = serde_json::from_str(data).expect("merge patch parses");
        json_patch::merge(doc, &patch);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_subscribers_share_one_poller_that_stops_after_they_leave() {
    let api = JsonApi::start_json(&json!({"n": 1})).await;
    let config = Config::new()
        .set("limits.per_client", 64)
        .route(route(&api).set("linger", "200ms"));
    let proxy = Proxy::start(&config.yaml());
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
        let frame = client.next_event().await.expect("document");
        assert_eq!(parse(&frame), json!({"n": 1}));
        clients.push(client);
    }
    assert_eq!(
        proxy.metric("sse_edge_upstream_streams_active{route=\"/o\"}"),
        1.0
    );
    // Six more requests take at least five intervals (100ms -10% jitter): one poller, not 50.
    let before = api.requests();
    let started = std::time::Instant::now();
    assert!(eventually(common::WAIT, || api.requests() >= before + 6).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "6 upstream requests in {took:?} at a 100ms interval for 50 subscribers"
    );
    assert!(
        api.connections() * 3 < api.requests(),
        "polls reuse their upstream connection: {} connections for {} requests",
        api.connections(),
        api.requests()
    );

    drop(clients);
    assert!(
        eventually(common::WAIT, || proxy
            .metric("sse_edge_upstream_streams_active{route=\"/o\"}")
            == 0.0)
        .await,
        "the poller stops after the last subscriber and the linger"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped = api.requests();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(api.requests(), stopped, "no polls without subscribers");
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_makes_polls_conditional() {
    let api = JsonApi::start(json(&json!({"v": 1}), Some("\"v1\""))).await;
    let proxy = start(route(&api));
    let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
    assert_eq!(
        parse(&client.next_event().await.expect("doc")),
        json!({"v": 1})
    );
    assert!(
        eventually(common::WAIT, || polls(&proxy, "not_modified") >= 3.0).await,
        "304s counted as not_modified"
    );
    assert!(api.not_modified() >= 3);
    assert_eq!(api.last_header("if-none-match").as_deref(), Some("\"v1\""));
    assert!(
        client
            .next_event_within(Duration::from_millis(100))
            .await
            .is_none(),
        "a 304 sends nothing"
    );
    assert_eq!(polls(&proxy, "changed"), 1.0);

    api.set(json(&json!({"v": 2}), Some("\"v2\"")));
    assert_eq!(
        parse(&client.next_event().await.expect("doc")),
        json!({"v": 2})
    );
    assert!(
        eventually(common::WAIT, || api.last_header("if-none-match").as_deref()
            == Some("\"v2\""))
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn last_modified_makes_polls_conditional() {
    let dated = |v: u64, date: &str| Reply::Dated {
        body: json!({"v": v}).to_string(),
        last_modified: date.to_string(),
    };
    let first_date = "Sat, 21 Nov 2026 10:00:00 GMT";
    let api = JsonApi::start(dated(1, first_date)).await;
    let proxy = start(route(&api));
    let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
    assert_eq!(
        parse(&client.next_event().await.expect("doc")),
        json!({"v": 1})
    );
    assert!(
        eventually(common::WAIT, || api.not_modified() >= 3).await,
        "the proxy sends If-Modified-Since"
    );
    assert_eq!(
        api.last_header("if-modified-since").as_deref(),
        Some(first_date)
    );
    assert!(
        client
            .next_event_within(Duration::from_millis(300))
            .await
            .is_none(),
        "a 304 sends nothing"
    );
    api.set(dated(2, "Sat, 21 Nov 2026 10:00:05 GMT"));
    assert_eq!(
        parse(&client.next_event().await.expect("doc")),
        json!({"v": 2})
    );
    assert!(polls(&proxy, "not_modified") >= 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_keep_clients_connected_and_recover() {
    let api = JsonApi::start_json(&json!({"ok": 0})).await;
    let proxy = start(route(&api).set("upstream_error_event", true));
    let mut client = SseClient::connect(&proxy.url("/o"), &[]).await;
    assert_eq!(
        parse(&client.next_event().await.expect("doc")),
        json!({"ok": 0})
    );

    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let phases = [
        (Reply::Status(500), "status"),
        (Reply::Raw("{\"broken\":".into()), "invalid_json"),
        (Reply::Huge(10 * 1024 * 1024), "too_large"),
        (Reply::Raw(deep), "too_deep"),
    ];
    for (reply, reason) in phases {
        api.set(reply);
        assert!(
            eventually(Duration::from_secs(15), || errors(&proxy, reason) >= 1.0).await,
            "{reason} counted"
        );
    }
    assert!(polls(&proxy, "error") >= 4.0);
    api.set_json(&json!({"ok": 1}));

    let (mut heartbeats, mut outage_events) = (0, 0);
    loop {
        let frame = client
            .next_frame_within(Duration::from_secs(15))
            .await
            .expect("the stream stays open");
        if frame.is_comment() {
            heartbeats += 1;
        } else if frame.event().as_deref() == Some("upstream-error") {
            outage_events += 1;
        } else if frame.data().is_some() {
            assert_eq!(parse(&frame), json!({"ok": 1}));
            break;
        }
    }
    assert!(heartbeats >= 2, "{heartbeats} heartbeats during the outage");
    assert_eq!(outage_events, 1, "one upstream-error per outage");
    assert_eq!(
        common::http_get(proxy.admin, "/healthz").map(|(status, _)| status),
        Some(200),
        "the process is still up"
    );
}

/// Changes the document and reads the resulting patch on `client`.
async fn change(api: &JsonApi, client: &mut SseClient, i: u64) -> Frame {
    api.set_json(&document(i));
    let frame = client.next_event().await.expect("patch");
    assert_eq!(frame.event().as_deref(), Some("patch"));
    frame
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_inside_the_ring_replays_exactly_the_missed_patches() {
    let api = JsonApi::start_json(&document(0)).await;
    let proxy = start(route(&api).opt("emit", "json_patch"));
    let mut watcher = SseClient::connect(&proxy.url("/o"), &[]).await;
    watcher.next_event().await.expect("snapshot");
    let mut leaving = SseClient::connect(&proxy.url("/o"), &[]).await;
    let mut doc = parse(&leaving.next_event().await.expect("snapshot"));
    let mut seen = Vec::new();
    for i in 1..=2 {
        let frame = change(&api, &mut leaving, i).await;
        let patch: Vec<json_patch::PatchOperation> =
            serde_json::from_str(&frame.data().expect("data")).expect("patch");
        json_patch::patch(&mut doc, &patch).expect("applies");
        seen.push(frame);
        assert_eq!(
            watcher.next_event().await.expect("patch").id(),
            seen[i as usize - 1].id()
        );
    }
    let last_id = seen.last().and_then(Frame::id).expect("id");
    drop(leaving);

    let mut missed = Vec::new();
    for i in 3..=6 {
        missed.push(change(&api, &mut watcher, i).await);
    }
    let mut back = SseClient::connect(&proxy.url("/o"), &[("Last-Event-ID", &last_id)]).await;
    for expected in &missed {
        let frame = back.next_event().await.expect("replayed patch");
        assert_eq!(frame.id(), expected.id());
        assert_eq!(frame.event().as_deref(), Some("patch"));
        assert_eq!(frame.data(), expected.data());
        let patch: Vec<json_patch::PatchOperation> =
            serde_json::from_str(&frame.data().expect("data")).expect("patch");
        json_patch::patch(&mut doc, &patch).expect("applies");
    }
    assert_eq!(doc, document(6));
    assert!(
        back.next_event_within(Duration::from_millis(400))
            .await
            .is_none(),
        "nothing after the missed patches: no duplicate"
    );
    assert_eq!(
        proxy.metric("sse_edge_replay_hits_total{route=\"/o\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_outside_the_ring_gets_a_reset_with_the_current_document() {
    let api = JsonApi::start_json(&document(0)).await;
    let proxy = start(route(&api).opt("emit", "json_patch").set("replay", 2));
    let mut watcher = SseClient::connect(&proxy.url("/o"), &[]).await;
    let first = watcher.next_event().await.expect("snapshot");
    let first_id = first.id().expect("id");
    let mut latest = first;
    for i in 1..=4 {
        latest = change(&api, &mut watcher, i).await;
    }
    let mut back = SseClient::connect(&proxy.url("/o"), &[("Last-Event-ID", &first_id)]).await;
    let frame = back.next_event().await.expect("reset");
    assert_eq!(frame.event().as_deref(), Some("reset"));
    assert_eq!(frame.id(), latest.id());
    assert_eq!(parse(&frame), document(4));
    assert_eq!(
        proxy.metric("sse_edge_replay_misses_total{route=\"/o\"}"),
        1.0
    );

    // Patches continue from there.
    let mut doc = parse(&frame);
    let frame = change(&api, &mut back, 5).await;
    let patch: Vec<json_patch::PatchOperation> =
        serde_json::from_str(&frame.data().expect("data")).expect("patch");
    json_patch::patch(&mut doc, &patch).expect("applies");
    assert_eq!(doc, document(5));
}

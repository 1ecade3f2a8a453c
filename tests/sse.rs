//! `sse` routes end to end: the real binary between a scripted upstream and a raw client.

mod common;

use common::{Proxy, SseClient, SseUpstream};

fn sse_route(upstream: &SseUpstream, extra: &str) -> String {
    format!(
        "routes:\n  - path: /s\n    sse: {{ upstream: '{}' }}\n{extra}",
        upstream.url("/stream")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_in_order_and_complete_with_sse_headers() {
    let mut upstream = SseUpstream::start().await;
    let proxy = Proxy::start(&sse_route(&upstream, ""));
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

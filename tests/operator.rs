//! What an operator sees, against the real binary: upstream trouble logged once per outage
//! with its cause, the access log, JSON logs, no colour codes off a terminal, every labelled
//! counter from the first scrape, http route metrics, config errors that say what is
//! accepted.

mod common;

use std::time::Duration;

use common::{
    check_config, eventually, free_addr, Config, Proxy, Route, SseClient, SseUpstream, WAIT,
};

const INFO: &[(&str, &str)] = &[("RUST_LOG", "info")];

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_upstream_is_logged_once_per_outage_with_the_os_error() {
    let dead = free_addr();
    let yaml = Config::new()
        .route(Route::sse(
            "/s",
            format!("http://{dead}/stream?token=secret"),
        ))
        .yaml();
    let proxy = Proxy::start_logged(&yaml, INFO);
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert_eq!(client.status, 200);
    client.next_frame().await.expect("retry frame");
    let errors = r#"sse_edge_upstream_errors_total{reason="connect",route="/s"}"#;
    assert!(
        eventually(WAIT, || proxy.metric(errors) >= 3.0).await,
        "retries counted"
    );
    let log = proxy.log();
    let failing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upstream failing"))
        .collect();
    assert_eq!(failing.len(), 1, "one warning for the outage:\n{log}");
    let line = failing[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("route=\"/s\"") || line.contains("route=/s"),
        "{line}"
    );
    assert!(line.contains(&format!("http://{dead}/stream")), "{line}");
    assert!(line.contains("Connection refused"), "the OS error: {line}");
    assert!(
        !log.contains("secret"),
        "no query string in any line:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_stream_end_writes_an_access_line_in_json() {
    let mut upstream = SseUpstream::start().await;
    let yaml = Config::new()
        .set("limits.client_id", "query:key")
        .route(Route::sse("/s", upstream.url("/stream")))
        .yaml();
    let proxy = Proxy::start_logged(
        &yaml,
        &[("RUST_LOG", "info"), ("SSE_EDGE_LOG_FORMAT", "json")],
    );
    let mut client = SseClient::connect(&proxy.url("/s?key=k-secret-1"), &[]).await;
    client.next_frame().await.expect("retry frame");
    let mut conn = upstream.next_conn().await;
    conn.send("id: 1\ndata: one\n\nid: 2\ndata: two\n\n").await;
    client.next_event().await.expect("event 1");
    client.next_event().await.expect("event 2");
    drop(client);
    assert!(
        eventually(WAIT, || proxy.log().contains("sse_edge::access")).await,
        "an access line"
    );
    let log = proxy.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "sse_edge::access")
        .expect("access line");
    let fields = &access["fields"];
    assert_eq!(fields["route"], "/s");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["events"], 2);
    assert_eq!(fields["reason"], "client_closed");
    assert!(fields["bytes"].as_u64().is_some_and(|b| b > 20), "{fields}");
    assert!(fields["duration_ms"].as_u64().is_some(), "{fields}");
    let client_id = fields["client"].as_str().expect("client");
    assert!(
        client_id.starts_with("key#"),
        "a keyed identity is hashed: {client_id}"
    );
    assert!(!log.contains("k-secret-1"), "no credential in any line");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes when stderr is a file"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_carry_no_colour_codes_off_a_terminal() {
    let upstream = SseUpstream::start().await;
    let yaml = Config::new()
        .route(Route::sse("/s", upstream.url("/stream")))
        .yaml();
    let proxy = Proxy::start_logged(&yaml, INFO);
    assert!(eventually(WAIT, || proxy.log().contains("sse-edge running")).await);
    assert!(!proxy.log().contains('\u{1b}'), "{}", proxy.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_labelled_counter_is_exported_from_the_first_scrape() {
    let upstream = SseUpstream::start().await;
    let yaml = Config::new()
        .route(Route::sse("/s", upstream.url("/stream")))
        .route(Route::poll("/p", upstream.url("/doc")))
        .yaml();
    let proxy = Proxy::start(&yaml);
    let text = proxy.metrics();
    let backend = upstream.url("/stream");
    let errors = |reason: &str| {
        format!("sse_edge_upstream_errors_total{{backend=\"{backend}\",reason=\"{reason}\",route=\"/s\"}} 0")
    };
    for sample in [
        r#"sse_edge_stream_ends_total{reason="reload",route="/s"} 0"#,
        r#"sse_edge_stream_ends_total{reason="upstream_ended",route="/s"} 0"#,
        r#"sse_edge_connections_rejected_total{reason="per_client",route="/s"} 0"#,
        r#"sse_edge_connections_rejected_total{reason="unauthenticated",route="/s"} 0"#,
        &errors("connect"),
        &errors("unsafe_field"),
        r#"sse_edge_polls_total{result="not_modified",route="/p"} 0"#,
        r#"sse_edge_config_reloads_total{result="error"} 0"#,
        "sse_edge_config_last_reload_successful 1",
    ] {
        assert!(
            text.lines().any(|l| l == sample),
            "{sample} missing:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_routes_are_counted_timed_and_logged_without_their_query() {
    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api_addr = api.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = api.accept().await {
            let mut buf = [0; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(
                    b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nConnection: close\r\n\r\nmade!",
                )
                .await;
        }
    });
    let yaml = Config::new()
        .route(Route::http("/api/*", format!("http://{api_addr}")))
        .yaml();
    let proxy = Proxy::start_logged(&yaml, INFO);
    let reply = SseClient::connect(&proxy.url("/api/x?token=hush"), &[]).await;
    assert_eq!(reply.status, 201);
    let counted = r#"sse_edge_http_requests_total{route="/api/*",status="201"}"#;
    assert!(eventually(WAIT, || proxy.metric(counted) == 1.0).await);
    assert_eq!(
        proxy.metric(r#"sse_edge_http_request_duration_seconds_count{route="/api/*"}"#),
        1.0
    );
    assert!(eventually(WAIT, || proxy.log().contains("sse_edge::access")).await);
    let log = proxy.log();
    let line = log
        .lines()
        .find(|l| l.contains("sse_edge::access"))
        .expect("line");
    assert!(line.contains("/api/x") && line.contains("201"), "{line}");
    assert!(!log.contains("hush"), "no query in any line:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_answering_204_ends_its_streams_for_good() {
    let upstream = SseUpstream::start_with(204, "text/plain").await;
    let yaml = Config::new()
        .route(Route::sse("/s", upstream.url("/stream")))
        .yaml();
    let proxy = Proxy::start(&yaml);
    let mut client = SseClient::connect(&proxy.url("/s"), &[]).await;
    assert_eq!(client.status, 200);
    client.read_to_end(WAIT).await;
    assert!(client.ended, "the stream closed");
    let ended = r#"sse_edge_stream_ends_total{reason="upstream_ended",route="/s"}"#;
    assert!(eventually(Duration::from_secs(5), || proxy.metric(ended) == 1.0).await);
    assert_eq!(upstream.accepted(), 1, "no reconnect after 204");
}

#[test]
fn config_errors_say_what_is_accepted() {
    let dir = std::env::temp_dir().join(format!("sse-edge-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cases = [
        (
            "listen: 8080\nroutes: [{ path: /a, http: { upstream: 'http://h' } }]\n",
            "expected \"ADDR:PORT\" or { addr, tls, h2c }",
        ),
        (
            "routes:\n  - path: /a\n    sse: { upstream: 'ws://h/feed' }\n",
            "`websocket:` route",
        ),
        (
            "defaults: { heartbeat: 5 }\nroutes: [{ path: /a, http: { upstream: 'http://h' } }]\n",
            "with a unit",
        ),
    ];
    for (index, (yaml, wanted)) in cases.iter().enumerate() {
        let (ok, out) = check_config(&dir, &format!("{index}.yaml"), yaml);
        assert!(!ok, "{yaml} is refused");
        assert!(out.contains(wanted), "{wanted:?} in:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

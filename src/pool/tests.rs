//! Pools against real listeners: selection in turn and by key, refusals, health checks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::metrics::Metrics;

fn metrics() -> (Metrics, RouteMetrics) {
    let registry = Metrics::register().expect("metrics");
    let route = registry.route("/r");
    (registry, route)
}

fn pool(urls: &[&str], selection: Selection, check: Option<&HealthCheck>) -> (Pool, Metrics) {
    let (registry, route) = metrics();
    let spec = PoolSpec {
        urls: urls.iter().map(|url| url.to_string()).collect(),
        health_check: check,
        selection,
        ca_file: None,
    };
    (Pool::new(spec, &route, &CheckRunner::default()), registry)
}

#[test]
fn round_robin_takes_turns_and_skips_a_refused_backend() {
    let (pool, _metrics) = pool(&["http://a:1", "http://b:1"], Selection::RoundRobin, None);
    let picks: Vec<usize> = (0..4).filter_map(|_| pool.round_robin(None)).collect();
    assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
    assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 2, "{picks:?}");
    pool.refused(0);
    assert!((0..4).all(|_| pool.round_robin(None) == Some(1)));
    assert_eq!(
        pool.round_robin(Some(1)),
        Some(0),
        "refused, yet the only other one"
    );
    pool.answered(0);
    assert!((0..4).any(|_| pool.round_robin(None) == Some(0)));
}

#[test]
fn a_single_backend_is_kept_when_refused_but_never_retried_on_itself() {
    let (pool, _metrics) = pool(&["http://a:1"], Selection::RoundRobin, None);
    pool.refused(0);
    assert_eq!(pool.round_robin(None), Some(0));
    assert_eq!(pool.round_robin(Some(0)), None);
    assert_eq!(
        pool.for_key("k", Some(0)),
        Ok(0),
        "a stream retries its only backend"
    );
}

#[test]
fn the_same_key_picks_the_same_backend_in_every_pool_and_keys_spread() {
    let urls = [
        "http://a:1/s/{id}",
        "http://b:1/s/{id}",
        "http://c:1/s/{id}",
    ];
    let (first, _m1) = pool(&urls, Selection::Hashed, None);
    let (second, _m2) = pool(&urls, Selection::Hashed, None);
    let keys: Vec<String> = (0..60).map(|i| format!("http://a:1/s/{i}")).collect();
    let picks: Vec<usize> = keys
        .iter()
        .map(|k| first.for_key(k, None).expect("up"))
        .collect();
    let again: Vec<usize> = keys
        .iter()
        .map(|k| second.for_key(k, None).expect("up"))
        .collect();
    assert_eq!(picks, again);
    for index in 0..3 {
        assert!(
            picks.contains(&index),
            "backend {index} gets keys: {picks:?}"
        );
    }
}

#[test]
fn a_failed_stream_moves_to_the_next_backend_and_a_refusal_is_skipped() {
    let (pool, _metrics) = pool(&["http://a:1/s", "http://b:1/s"], Selection::Hashed, None);
    let own = pool.for_key("k", None).expect("up");
    let other = 1 - own;
    assert_eq!(pool.for_key("k", Some(own)), Ok(other));
    pool.refused(other);
    assert_eq!(pool.for_key("k", None), Ok(own));
    assert_eq!(
        pool.for_key("k", Some(own)),
        Ok(own),
        "the refused one comes last"
    );
}

/// A backend whose `GET /healthz` answers with the status in `status` (0: close at once).
async fn health_endpoint(status: watch::Receiver<u16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let code = *status.borrow();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/s")
}

#[tokio::test]
async fn a_failing_health_check_skips_a_backend_until_it_passes() {
    let (set_a, status_a) = watch::channel(200);
    let (_set_b, status_b) = watch::channel(200);
    let urls = [
        health_endpoint(status_a).await,
        health_endpoint(status_b).await,
    ];
    let check = HealthCheck {
        path: Some("/healthz".into()),
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(1),
    };
    let (registry, route) = metrics();
    let runner = Arc::new(CheckRunner::default());
    let spec = PoolSpec {
        urls: urls.to_vec(),
        health_check: Some(&check),
        selection: Selection::RoundRobin,
        ca_file: None,
    };
    let pool = Pool::new(spec, &route, &runner);
    let (_shutdown, watch) = watch::channel(false);
    let service = runner.clone();
    tokio::spawn(async move {
        pingora::services::background::BackgroundService::start(&*service, watch).await
    });
    set_a.send_replace(503);
    gauge_becomes(&registry, &urls[0], 0).await;
    assert!((0..4).all(|_| pool.round_robin(None) == Some(1)));
    assert_eq!(
        pool.round_robin(Some(1)),
        None,
        "a fails its check: not even as a retry"
    );
    set_a.send_replace(200);
    gauge_becomes(&registry, &urls[0], 1).await;
    assert!((0..4).any(|_| pool.round_robin(None) == Some(0)));
    drop(pool);
}

/// Waits (up to 5 s) for the `upstream_backend_healthy` gauge of `url` to read `value`.
async fn gauge_becomes(registry: &Metrics, url: &str, value: i64) {
    let sample = format!("sse_edge_upstream_backend_healthy{{backend=\"{url}\",route=\"/r\"}} ");
    let read = || {
        registry
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(&sample)?.parse::<i64>().ok())
    };
    let wait = async {
        while read() != Some(value) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let waited = tokio::time::timeout(Duration::from_secs(5), wait).await;
    assert!(waited.is_ok(), "{url} healthy gauge never read {value}");
}

//! `http` routes: pingora's normal proxy path in front of a legacy API.

mod common;

use common::{http_get, Proxy};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A one-shot JSON API that reports each request head it receives.
async fn legacy_api() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line.trim().is_empty()
                    {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                let _ = tx.send(head);
                let body = r#"{"ok":true}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nKeep-Alive: timeout=5\r\nX-Legacy: yes\r\n\r\n{body}",
                    body.len()
                );
                let _ = reader.get_mut().write_all(response.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_routes_proxy_the_legacy_api() {
    let (api, mut requests) = legacy_api().await;
    let proxy = Proxy::start(&format!(
        "routes:\n  - path: /api/*\n    http: {{ upstream: 'http://{api}/v1' }}\n"
    ));
    let addr = proxy.addr;
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/api/orders?x=1"))
        .await
        .expect("join")
        .expect("response");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"ok":true}"#);
    let head = tokio::time::timeout(common::WAIT, requests.recv())
        .await
        .expect("request in time")
        .expect("request");
    assert_eq!(
        head[0], "GET /v1/api/orders?x=1 HTTP/1.1",
        "base path prefixed: {head:?}"
    );
    let host = head
        .iter()
        .find(|l| l.to_ascii_lowercase().starts_with("host:"));
    assert_eq!(
        host.map(|h| h[5..].trim()),
        Some(api.to_string().as_str()),
        "{head:?}"
    );
}

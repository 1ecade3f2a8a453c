//! `http` routes: pingora's normal proxy path in front of a legacy API.

mod common;

use common::{http_get, Config, Proxy, Route};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::http("/api/*", format!("http://{api}/v1")))
            .yaml(),
    );
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

/// A legacy API that answers each POST with its body's length and byte sum, followed by
/// `reply_bytes` of a repeating pattern.
async fn echo_api(reply_bytes: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line.trim().is_empty()
                    {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().expect("content-length");
                        }
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).await.expect("request body");
                let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
                let mut reply = format!("{length}:{sum}\n").into_bytes();
                reply.extend((0..reply_bytes).map(|i| b'a' + (i % 26) as u8));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    reply.len()
                );
                let stream = reader.get_mut();
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&reply).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn large_request_and_response_bodies_pass_intact() {
    let api = echo_api(1 << 20).await;
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::http("/api/*", format!("http://{api}")))
            .yaml(),
    );
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let mut client = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.expect("head");
    for piece in body.chunks(7_000) {
        client.write_all(piece).await.expect("body");
    }
    let mut raw = Vec::new();
    tokio::time::timeout(common::WAIT, client.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{:?}", &raw[..split]);
    let reply = &raw[split + 4..];
    let expected_start = format!("{}:{sum}\n", body.len());
    assert!(
        reply.starts_with(expected_start.as_bytes()),
        "the upstream got the whole body"
    );
    let pattern = &reply[expected_start.len()..];
    assert_eq!(pattern.len(), 1 << 20, "the whole response body arrived");
    assert!(pattern
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'a' + (i % 26) as u8));
}

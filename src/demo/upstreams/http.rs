//! The demo backend's HTTP side: the page, the resumable SSE ticker and the orders API.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use super::{demo_token, order_document, order_etag, Backend, Tick, DEMO_USER, PAGE};

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    let deadline = Duration::from_secs(10);
    tokio::time::timeout(deadline, reader.read_line(&mut line))
        .await
        .ok()?
        .ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let read = tokio::time::timeout(deadline, reader.read_line(&mut line))
            .await
            .ok()?
            .ok()?;
        let line = line.trim_end();
        if read == 0 || line.is_empty() {
            break;
        }
        if headers.len() > 100 {
            return None;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

pub(super) async fn serve_http(
    stream: TcpStream,
    backend: Arc<Backend>,
    ticks: broadcast::Receiver<Tick>,
) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader).await else {
        return;
    };
    let mut stream = reader.into_inner();
    let path = request.path.split('?').next().unwrap_or("/").to_string();
    if request.method != "GET" && request.method != "HEAD" {
        let _ = respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            &[],
            "GET only\n",
        )
        .await;
        return;
    }
    if path == "/" || path == "/index.html" {
        let _ = respond(&mut stream, "200 OK", "text/html; charset=utf-8", &[], PAGE).await;
    } else if path == "/healthz" {
        let _ = respond(&mut stream, "200 OK", "text/plain", &[], "ok\n").await;
    } else if path == "/prices/stream" {
        stream_ticks(stream, &backend, ticks, &request, Tick::to_sse).await;
    } else if path == "/login" {
        login(&mut stream, &backend).await;
    } else if let Some(user) = path
        .strip_prefix("/users/")
        .and_then(|rest| rest.strip_suffix("/stream"))
    {
        let render = |tick: &Tick| tick.to_user_sse(user);
        stream_ticks(stream, &backend, ticks, &request, render).await;
    } else if let Some(id) = path.strip_prefix("/api/orders/") {
        serve_order(&mut stream, &backend, id, &request).await;
    } else {
        let _ = respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            &[],
            "not found\n",
        )
        .await;
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    extra: &[(&str, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

async fn serve_order(stream: &mut TcpStream, backend: &Backend, id: &str, request: &Request) {
    let valid = !id.is_empty() && id.len() <= 12 && id.chars().all(|c| c.is_ascii_alphanumeric());
    if !valid {
        let _ = respond(
            stream,
            "404 Not Found",
            "text/plain",
            &[],
            "no such order\n",
        )
        .await;
        return;
    }
    let version = backend.version.load(Ordering::SeqCst);
    let etag = order_etag(id, version);
    let headers = [
        ("ETag", etag.clone()),
        ("Cache-Control", "no-cache".to_string()),
    ];
    if request.header("if-none-match") == Some(etag.as_str()) {
        let _ = respond(stream, "304 Not Modified", "application/json", &headers, "").await;
        return;
    }
    let body = order_document(id, version).to_string();
    let _ = respond(stream, "200 OK", "application/json", &headers, &body).await;
}

/// `GET /login`: the demo's sign-in hands the browser a token cookie for [`DEMO_USER`]
/// (`HttpOnly`: the page never sees it; EventSource sends it).
async fn login(stream: &mut TcpStream, backend: &Backend) {
    let Some(token) = demo_token(&backend.token_secret) else {
        let _ = respond(
            stream,
            "500 Internal Server Error",
            "text/plain",
            &[],
            "no token\n",
        )
        .await;
        return;
    };
    let cookie = format!("access_token={token}; Path=/; HttpOnly; SameSite=Strict");
    let body = serde_json::json!({ "user": DEMO_USER }).to_string();
    let headers = [
        ("Set-Cookie", cookie),
        ("Cache-Control", "no-store".to_string()),
    ];
    let _ = respond(stream, "200 OK", "application/json", &headers, &body).await;
}

/// `GET /prices/stream` and `GET /users/{user}/stream`: resumes after `Last-Event-ID` from
/// the ticker's own history, then streams live ticks (chunked), each as `render` writes it,
/// until the client leaves.
async fn stream_ticks(
    mut stream: TcpStream,
    backend: &Backend,
    mut ticks: broadcast::Receiver<Tick>,
    request: &Request,
    render: impl Fn(&Tick) -> String,
) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let last = request
        .header("last-event-id")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut sent = last.unwrap_or(0);
    for tick in backend.ticks_after(last) {
        sent = tick.id;
        if write_chunk(&mut stream, &render(&tick)).await.is_err() {
            return;
        }
    }
    loop {
        match ticks.recv().await {
            Ok(tick) if tick.id > sent => {
                sent = tick.id;
                if write_chunk(&mut stream, &render(&tick)).await.is_err() {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn write_chunk(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
    let chunk = format!("{:x}\r\n{text}\r\n", text.len());
    stream.write_all(chunk.as_bytes()).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::super::start;

    /// A raw `GET` with extra headers; returns the whole response once the server closes
    /// (or after `read_for` on a stream).
    async fn get(addr: SocketAddr, path: &str, headers: &str, read_for: Duration) -> String {
        use tokio::io::AsyncReadExt;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: demo\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(read_for, stream.read_to_end(&mut raw)).await;
        String::from_utf8_lossy(&raw).to_string()
    }

    #[tokio::test]
    async fn orders_api_answers_304_to_a_current_etag() {
        let addrs = start().await.expect("start");
        let wait = Duration::from_secs(5);
        let first = get(addrs.http, "/api/orders/7", "", wait).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        let etag = first
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .expect("etag")
            .to_string();
        let body = first.split("\r\n\r\n").nth(1).expect("body");
        let doc: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(doc["id"], "7");
        let again = get(
            addrs.http,
            "/api/orders/7",
            &format!("If-None-Match: {etag}\r\n"),
            wait,
        )
        .await;
        // The version may just have ticked: then it is a fresh 200 with a new ETag.
        assert!(
            again.starts_with("HTTP/1.1 304") || !again.contains(&etag),
            "{again}"
        );
        let missing = get(addrs.http, "/nope", "", wait).await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }

    #[tokio::test]
    async fn ticker_resumes_after_last_event_id() {
        let addrs = start().await.expect("start");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let text = get(
            addrs.http,
            "/prices/stream",
            "Last-Event-ID: 1\r\n",
            Duration::from_millis(300),
        )
        .await;
        assert!(text.contains("Content-Type: text/event-stream"), "{text}");
        assert!(text.contains("id: 2\nevent: price\n"), "{text}");
        assert!(!text.contains("id: 1\n"), "{text}");
    }
}

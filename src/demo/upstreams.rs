//! The demo's legacy backend: an SSE price ticker, a JSON orders API that changes every
//! second (with `ETag` / `304`), a WebSocket trade feed, and the page — all on 127.0.0.1.
//!
//! ```text
//!   tick task (1/s) ──► Ticker ring + broadcast ──► GET /prices/stream   (SSE, resumable)
//!                  └──► version counter         ──► GET /api/orders/{id} (JSON, ETag)
//!   trade task (1/s) ─► broadcast ──────────────► ws://…/ws after {"op":"subscribe"}
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

/// The page served at `/`.
pub const PAGE: &str = include_str!("page.html");

/// Ticks kept for `Last-Event-ID` resume by the ticker itself.
const HISTORY: usize = 600;

/// Where the running demo upstreams listen.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAddrs {
    /// The HTTP server: `/`, `/prices/stream`, `/api/orders/{id}`.
    pub http: SocketAddr,
    /// The WebSocket server: `/ws`.
    pub ws: SocketAddr,
}

/// One price tick: its SSE id and JSON payload.
#[derive(Debug, Clone)]
struct Tick {
    id: u64,
    data: String,
}

impl Tick {
    /// The tick as one SSE event.
    fn to_sse(&self) -> String {
        format!("id: {}\nevent: price\ndata: {}\n\n", self.id, self.data)
    }
}

/// Shared state of the demo backend.
#[derive(Default)]
struct Backend {
    ticks: Mutex<VecDeque<Tick>>,
    /// Seconds since start: the orders document version.
    version: AtomicU64,
}

impl Backend {
    fn ticks_after(&self, last: Option<u64>) -> Vec<Tick> {
        let ticks = self.ticks.lock().unwrap_or_else(PoisonError::into_inner);
        match last {
            Some(last) => ticks.iter().filter(|t| t.id > last).cloned().collect(),
            None => Vec::new(),
        }
    }
}

/// Binds both servers on 127.0.0.1 ephemeral ports and spawns them with their generators on
/// the current tokio runtime.
pub async fn start() -> std::io::Result<UpstreamAddrs> {
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let ws = TcpListener::bind("127.0.0.1:0").await?;
    let addrs = UpstreamAddrs {
        http: http.local_addr()?,
        ws: ws.local_addr()?,
    };
    let backend = Arc::new(Backend::default());
    let (tick_tx, _) = broadcast::channel::<Tick>(64);
    let (trade_tx, _) = broadcast::channel::<(u64, String)>(64);
    tokio::spawn(generate(backend.clone(), tick_tx.clone(), trade_tx.clone()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = http.accept().await {
            tokio::spawn(serve_http(stream, backend.clone(), tick_tx.subscribe()));
        }
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws.accept().await {
            tokio::spawn(serve_ws(stream, trade_tx.subscribe()));
        }
    });
    Ok(addrs)
}

/// Once a second: a new price tick, a new orders version, a new trade.
async fn generate(
    backend: Arc<Backend>,
    ticks: broadcast::Sender<Tick>,
    trades: broadcast::Sender<(u64, String)>,
) {
    let mut price = 100.0_f64;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut id = 0_u64;
    loop {
        interval.tick().await;
        id += 1;
        price = (price + (fastrand::f64() - 0.5) * 2.0).max(1.0);
        let tick = Tick {
            id,
            data: price_json(id, price),
        };
        {
            let mut ring = backend.ticks.lock().unwrap_or_else(PoisonError::into_inner);
            if ring.len() == HISTORY {
                ring.pop_front();
            }
            ring.push_back(tick.clone());
        }
        let _ = ticks.send(tick);
        backend.version.store(id, Ordering::SeqCst);
        let seq = next_seq();
        let _ = trades.send((seq, trade_json(seq, price)));
    }
}

/// The feed's `seq`: one counter for every socket, so ids only grow across reconnects.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::SeqCst) + 1
}

fn price_json(id: u64, price: f64) -> String {
    serde_json::json!({ "symbol": "ACME", "price": (price * 100.0).round() / 100.0, "tick": id })
        .to_string()
}

fn trade_json(seq: u64, price: f64) -> String {
    let side = if fastrand::bool() { "buy" } else { "sell" };
    serde_json::json!({
        "type": "trade", "seq": seq, "symbol": "ACME",
        "side": side, "qty": fastrand::u32(1..50), "price": (price * 100.0).round() / 100.0,
    })
    .to_string()
}

/// The orders document at `version`: status and items change as time passes.
pub fn order_document(id: &str, version: u64) -> serde_json::Value {
    const STATUSES: [&str; 5] = ["pending", "paid", "packed", "shipped", "delivered"];
    let status = STATUSES[((version / 3) % 5) as usize];
    let count = 1 + (version / 2) % 3;
    let items: Vec<serde_json::Value> = (0..count)
        .map(|i| serde_json::json!({ "sku": format!("SKU-{}", i + 1), "qty": 1 + (version + i) % 4 }))
        .collect();
    serde_json::json!({
        "id": id,
        "version": version,
        "status": status,
        "items": items,
        "history": STATUSES.iter().take(((version / 3) % 5) as usize + 1).collect::<Vec<_>>(),
    })
}

/// The `ETag` of an orders document version.
pub fn order_etag(id: &str, version: u64) -> String {
    format!("\"order-{id}-v{version}\"")
}

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

async fn serve_http(stream: TcpStream, backend: Arc<Backend>, ticks: broadcast::Receiver<Tick>) {
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
    } else if path == "/prices/stream" {
        stream_prices(stream, &backend, ticks, &request).await;
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

/// `GET /prices/stream`: resumes after `Last-Event-ID` from the ticker's own history, then
/// streams live ticks (chunked) until the client leaves.
async fn stream_prices(
    mut stream: TcpStream,
    backend: &Backend,
    mut ticks: broadcast::Receiver<Tick>,
    request: &Request,
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
        if write_chunk(&mut stream, &tick.to_sse()).await.is_err() {
            return;
        }
    }
    loop {
        match ticks.recv().await {
            Ok(tick) if tick.id > sent => {
                sent = tick.id;
                if write_chunk(&mut stream, &tick.to_sse()).await.is_err() {
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

/// `ws://…/ws`: waits for `{"op":"subscribe","channel":…}`, acknowledges it, then forwards
/// every trade. Pings are answered by tungstenite while reading.
async fn serve_ws(stream: TcpStream, mut trades: broadcast::Receiver<(u64, String)>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut subscribed_after: Option<u64> = None;
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(channel) = subscribe_channel(text.as_str()) {
                        let seq = next_seq();
                        subscribed_after = Some(seq);
                        let ack = serde_json::json!({ "type": "subscribed", "seq": seq, "channel": channel });
                        if ws.send(Message::text(ack.to_string())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            trade = trades.recv() => match trade {
                Ok((seq, text)) => {
                    if subscribed_after.is_some_and(|after| seq > after)
                        && ws.send(Message::text(text)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The channel of a `{"op":"subscribe","channel":…}` message.
fn subscribe_channel(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("op")?.as_str()? != "subscribe" {
        return None;
    }
    Some(
        value
            .get("channel")
            .and_then(|c| c.as_str())
            .unwrap_or("trades")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_change_with_version_and_etag_follows() {
        let a = order_document("1", 4);
        let b = order_document("1", 9);
        assert_ne!(a, b);
        assert!(a["items"].is_array() && a["status"].is_string());
        assert_ne!(order_etag("1", 4), order_etag("1", 5));
    }

    #[test]
    fn subscribe_messages_are_recognised() {
        assert_eq!(
            subscribe_channel(r#"{"op":"subscribe","channel":"trades"}"#).as_deref(),
            Some("trades")
        );
        assert_eq!(subscribe_channel(r#"{"op":"ping"}"#), None);
        assert_eq!(subscribe_channel("not json"), None);
    }

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

    #[tokio::test]
    async fn websocket_feed_acknowledges_subscribe_then_sends_trades() {
        let addrs = start().await.expect("start");
        let url = format!("ws://{}/ws", addrs.ws);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect");
        ws.send(Message::text(r#"{"op":"subscribe","channel":"trades"}"#))
            .await
            .expect("send");
        let mut types = Vec::new();
        let mut seqs = Vec::new();
        while types.len() < 2 {
            let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a message within 5s")
                .expect("open")
                .expect("frame");
            if let Message::Text(text) = message {
                let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                types.push(value["type"].as_str().unwrap_or_default().to_string());
                seqs.push(value["seq"].as_u64().expect("seq"));
            }
        }
        assert_eq!(types, ["subscribed", "trade"]);
        assert!(seqs[1] > seqs[0], "{seqs:?}");
    }

    #[test]
    fn ticks_encode_as_one_sse_event_with_id() {
        let tick = Tick {
            id: 7,
            data: price_json(7, 101.234),
        };
        let text = tick.to_sse();
        assert!(text.starts_with("id: 7\nevent: price\ndata: {"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches("\n\n").count(), 1);
    }
}

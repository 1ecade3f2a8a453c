//! Benchmark upstream: a plain SSE server that emits timestamped events on one shared clock.
//!
//! One ticker builds each event once (`id: N`, `data: T=<unix µs> <padding>`) and broadcasts
//! the same bytes to every open connection, so direct, shared and unshared runs see the very
//! same event train and the load generator can measure delivery latency from `T=`. Responses
//! are HTTP/1.1 chunked, one chunk per event; `--rate 0` holds connections idle.
//!
//! Publishing modes for brokers that do not pull from an SSE upstream:
//! * `--grip`: answer every request with `Grip-Hold: stream` + `Grip-Channel: bench` +
//!   `Grip-Keep-Alive` (5 s) for Pushpin, which holds the client and subscribes it to the
//!   channel; with `--publish URL` (Pushpin's `http://127.0.0.1:5561/publish/`) each event is
//!   published once as an `http-stream` item, and Pushpin writes it to every subscriber;
//! * `--publish URL --publish-format nchan`: POST each event's data to an nchan publisher
//!   location (the broker writes its own `id:`/`data:` framing).
//!
//! Other sources (`--mode`), for the proxy's non-SSE route kinds:
//! * `--mode poll`: `GET /r/{id}` answers a small JSON document (`Content-Length`, keep-alive)
//!   whose content changes `--rate` times per second on the shared clock and embeds the change
//!   time as `"t":"T=<unix µs>"`, so the load generator measures change → delivery latency
//!   (`--poll-stamp response`: every response is a new document stamped with its send time,
//!   which measures the proxy's own poll-response → client latency);
//! * `--mode websocket`: every WebSocket connection gets the same timestamped text message
//!   (`{"seq":N,"t":"T=<unix µs>","pad":"…"}`) `--rate` times per second.
//!
//! `--stats ADDR` serves `GET /stats` there as JSON (`poll_requests`, `ws_connections`,
//! `ws_open`, `sse_open`), so a benchmark can count upstream requests and sockets.
//!
//! Run: `cargo bench --bench bench_upstream -- --listen 127.0.0.1:8001 --rate 10 --size 100`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

#[derive(Debug, Clone)]
struct Args {
    listen: Vec<SocketAddr>,
    rate: f64,
    size: usize,
    grip: bool,
    publish: Option<String>,
    publish_format: String,
    threads: usize,
    mode: String,
    stats: Option<SocketAddr>,
    poll_stamp: String,
}

const USAGE: &str = "bench_upstream: timestamped SSE event source for the sse-edge benchmarks

USAGE: cargo bench --bench bench_upstream -- [OPTIONS]

  --listen ADDR          listen address (repeatable)          [127.0.0.1:8001]
  --rate N               events per second on the shared clock; 0 = idle   [10]
  --size BYTES           approximate wire size of each event  [100]
  --grip                 answer with Grip-Hold: stream (Pushpin backend)
  --publish URL          also POST every event to a broker publish endpoint
  --publish-format F     pushpin | nchan                      [pushpin]
  --threads N            tokio worker threads                 [1]
  --mode M               sse | poll | websocket               [sse]
  --stats ADDR           serve GET /stats (request/socket counters) as JSON
  --poll-stamp S         poll mode: `change` = T is the time the document last changed
                         (on the --rate clock); `response` = every response is a new
                         document stamped with the time it is sent       [change]
  --hello                sse mode: write an SSE comment (`: hello`) right after the response
                         head, so a proxy that holds headers until the first body byte
                         (nginx 1.22 over HTTP/2 + TLS) still opens idle streams
";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: Vec::new(),
        rate: 10.0,
        size: 100,
        grip: false,
        publish: None,
        publish_format: "pushpin".into(),
        threads: 1,
        mode: "sse".into(),
        stats: None,
        poll_stamp: "change".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args
                .listen
                .push(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--rate" => args.rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--size" => args.size = value()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--grip" => args.grip = true,
            "--publish" => args.publish = Some(value()?),
            "--publish-format" => args.publish_format = value()?,
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--mode" => args.mode = value()?,
            "--poll-stamp" => args.poll_stamp = value()?,
            "--hello" => HELLO.store(true, Ordering::Relaxed),
            "--stats" => args.stats = Some(value()?.parse().map_err(|e| format!("--stats: {e}"))?),
            "--bench" => {} // cargo bench passes this to harness=false targets
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.listen.is_empty() {
        args.listen.push(SocketAddr::from(([127, 0, 0, 1], 8001)));
    }
    if !matches!(args.mode.as_str(), "sse" | "poll" | "websocket") {
        return Err(format!(
            "--mode: {} is not sse, poll or websocket",
            args.mode
        ));
    }
    if !matches!(args.poll_stamp.as_str(), "change" | "response") {
        return Err(format!(
            "--poll-stamp: {} is not change or response",
            args.poll_stamp
        ));
    }
    Ok(args)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The data line's payload: `T=<µs> ` followed by padding up to roughly `size` wire bytes.
fn payload(seq: u64, size: usize) -> String {
    let mut data = format!("T={} ", now_micros());
    let overhead = format!("id: {seq}\ndata: \n\n").len() + data.len();
    data.extend(std::iter::repeat_n('x', size.saturating_sub(overhead)));
    data
}

/// One event as an HTTP/1.1 chunk.
fn chunk(seq: u64, data: &str) -> Bytes {
    let body = format!("id: {seq}\ndata: {data}\n\n");
    Bytes::from(format!("{:x}\r\n{body}\r\n", body.len()))
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
/// `--hello`: open every SSE response with one comment chunk.
static HELLO: AtomicBool = AtomicBool::new(false);
/// `GET /r/{id}` requests answered (poll mode).
static POLL_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// WebSocket handshakes completed, and sockets open now (websocket mode).
static WS_CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static WS_OPEN: AtomicU64 = AtomicU64::new(0);

fn stats_json() -> String {
    serde_json::json!({
        "poll_requests": POLL_REQUESTS.load(Ordering::Relaxed),
        "ws_connections": WS_CONNECTIONS.load(Ordering::Relaxed),
        "ws_open": WS_OPEN.load(Ordering::Relaxed),
        "sse_open": CONNECTIONS.load(Ordering::Relaxed),
    })
    .to_string()
}

/// Reads one request head from `sock` into `buf` (which may already hold pipelined bytes);
/// returns the request path, leaving any bytes after the head in `buf`.
async fn read_head(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut tmp = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return head.split_whitespace().nth(1).map(str::to_string);
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Keep-alive HTTP/1.1 server for `/r/{id}` (poll mode) and `/stats`.
async fn serve_http(
    mut sock: TcpStream,
    doc: tokio::sync::watch::Receiver<(u64, u64)>,
    size: usize,
    stamp_response: bool,
) {
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    while let Some(path) = read_head(&mut sock, &mut buf).await {
        let (status, body) = if path == "/stats" {
            ("200 OK", stats_json())
        } else if let Some(id) = path.strip_prefix("/r/") {
            let n = POLL_REQUESTS.fetch_add(1, Ordering::Relaxed);
            let (seq, t) = if stamp_response {
                (n, now_micros())
            } else {
                *doc.borrow()
            };
            let mut body =
                format!("{{\"id\":\"{id}\",\"seq\":{seq},\"t\":\"T={t}\",\"pad\":\"\"}}");
            let pad = size.saturating_sub(body.len());
            body.insert_str(body.len() - 2, &"x".repeat(pad));
            ("200 OK", body)
        } else {
            ("404 Not Found", String::new())
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nCache-Control: no-cache\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// One WebSocket connection: every broadcast message is sent to it (websocket mode).
async fn serve_ws(sock: TcpStream, mut rx: broadcast::Receiver<String>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let _ = sock.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(sock).await else {
        return;
    };
    WS_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    WS_OPEN.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut incoming) = ws.split();
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(text) => {
                    if tx.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            read = incoming.next() => match read {
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            },
        }
    }
    WS_OPEN.fetch_sub(1, Ordering::Relaxed);
}

/// Poll and websocket modes: a shared clock changes the document / sends a message.
async fn run_source(args: Args) -> Result<(), String> {
    let (doc_tx, doc_rx) = tokio::sync::watch::channel((0u64, now_micros()));
    let (ws_tx, _) = broadcast::channel::<String>(64);
    for addr in &args.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        let (doc_rx, ws_tx, mode, size) =
            (doc_rx.clone(), ws_tx.clone(), args.mode.clone(), args.size);
        let stamp = args.poll_stamp == "response";
        tokio::spawn(async move {
            loop {
                if let Ok((sock, _)) = listener.accept().await {
                    if mode == "websocket" {
                        tokio::spawn(serve_ws(sock, ws_tx.subscribe()));
                    } else {
                        tokio::spawn(serve_http(sock, doc_rx.clone(), size, stamp));
                    }
                }
            }
        });
    }
    eprintln!(
        "bench_upstream: {} source on {:?}, {} changes/s",
        args.mode, args.listen, args.rate
    );
    let mut tick = ticker(args.rate).await;
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        seq += 1;
        let t = now_micros();
        if args.mode == "websocket" {
            let mut text = format!("{{\"seq\":{seq},\"t\":\"T={t}\",\"pad\":\"\"}}");
            let pad = args.size.saturating_sub(text.len());
            text.insert_str(text.len() - 2, &"x".repeat(pad));
            if ws_tx.receiver_count() > 0 {
                let _ = ws_tx.send(text);
            }
        } else {
            let _ = doc_tx.send((seq, t));
        }
    }
}

/// `--stats ADDR`: counters as JSON on `GET /stats`.
async fn serve_stats(addr: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let (_tx, doc) = tokio::sync::watch::channel((0u64, 0u64));
    tokio::spawn(async move {
        loop {
            if let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_http(sock, doc.clone(), 0, false));
            }
        }
    });
    Ok(())
}

async fn serve(mut sock: TcpStream, grip: bool, mut rx: broadcast::Receiver<Bytes>) {
    let _ = sock.set_nodelay(true);
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        if req.len() > 64 * 1024 {
            return;
        }
    }
    let head: &[u8] = if grip {
        // Grip-Keep-Alive: Pushpin writes `:\n\n` after 5 s without a write, like sse-edge's
        // `heartbeat: 5s` in benches/sse-edge.bench.yaml.
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nGrip-Hold: stream\r\nGrip-Channel: bench\r\nGrip-Keep-Alive: :\\n\\n; format=cstring; timeout=5\r\nContent-Length: 0\r\n\r\n"
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
    };
    if sock.write_all(head).await.is_err() || grip {
        return;
    }
    CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    if HELLO.load(Ordering::Relaxed) {
        // A failed write shows up as a failed read below.
        let _ = sock.write_all(b"9\r\n: hello\n\n\r\n").await;
    }
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(bytes) => {
                    if sock.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            read = sock.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
}

/// A keep-alive HTTP/1.1 POST client for broker publish endpoints.
struct Publisher {
    addr: String,
    path: String,
    host: String,
    sock: Option<TcpStream>,
}

impl Publisher {
    fn new(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("--publish must be an http:// URL")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Ok(Publisher {
            addr: host.to_string(),
            host: host.to_string(),
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            sock: None,
        })
    }

    async fn post(&mut self, content_type: &str, body: &str) -> std::io::Result<()> {
        if self.sock.is_none() {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            self.sock = Some(s);
        }
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            self.path,
            self.host,
            body.len()
        );
        let result = async {
            sock.write_all(req.as_bytes()).await?;
            // Read one response; brokers answer with a small, Content-Length-delimited body.
            let mut resp = Vec::new();
            let mut buf = [0u8; 2048];
            loop {
                let n = sock.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                resp.extend_from_slice(&buf[..n]);
                if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if resp.len() >= end + 4 + len {
                        // Pushpin's publish endpoint answers `Connection: close`.
                        return Ok(head.contains("connection: close"));
                    }
                }
            }
        }
        .await;
        match result {
            Ok(false) => Ok(()),
            Ok(true) => {
                self.sock = None;
                Ok(())
            }
            Err(e) => {
                self.sock = None;
                Err(e)
            }
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(addr) = args.stats {
        serve_stats(addr).await?;
    }
    if args.mode != "sse" {
        return run_source(args).await;
    }
    let (tx, _) = broadcast::channel::<Bytes>(64);
    for addr in &args.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        let (tx, grip) = (tx.clone(), args.grip);
        tokio::spawn(async move {
            loop {
                if let Ok((sock, _)) = listener.accept().await {
                    tokio::spawn(serve(sock, grip, tx.subscribe()));
                }
            }
        });
    }
    eprintln!(
        "bench_upstream: listening on {:?}, {} events/s of ~{} bytes{}",
        args.listen,
        args.rate,
        args.size,
        if args.grip { " (GRIP)" } else { "" }
    );
    let mut publisher = args.publish.as_deref().map(Publisher::new).transpose()?;
    let mut tick = ticker(args.rate).await;
    let mut seq = 0u64;
    loop {
        tick.tick().await;
        seq += 1;
        let data = payload(seq, args.size);
        if tx.receiver_count() > 0 {
            let _ = tx.send(chunk(seq, &data));
        }
        if let Some(p) = publisher.as_mut() {
            let sent = if args.publish_format == "nchan" {
                p.post("text/plain", &data).await
            } else {
                let sse = format!("id: {seq}\ndata: {data}\n\n");
                let item = serde_json::json!({ "items": [{ "channel": "bench", "id": seq.to_string(),
                    "formats": { "http-stream": { "content": sse } } }] });
                p.post("application/json", &item.to_string()).await
            };
            if let Err(e) = sent {
                eprintln!("bench_upstream: publish failed: {e}");
            }
        }
    }
}

/// A clock ticking `rate` times a second, skipping missed ticks; with `rate` ≤ 0 (idle)
/// it never returns.
async fn ticker(rate: f64) -> tokio::time::Interval {
    if rate <= 0.0 {
        std::future::pending::<()>().await;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            if msg.is_empty() {
                print!("{USAGE}");
                return;
            }
            eprintln!("{msg}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => Err(format!("runtime: {e}")),
    };
    if let Err(e) = result {
        eprintln!("bench_upstream: {e}");
        std::process::exit(1);
    }
}

//! Live reload under load (issue #12): how long from SIGHUP until the new route table
//! serves, with 100 routes and N open streams, and how many events those streams lose or
//! see twice across a run of reloads (the contract: none).
//!
//! One process plays everything but the proxy: an SSE upstream publishing `id: 1, 2, …` at
//! `--rate` per second on one shared stream, `--streams` raw HTTP/1.1 clients on that
//! route (each checks that every id arrives once, in order, on its first connection), and
//! the reloader. Each reload rewrites the file: the stream route and 98 routes stay, one
//! probe route `/probe/N` is new; the time to serve is from `kill -HUP` until `/probe/N`
//! stops answering 404.
//!
//! ```sh
//! cargo build --release && flock /tmp/sse-edge-bench.lock \
//!   cargo bench --bench reload -- --streams 10000 --reloads 100 --rate 20
//! ```

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Args {
    streams: usize,
    reloads: usize,
    rate: u64,
    binary: String,
}

fn args() -> Args {
    let mut args = Args {
        streams: 10_000,
        reloads: 100,
        rate: 20,
        binary: "target/release/sse-edge".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--streams" => args.streams = value().parse().unwrap_or(args.streams),
            "--reloads" => args.reloads = value().parse().unwrap_or(args.reloads),
            "--rate" => args.rate = value().parse().unwrap_or(args.rate),
            "--binary" => args.binary = value(),
            _ => {}
        }
    }
    args
}

fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The config: the stream route, 98 fixed `http` routes and one probe route for `generation`.
fn config(proxy: SocketAddr, admin: SocketAddr, upstream: SocketAddr, generation: usize) -> String {
    let mut yaml = format!(
        "listen: {proxy}\nadmin: {{ listen: {admin} }}\nlimits: {{ max_connections: 200000, per_client: 200000 }}\ndefaults: {{ heartbeat: 15s }}\nroutes:\n  - path: /s\n    sse: {{ upstream: 'http://{upstream}/stream' }}\n"
    );
    for i in 0..98 {
        yaml.push_str(&format!(
            "  - path: /fixed/{i}\n    http: {{ upstream: 'http://{upstream}' }}\n"
        ));
    }
    yaml.push_str(&format!(
        "  - path: /probe/{generation}\n    http: {{ upstream: 'http://{upstream}' }}\n"
    ));
    yaml
}

/// The upstream: `/stream` gets the shared ticker, anything else `200 ok`.
async fn upstream(listener: TcpListener, rate: u64, next_id: Arc<AtomicU64>) {
    let (ticks, _) = tokio::sync::broadcast::channel::<u64>(4096);
    let sender = ticks.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
        loop {
            every.tick().await;
            let _ = sender.send(next_id.fetch_add(1, Ordering::Relaxed) + 1);
        }
    });
    while let Ok((socket, _)) = listener.accept().await {
        let mut ticks = ticks.subscribe();
        tokio::spawn(async move {
            let mut reader = BufReader::new(socket);
            let mut line = String::new();
            let _ = reader.read_line(&mut line).await;
            let stream = line.contains("/stream");
            let mut head = String::new();
            while reader.read_line(&mut head).await.is_ok_and(|n| n > 2) {
                head.clear();
            }
            let mut socket = reader.into_inner();
            if !stream {
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                return;
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            while let Ok(id) = ticks.recv().await {
                let event = format!("id: {id}\ndata: {id}\n\n");
                if socket.write_all(event.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    events: u64,
    lost: u64,
    repeated: u64,
    closed: bool,
}

/// One client on `/s`: counts ids that are skipped or repeated until `stop` is set.
async fn client(proxy: SocketAddr, stop: Arc<AtomicU64>) -> Seen {
    let mut seen = Seen::default();
    let Ok(mut socket) = TcpStream::connect(proxy).await else {
        seen.closed = true;
        return seen;
    };
    let request = "GET /s HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n";
    if socket.write_all(request.as_bytes()).await.is_err() {
        seen.closed = true;
        return seen;
    }
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    let mut last: Option<u64> = None;
    while stop.load(Ordering::Relaxed) == 0 {
        line.clear();
        match tokio::time::timeout(Duration::from_millis(500), reader.read_line(&mut line)).await {
            Err(_) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => {
                seen.closed = true;
                break;
            }
            Ok(Ok(_)) => {}
        }
        let Some(id) = line
            .strip_prefix("id: ")
            .and_then(|v| v.trim().parse::<u64>().ok())
        else {
            continue;
        };
        seen.events += 1;
        match last {
            Some(prev) if id <= prev => seen.repeated += 1,
            Some(prev) => seen.lost += id - prev - 1,
            None => {}
        }
        last = Some(last.map_or(id, |prev| prev.max(id)));
    }
    seen
}

/// Status of `GET path` on a fresh connection (0 when there is none).
async fn status(proxy: SocketAddr, path: &str) -> u16 {
    let Ok(mut socket) = TcpStream::connect(proxy).await else {
        return 0;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let _ = socket.write_all(request.as_bytes()).await;
    let mut head = [0; 12];
    let _ = socket.read_exact(&mut head).await;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn start_proxy(binary: &str, file: &std::path::Path) -> Child {
    Command::new(binary)
        .arg("--config")
        .arg(file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sse-edge")
}

#[tokio::main]
async fn main() {
    let args = args();
    let (proxy, admin) = (free_addr(), free_addr());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let upstream_addr = listener.local_addr().expect("addr");
    let next_id = Arc::new(AtomicU64::new(0));
    tokio::spawn(upstream(listener, args.rate, next_id.clone()));
    let dir = std::env::temp_dir().join(format!("sse-edge-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("sse-edge.yaml");
    std::fs::write(&file, config(proxy, admin, upstream_addr, 0)).expect("write");
    let mut child = start_proxy(&args.binary, &file);
    while status(proxy, "/probe/0").await != 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = Arc::new(AtomicU64::new(0));
    let opened = Instant::now();
    let mut clients = Vec::with_capacity(args.streams);
    for _ in 0..args.streams {
        clients.push(tokio::spawn(client(proxy, stop.clone())));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("{} streams open in {:?}", args.streams, opened.elapsed());
    let first_id = next_id.load(Ordering::Relaxed);
    let mut to_serve = Vec::new();
    for generation in 1..=args.reloads {
        std::fs::write(&file, config(proxy, admin, upstream_addr, generation)).expect("write");
        let sent = Instant::now();
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill");
        let probe = format!("/probe/{generation}");
        while status(proxy, &probe).await == 404 {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        to_serve.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_id = next_id.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(1, Ordering::Relaxed);
    let mut total = Seen::default();
    for handle in clients {
        let seen = handle.await.expect("client");
        total.events += seen.events;
        total.lost += seen.lost;
        total.repeated += seen.repeated;
        total.closed |= seen.closed;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    to_serve.sort();
    println!(
        "{{\"streams\":{},\"routes\":100,\"reloads\":{},\"rate\":{},\"events_during_reloads\":{},\"deliveries\":{},\"lost\":{},\"repeated\":{},\"a_client_was_closed\":{},\"sighup_to_serving_ms\":{{\"p50\":{:.2},\"p99\":{:.2},\"max\":{:.2}}}}}",
        args.streams,
        args.reloads,
        args.rate,
        last_id - first_id,
        total.events,
        total.lost,
        total.repeated,
        total.closed,
        percentile(&to_serve, 0.5).as_secs_f64() * 1e3,
        percentile(&to_serve, 0.99).as_secs_f64() * 1e3,
        to_serve.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

//! Strict request heads (SPEC §4): raw bytes over a TcpStream. A request without `Host`, a
//! request line with a space or control byte in its target, and a head that arrives too
//! slowly are refused, counted, and never reach the upstream — on `http` and stream routes.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Config, Proxy, Route, SseUpstream, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A kept-alive HTTP upstream that records the request line of every request it receives.
struct Recorder {
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let record = lines.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(BufReader::new(stream), record.clone()));
            }
        });
        Recorder { addr, lines }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }
}

async fn serve(mut conn: BufReader<TcpStream>, lines: Arc<Mutex<Vec<String>>>) {
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let length = head
            .iter()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if conn.read_exact(&mut body).await.is_err() {
            return;
        }
        lines.lock().expect("lines").push(head[0].clone());
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if conn.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Writes `request` on `conn` and reads one response: its status (0 if none) and whether
/// the proxy closed the connection after it.
async fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> (u16, bool) {
    conn.get_mut().write_all(request).await.expect("send");
    read_response(conn).await
}

async fn read_response(conn: &mut BufReader<TcpStream>) -> (u16, bool) {
    let mut status_line = String::new();
    let read = tokio::time::timeout(WAIT, conn.read_line(&mut status_line)).await;
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let (Ok(Ok(1..)), Some(status)) = (read, status) else {
        return (0, true);
    };
    let mut length = 0;
    let mut close = false;
    loop {
        let mut line = String::new();
        let _ = tokio::time::timeout(WAIT, conn.read_line(&mut line)).await;
        let lower = line.trim().to_ascii_lowercase();
        if lower.is_empty() {
            break;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        close |= lower == "connection: close";
    }
    let mut body = vec![0; length];
    let _ = tokio::time::timeout(WAIT, conn.read_exact(&mut body)).await;
    (status, close)
}

async fn connect(proxy: &Proxy) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(proxy.addr).await.expect("connect"))
}

fn refused(proxy: &Proxy, reason: &str) -> f64 {
    proxy.metric(&format!(
        "sse_edge_requests_refused_total{{reason=\"{reason}\"}}"
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_host_is_refused_on_every_kind_of_route() {
    let api = Recorder::start().await;
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::http("/api/*", format!("http://{}", api.addr)))
            .route(Route::sse("/s", upstream.url("/stream")))
            .yaml(),
    );
    assert_eq!(
        refused(&proxy, "missing_host"),
        0.0,
        "exported from the start"
    );
    for request in [
        &b"GET /api/x HTTP/1.1\r\n\r\n"[..],
        b"GET /s HTTP/1.1\r\n\r\n",
    ] {
        let (status, closed) = exchange(&mut connect(&proxy).await, request).await;
        assert_eq!((status, closed), (400, true), "{request:?}");
    }
    // HTTP/1.0 has no Host requirement.
    let (status, _) = exchange(&mut connect(&proxy).await, b"GET /api/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200);
    let lines = api.lines();
    assert!(
        lines.len() == 1 && lines[0].starts_with("GET /api/old HTTP/"),
        "{lines:?}"
    );
    assert_eq!(upstream.accepted(), 0);
    assert_eq!(refused(&proxy, "missing_host"), 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_space_or_control_byte_in_the_target_is_refused_not_rewritten() {
    let api = Recorder::start().await;
    let upstream = SseUpstream::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::http("/api/*", format!("http://{}", api.addr)))
            .route(Route::sse("/s", upstream.url("/stream")))
            .yaml(),
    );
    for request in [
        &b"GET /api/a b HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /api/a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /api/a\"<b> c HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /s x HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let (status, closed) = exchange(&mut connect(&proxy).await, request).await;
        assert_eq!((status, closed), (400, true), "{request:?}");
    }
    assert_eq!(api.lines(), Vec::<String>::new(), "nothing reached the API");
    assert_eq!(upstream.accepted(), 0);
    assert_eq!(refused(&proxy, "bad_request_line"), 4.0);
    // The same target, percent-encoded by the client, is a valid request.
    let (status, _) = exchange(
        &mut connect(&proxy).await,
        b"GET /api/a%20b HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(api.lines(), vec!["GET /api/a%20b HTTP/1.1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_on_a_kept_alive_connection_is_judged_by_its_own_line() {
    let api = Recorder::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .route(Route::http("/api/*", format!("http://{}", api.addr)))
            .yaml(),
    );
    let mut conn = connect(&proxy).await;
    // A body that looks like a bad request line is a body.
    let body = b"GET /api/a b HTTP/1.1\r\n\r\n";
    let post = format!(
        "POST /api/one HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = post.into_bytes();
    request.extend_from_slice(body);
    assert_eq!(exchange(&mut conn, &request).await, (200, false));
    assert_eq!(
        exchange(&mut conn, b"GET /api/two HTTP/1.1\r\nHost: t\r\n\r\n").await,
        (200, false)
    );
    assert_eq!(
        exchange(&mut conn, b"GET /api/th ree HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .0,
        400
    );
    assert_eq!(
        api.lines(),
        vec!["POST /api/one HTTP/1.1", "GET /api/two HTTP/1.1"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_head_is_answered_408_and_cut() {
    let api = Recorder::start().await;
    let proxy = Proxy::start(
        &Config::new()
            .set("limits.header_timeout", "300ms")
            .route(Route::http("/api/*", format!("http://{}", api.addr)))
            .yaml(),
    );
    // Dribbling a byte every 50 ms does not extend the deadline.
    let mut slow = connect(&proxy).await;
    let started = Instant::now();
    for byte in b"GET /api/x HTTP/1.1\r\nHost: t\r\n" {
        if slow.get_mut().write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, closed) = read_response(&mut slow).await;
    assert_eq!((status, closed), (408, true));
    let mut rest = Vec::new();
    let end = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(matches!(end, Ok(Ok(_)) | Ok(Err(_))), "connection closed");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "cut after {elapsed:?}");

    // A connection that sends nothing is closed too (no answer: there is no request).
    let mut silent = connect(&proxy).await;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(WAIT, silent.read_to_end(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?} {buf:?}");
    assert_eq!(refused(&proxy, "header_timeout"), 2.0);
    assert_eq!(api.lines(), Vec::<String>::new());

    // On a kept-alive connection the clock starts with the next head's first byte.
    let mut kept = connect(&proxy).await;
    let get = b"GET /api/a HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(exchange(&mut kept, get).await, (200, false));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(exchange(&mut kept, get).await, (200, false));
    assert_eq!(refused(&proxy, "header_timeout"), 2.0);
}

//! HTTPS and HTTP/2 listeners, `https://` upstreams with `ca_file`, and `check` on bad TLS
//! files — against the real binary, with a CA and certificates generated per test.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::certs::Pki;
use common::{free_addr, Config, Listen, Proxy, Route, SseUpstream, WAIT};
use h2::client::SendRequest;
use h2::RecvStream;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Starts the proxy with one HTTPS listener and `config` (defaults, limits, routes).
fn https_proxy(pki: &Pki, config: Config) -> Proxy {
    let addr = free_addr();
    let listener = Listen::tls(addr, pki.path("cert.pem"), pki.path("key.pem"));
    start_listening(config, listener, addr)
}

/// Starts the proxy with one cleartext listener that also speaks h2c, and `config`.
fn h2c_proxy(config: Config) -> Proxy {
    let addr = free_addr();
    start_listening(config, Listen::h2c(addr), addr)
}

/// Starts the proxy with `listener` (bound to `addr`) as its only listener, and `config`.
fn start_listening(config: Config, listener: Listen, addr: SocketAddr) -> Proxy {
    let admin = free_addr();
    let yaml = config.listen([listener]).admin(admin).yaml();
    Proxy::start_with_yaml(&yaml, addr, admin)
}

/// `/s` in front of `upstream`'s `/stream`, with quick heartbeats and linger; tests add limits.
fn config(upstream: &SseUpstream) -> Config {
    Config::new()
        .set("defaults.heartbeat", "300ms")
        .set("defaults.linger", "100ms")
        .route(Route::sse("/s", upstream.url("/stream")))
}

/// HTTP/2 over an established connection (TLS with ALPN `h2`, or cleartext prior knowledge).
async fn h2_connect<T>(io: T) -> SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = timeout(WAIT, h2::client::handshake(io))
        .await
        .expect("h2 handshake in time")
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// One HTTP/2 SSE stream.
struct H2Stream {
    status: u16,
    body: RecvStream,
    text: String,
}

impl H2Stream {
    async fn open(sender: &SendRequest<Bytes>, headers: &[(&str, &str)]) -> H2Stream {
        let mut sender = timeout(WAIT, sender.clone().ready())
            .await
            .expect("stream slot in time")
            .expect("connection usable");
        let mut request = http::Request::get("https://localhost/s");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (response, _) = sender
            .send_request(request.body(()).expect("request"), true)
            .expect("send request");
        let response = timeout(WAIT, response)
            .await
            .expect("response head in time")
            .expect("response head");
        let status = response.status().as_u16();
        H2Stream {
            status,
            body: response.into_body(),
            text: String::new(),
        }
    }

    /// Reads until the unread text contains `needle`, consuming through it; false on timeout
    /// or end of stream.
    async fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        self.wait_until(limit, |text| text.find(needle).map(|at| at + needle.len()))
            .await
    }

    /// Reads until a heartbeat (a line starting with `:`) is unread, consuming through it.
    async fn wait_heartbeat(&mut self, limit: Duration) -> bool {
        self.wait_until(limit, |text| {
            let start = if text.starts_with(':') {
                0
            } else {
                text.find("\n:")? + 1
            };
            text[start..].find('\n').map(|end| start + end + 1)
        })
        .await
    }

    /// Reads until `found` returns where the wanted text ends, consuming through it.
    async fn wait_until(&mut self, limit: Duration, found: impl Fn(&str) -> Option<usize>) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = found(&self.text) {
                self.text.drain(..end);
                return true;
            }
            match tokio::time::timeout_at(deadline, self.body.data()).await {
                Ok(Some(Ok(chunk))) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.text.push_str(&String::from_utf8_lossy(&chunk));
                }
                _ => return false,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_h2_streams_on_one_tls_connection_get_events_and_heartbeats() {
    let pki = Pki::new("twenty");
    let mut upstream = SseUpstream::start().await;
    let proxy = https_proxy(&pki, config(&upstream).set("limits.per_client", 50));
    let tls = pki.connect(proxy.addr, &[b"h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let sender = h2_connect(tls).await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let stream = H2Stream::open(&sender, &[]).await;
        assert_eq!(stream.status, 200);
        streams.push(stream);
    }
    let mut conn = upstream.next_conn().await;
    assert!(
        common::eventually(WAIT, || proxy
            .metric("sse_edge_connections_active{route=\"/s\"}")
            == 20.0)
        .await
    );
    conn.send("id: 1\ndata: to all twenty\n\n").await;
    for (index, stream) in streams.iter_mut().enumerate() {
        assert!(
            stream.wait_for("data: to all twenty\n\n", WAIT).await,
            "stream {index} got the event"
        );
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        assert!(
            stream.wait_heartbeat(Duration::from_secs(3)).await,
            "stream {index} got a heartbeat"
        );
    }
    // Delivery is unbuffered: each event is on the wire as soon as it is published.
    for n in 2..5 {
        conn.send(&format!("id: {n}\ndata: event {n}\n\n")).await;
        for stream in &mut streams {
            assert!(
                stream
                    .wait_for(&format!("data: event {n}\n\n"), Duration::from_secs(2))
                    .await
            );
        }
    }
    // Resume on a new stream of the same connection.
    let mut resumed = H2Stream::open(&sender, &[("last-event-id", "2")]).await;
    assert_eq!(resumed.status, 200);
    assert!(resumed.wait_for("id: 3\ndata: event 3\n\n", WAIT).await);
    assert!(resumed.wait_for("id: 4\ndata: event 4\n\n", WAIT).await);
    assert!(!resumed.text.contains("event 2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_limit_counts_h2_streams_and_a_reset_stream_frees_its_slot() {
    let pki = Pki::new("limit");
    let mut upstream = SseUpstream::start().await;
    let proxy = https_proxy(&pki, config(&upstream).set("limits.per_client", 10));
    let sender = h2_connect(pki.connect(proxy.addr, &[b"h2"]).await).await;
    let mut admitted = Vec::new();
    for _ in 0..10 {
        let stream = H2Stream::open(&sender, &[]).await;
        assert_eq!(stream.status, 200);
        admitted.push(stream);
    }
    for n in 11..=20 {
        let mut refused = H2Stream::open(&sender, &[]).await;
        assert_eq!(refused.status, 429, "stream {n}");
        assert!(refused.wait_for("too many streams", WAIT).await);
    }
    let mut conn = upstream.next_conn().await;
    conn.send("data: still flowing\n\n").await;
    for stream in &mut admitted {
        assert!(stream.wait_for("data: still flowing\n\n", WAIT).await);
    }
    // Dropping the body and response sends RST_STREAM(CANCEL) for that stream only.
    drop(admitted.remove(0));
    assert!(
        common::eventually(WAIT, || proxy
            .metric("sse_edge_connections_active{route=\"/s\"}")
            == 9.0)
        .await,
        "the reset stream's slot is freed"
    );
    let mut newcomer = H2Stream::open(&sender, &[]).await;
    assert_eq!(newcomer.status, 200, "a new stream gets the freed slot");
    assert_eq!(H2Stream::open(&sender, &[]).await.status, 429);
    conn.send("data: after the reset\n\n").await;
    for stream in admitted.iter_mut().chain(std::iter::once(&mut newcomer)) {
        assert!(stream.wait_for("data: after the reset\n\n", WAIT).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2_stream_reset_by_the_client_ends_at_once_not_at_its_next_write() {
    let pki = Pki::new("reset");
    let mut upstream = SseUpstream::start().await;
    let quiet = config(&upstream).set("defaults.heartbeat", "30s");
    let proxy = https_proxy(&pki, quiet);
    let sender = h2_connect(pki.connect(proxy.addr, &[b"h2"]).await).await;
    let mut stream = H2Stream::open(&sender, &[]).await;
    assert_eq!(stream.status, 200);
    let mut conn = upstream.next_conn().await;
    conn.send("data: one\n\n").await;
    assert!(stream.wait_for("data: one\n\n", WAIT).await);
    let active = "sse_edge_connections_active{route=\"/s\"}";
    assert_eq!(proxy.metric(active), 1.0);
    // RST_STREAM(CANCEL), with nothing for the proxy to write for 30 s: only the stream's
    // close watch can end it now.
    drop(stream);
    assert!(
        common::eventually(Duration::from_secs(3), || proxy.metric(active) == 0.0).await,
        "the reset stream ended before any write"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_over_tls_works_on_the_same_listener() {
    let pki = Pki::new("h1");
    let mut upstream = SseUpstream::start().await;
    let proxy = https_proxy(&pki, config(&upstream).set("limits.per_client", 10));
    let tls = pki.connect(proxy.addr, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut reader = BufReader::new(tls);
    reader
        .get_mut()
        .write_all(b"GET /s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("send request");
    let mut head = String::new();
    timeout(WAIT, reader.read_line(&mut head))
        .await
        .expect("status in time")
        .expect("status");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut conn = upstream.next_conn().await;
    conn.send("data: over h1 tls\n\n").await;
    let mut seen = String::new();
    let found = timeout(WAIT, async {
        while !seen.contains("data: over h1 tls") {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return false;
            }
            seen.push_str(&line);
        }
        true
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cleartext_h2c_listener_streams_events() {
    let mut upstream = SseUpstream::start().await;
    let proxy = h2c_proxy(config(&upstream).set("limits.per_client", 10));
    let tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let sender = h2_connect(tcp).await;
    let mut first = H2Stream::open(&sender, &[]).await;
    let mut second = H2Stream::open(&sender, &[]).await;
    assert_eq!((first.status, second.status), (200, 200));
    let mut conn = upstream.next_conn().await;
    conn.send("data: over h2c\n\n").await;
    assert!(first.wait_for("data: over h2c\n\n", WAIT).await);
    assert!(second.wait_for("data: over h2c\n\n", WAIT).await);
}

/// An `https://` SSE upstream: accepts TLS with the test certificate, answers every request
/// with an event stream carrying one event.
async fn https_upstream(pki: &Pki) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut reader = BufReader::new(tls);
                if !common::read_request_head(&mut reader).await {
                    return;
                }
                let stream = reader.get_mut();
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nid: 7\ndata: over https\n\n",
                    )
                    .await;
                let _ = stream.flush().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_is_trusted_through_ca_file() {
    let pki = Pki::new("upstream");
    let upstream = https_upstream(&pki).await;
    let url = format!("https://{upstream}/stream");
    let body = Config::new()
        .set("defaults.heartbeat", "10s")
        .route(Route::sse("/trusted", &url).opt("ca_file", pki.path("ca.pem")))
        .route(Route::sse("/untrusted", &url));
    let proxy = Proxy::start(&body.yaml());
    let mut trusted = common::SseClient::connect(&proxy.url("/trusted"), &[]).await;
    assert_eq!(trusted.status, 200);
    let event = trusted
        .next_event()
        .await
        .expect("event through https upstream");
    assert_eq!(event.data().as_deref(), Some("over https"));
    assert_eq!(event.id().as_deref(), Some("7"));
    // Without ca_file only the system roots are trusted: the test CA is not among them.
    let mut untrusted = common::SseClient::connect(&proxy.url("/untrusted"), &[]).await;
    assert!(untrusted
        .next_event_within(Duration::from_secs(1))
        .await
        .is_none());
}

#[test]
fn check_refuses_missing_and_mismatched_tls_files() {
    let pki = Pki::new("check");
    let listen = |cert: &str, key: &str| {
        Config::new()
            .listen([
                Listen::plain("127.0.0.1:8080"),
                Listen::tls("127.0.0.1:8443", pki.path(cert), pki.path(key)),
            ])
            .route(Route::sse("/a", "http://h/"))
            .yaml()
    };
    let (ok, out) = common::check_config(&pki.dir, "good.yaml", &listen("cert.pem", "key.pem"));
    assert!(ok, "{out}");

    let (ok, out) =
        common::check_config(&pki.dir, "missing.yaml", &listen("cert.pem", "absent.pem"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("listen[1].tls.key")
            && out.contains("cannot read")
            && out.contains("absent.pem"),
        "{out}"
    );

    let (ok, out) = common::check_config(
        &pki.dir,
        "mismatch.yaml",
        &listen("cert.pem", "other-key.pem"),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("listen[1].tls.key") && out.contains("does not match"),
        "{out}"
    );

    let (ok, out) = common::check_config(&pki.dir, "nocert.yaml", &listen("key.pem", "key.pem"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("listen[1].tls.cert") && out.contains("no PEM CERTIFICATE"),
        "{out}"
    );

    let (ok, out) = common::check_config(&pki.dir, "nokey.yaml", &listen("cert.pem", "cert.pem"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("listen[1].tls.key") && out.contains("no PEM PRIVATE KEY"),
        "{out}"
    );

    let (ok, out) = common::check_config(
        &pki.dir,
        "ca.yaml",
        &Config::new()
            .route(Route::sse("/a", "https://h/").opt("ca_file", pki.path("key.pem")))
            .yaml(),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("routes[0].sse.ca_file") && out.contains("no PEM CERTIFICATE"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_header_blocks_are_bounded_by_max_header_bytes() {
    let upstream = SseUpstream::start().await;
    let proxy = h2c_proxy(
        config(&upstream)
            .set("limits.per_client", 10)
            .set("limits.max_header_bytes", "8KiB"),
    );
    let sender = h2_connect(TcpStream::connect(proxy.addr).await.expect("connect")).await;
    let big = "x".repeat(12 * 1024);
    let mut sender = timeout(WAIT, sender.ready())
        .await
        .expect("ready in time")
        .expect("ready");
    let request = http::Request::get("http://localhost/s")
        .header("x-big", big.as_str())
        .body(())
        .expect("request");
    let (response, _) = sender.send_request(request, true).expect("send");
    let status = timeout(WAIT, response)
        .await
        .expect("answer in time")
        .map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(431)),
        "an oversize h2 header block is refused with 431, got {status:?}"
    );
    let ok = H2Stream::open(&sender, &[]).await;
    assert_eq!(ok.status, 200, "the connection stays usable");
}

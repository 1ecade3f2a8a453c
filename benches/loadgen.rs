//! Load generator for sse-edge: holds N concurrent SSE clients and measures delivery latency.
//!
//! Each client is a raw tokio TCP socket speaking HTTP/1.1 (no per-connection read buffer: a
//! per-thread scratch buffer is used through `readable()` + `try_read`, so an idle client costs
//! only its socket and a few words of parser state). With `--tls` the clients speak HTTP/1.1
//! over rustls, and with `--h2` their streams are multiplexed over HTTP/2 connections
//! (`loadgen/tls_h2.rs`); every transport feeds the same per-stream parser ([`SseStream`]). Clients bind to source addresses spread
//! over `127.0.0.1..=127.0.0.S` before connecting (with `IP_BIND_ADDRESS_NO_PORT`), so loopback
//! ephemeral ports never run out, and spread over every `--target` given. Bodies are de-chunked
//! and scanned for a `T=<unix µs>` stamp in `data:` lines written by `bench_upstream` (at the
//! start of the line, or inside a JSON document such as `{"t":"T=123"}` for the poll and
//! websocket sources); each complete event records `now - T` into an HDR histogram. With `--proxy-pid`, the proxy's RSS growth per
//! stream and its CPU time (utime+stime from `/proc/PID/stat`) over the measurement window
//! are reported too, summed over every pid given (and, with `--proxy-tree`, over all their
//! descendants: Pushpin runs as a runner plus condure, zurl, pushpin-proxy and
//! pushpin-handler). One JSON line goes to stdout (and a Markdown row with `--md`).
//!
//! Run: `cargo bench --bench loadgen -- --help`.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

#[path = "loadgen/tls_h2.rs"]
mod tls_h2;

const USAGE: &str = "loadgen: N concurrent SSE clients with per-event latency (HDR histogram)

USAGE: cargo bench --bench loadgen -- [OPTIONS]

  --target ADDR          proxy or upstream address; repeatable or comma-separated [127.0.0.1:8080]
  --path PATH            request path                                   [/s]
  --streams N            concurrent clients                             [100]
  --duration SECS        measurement window                             [10]
  --warmup SECS          wait after all clients connected               [2]
  --sources N            source addresses 127.0.0.1..=127.0.0.N         [16]
  --connect-concurrency N  connects in flight                           [256]
  --connect-rate N       start at most N clients per second; 0 = no limit       [0]
                         (Pushpin refuses bursts of new requests with 502/500;
                         its 1M-connection guide paces tcpkali at 200/s)
  --retry-refused N      a client answered with a non-200 status before its first
                         event tries again up to N times (0.5 s, 1 s, 2 s, 4 s backoff);
                         counted in errors.refused_retried                  [0]
                         (both: plain HTTP/1.1 clients only)
  --threads N            tokio worker threads                           [1]
  --proxy-pid PID        report RSS per stream and CPU of this process; repeatable or
                         comma-separated: RSS and CPU are summed over every pid
  --proxy-tree           also sum every descendant of the --proxy-pid processes
                         (found in /proc when the clients start connecting)
  --label TEXT           row label in the output                        [run]
  --rate N --size B --shared BOOL   workload description, echoed in the output
                                    (the upstream produces the events)
  --workload KIND        sse | poll | websocket (echoed in the output)  [sse]
  --resources R          replace `{i}` in --path with client index mod R (poll: /p/{i})
  --upstream-stats ADDR  read bench_upstream's GET /stats at the window's start and end
                         and report upstream requests/s and WebSocket sockets
  --tls                  connect over TLS (rustls; ALPN http/1.1, or h2 with --h2)
  --ca FILE              PEM certificate(s) to trust with --tls (e.g. the bench's self-signed one)
  --sni NAME             TLS server name, and Host / :authority with --tls  [localhost]
  --h2                   HTTP/2: --streams streams multiplexed over connections
                         (over TLS with --tls, else prior-knowledge h2c)
  --streams-per-conn N   HTTP/2 streams per connection                  [100]
  --md                   also print a Markdown table row

  LOADGEN_TRACE=FILE     also write every delivery in the window to FILE, one line each:
                         receive time and latency in microseconds (to see when the tail
                         happens: which bursts, how often)
";

#[derive(Debug, Clone)]
struct Args {
    targets: Vec<SocketAddr>,
    path: String,
    streams: usize,
    duration: f64,
    warmup: f64,
    sources: u8,
    connect_concurrency: usize,
    threads: usize,
    connect_rate: f64,
    retry_refused: u32,
    proxy_pids: Vec<u32>,
    proxy_tree: bool,
    label: String,
    rate: f64,
    size: usize,
    shared: bool,
    workload: String,
    resources: usize,
    upstream_stats: Option<SocketAddr>,
    /// `--tls`: connect over TLS, trusting `--ca`.
    tls: Option<TlsArgs>,
    h2: bool,
    streams_per_conn: usize,
    md: bool,
}

#[derive(Debug, Clone)]
struct TlsArgs {
    ca: String,
    sni: String,
}

impl Args {
    /// The transport, as reported in the output: `http/1.1`, `http/1.1+tls`, `h2c`, `h2+tls`.
    fn transport(&self) -> &'static str {
        match (self.h2, self.tls.is_some()) {
            (false, false) => "http/1.1",
            (false, true) => "http/1.1+tls",
            (true, false) => "h2c",
            (true, true) => "h2+tls",
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        targets: Vec::new(),
        path: "/s".into(),
        streams: 100,
        duration: 10.0,
        warmup: 2.0,
        sources: 16,
        connect_concurrency: 256,
        threads: 1,
        connect_rate: 0.0,
        retry_refused: 0,
        proxy_pids: Vec::new(),
        proxy_tree: false,
        label: "run".into(),
        rate: 0.0,
        size: 0,
        shared: false,
        workload: "sse".into(),
        resources: 1,
        upstream_stats: None,
        tls: None,
        h2: false,
        streams_per_conn: 100,
        md: false,
    };
    let (mut tls, mut ca, mut sni) = (false, None, "localhost".to_string());
    let mut it = std::env::args().skip(1);
    fn num<T: std::str::FromStr>(flag: &str, v: String) -> Result<T, String> {
        v.parse().map_err(|_| format!("{flag}: not a number: {v}"))
    }
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => {
                for t in value()?.split(',').filter(|t| !t.is_empty()) {
                    a.targets
                        .push(t.parse().map_err(|e| format!("--target {t}: {e}"))?);
                }
            }
            "--path" => a.path = value()?,
            "--streams" => a.streams = num(&flag, value()?)?,
            "--duration" => a.duration = num(&flag, value()?)?,
            "--warmup" => a.warmup = num(&flag, value()?)?,
            "--sources" => a.sources = num(&flag, value()?)?,
            "--connect-concurrency" => a.connect_concurrency = num(&flag, value()?)?,
            "--threads" => a.threads = num(&flag, value()?)?,
            "--connect-rate" => a.connect_rate = num(&flag, value()?)?,
            "--retry-refused" => a.retry_refused = num(&flag, value()?)?,
            "--proxy-pid" => {
                for p in value()?.split(',').filter(|p| !p.is_empty()) {
                    a.proxy_pids.push(num(&flag, p.to_string())?);
                }
            }
            "--proxy-tree" => a.proxy_tree = true,
            "--label" => a.label = value()?,
            "--rate" => a.rate = num(&flag, value()?)?,
            "--size" => a.size = num(&flag, value()?)?,
            "--shared" => a.shared = num(&flag, value()?)?,
            "--workload" => a.workload = value()?,
            "--resources" => a.resources = num(&flag, value()?)?,
            "--upstream-stats" => {
                let v = value()?;
                a.upstream_stats = Some(
                    v.parse()
                        .map_err(|e| format!("--upstream-stats {v}: {e}"))?,
                );
            }
            "--tls" => tls = true,
            "--ca" => ca = Some(value()?),
            "--sni" => sni = value()?,
            "--h2" => a.h2 = true,
            "--streams-per-conn" => a.streams_per_conn = num(&flag, value()?)?,
            "--md" => a.md = true,
            "--bench" => {} // cargo bench passes this to harness=false targets
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.targets.is_empty() {
        a.targets.push(SocketAddr::from(([127, 0, 0, 1], 8080)));
    }
    a.sources = a.sources.max(1);
    a.streams_per_conn = a.streams_per_conn.max(1);
    if tls {
        let ca = ca.ok_or("--tls needs --ca FILE")?;
        a.tls = Some(TlsArgs { ca, sni });
    }
    a.resources = a.resources.max(1);
    Ok(a)
}

// ---------------------------------------------------------------- shared counters

/// Whether events are being recorded (the measurement window is open).
static RECORDING: AtomicBool = AtomicBool::new(false);
/// Whether each recorded delivery is also kept in `TRACE` (`LOADGEN_TRACE` is set).
static TRACING: AtomicBool = AtomicBool::new(false);
/// Every delivery of the window when tracing: (receive time, latency), microseconds.
static TRACE: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
static CONNECTED: AtomicU64 = AtomicU64::new(0);
static FINISHED_CONNECTING: AtomicU64 = AtomicU64::new(0);
static ERR_CONNECT: AtomicU64 = AtomicU64::new(0);
static ERR_HTTP: AtomicU64 = AtomicU64::new(0);
static BAD_STATUS_SHOWN: AtomicBool = AtomicBool::new(false);
/// Refused requests (non-200) that were tried again (`--retry-refused`).
static RETRIED: AtomicU64 = AtomicU64::new(0);
static ERR_EOF: AtomicU64 = AtomicU64::new(0);
static ERR_READ: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);
static HEARTBEATS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

type Hist = Arc<Mutex<Histogram<u64>>>;

/// Every worker thread's histogram, merged at the end.
static HISTOGRAMS: Mutex<Vec<Hist>> = Mutex::new(Vec::new());

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; the bounds are valid constants.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| std::process::abort()))
}

thread_local! {
    static LOCAL_HIST: Hist = {
        let h = Arc::new(Mutex::new(new_histogram()));
        HISTOGRAMS.lock().unwrap_or_else(PoisonError::into_inner).push(h.clone());
        h
    };
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; 64 * 1024]);
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// ---------------------------------------------------------------- per-stream parser

/// How a stream ended. Every end is an error: the streams are meant to stay open.
#[derive(Debug, Clone, Copy)]
enum End {
    /// No connection, TLS session or HTTP/2 stream could be opened.
    Connect,
    /// The response was not a `200`, or not HTTP.
    Http,
    /// The server closed the body.
    Eof,
    /// A read (or HTTP/2 frame) failed.
    Read,
}

/// One SSE response's life, whatever carries it (HTTP/1.1 over TCP or TLS, an HTTP/2
/// stream): counted open once its head is a `200`, its body scanned for events, and its end
/// counted. The transports only differ in how the body bytes arrive.
struct SseStream {
    scan: SseScan,
    open: bool,
}

impl SseStream {
    fn new() -> Self {
        SseStream {
            scan: SseScan::new(),
            open: false,
        }
    }

    /// The response head was a `200`: the stream counts as connected.
    fn opened(&mut self) {
        self.open = true;
        CONNECTED.fetch_add(1, Ordering::Relaxed);
    }

    /// `text/event-stream` body bytes (de-chunked, de-framed).
    fn body(&mut self, bytes: &[u8], now: u64) {
        self.scan.scan(bytes, now);
    }

    fn end(&mut self, why: End) {
        let counter = match why {
            End::Connect => &ERR_CONNECT,
            End::Http => &ERR_HTTP,
            End::Eof => &ERR_EOF,
            End::Read => &ERR_READ,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if std::mem::take(&mut self.open) {
            CONNECTED.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// HTTP/1.1 chunked transfer decoding state.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size { value: usize, ext: bool },
    Data(usize),
    AfterData,
    Done,
}

/// HTTP/1.1 response framing (status line, headers, chunked body) around an [`SseStream`].
struct H1Response {
    /// Headers seen so far (dropped once the body starts).
    head: Option<Vec<u8>>,
    chunked: bool,
    chunk: Chunk,
    sse: SseStream,
}

/// Event scanning state: a handful of words per stream.
struct SseScan {
    line_len: u32,
    prefix_ok: bool,
    comment: bool,
    in_ts: bool,
    ts: u64,
    have_ts: bool,
    /// The current line is a `data:` line (the stamp is searched for after its prefix).
    in_data: bool,
    prev: u8,
}

const DATA: &[u8] = b"data:";

enum Feed {
    More,
    End,
    BadStatus,
}

impl H1Response {
    fn new() -> Self {
        H1Response {
            head: Some(Vec::new()),
            chunked: false,
            chunk: Chunk::Size {
                value: 0,
                ext: false,
            },
            sse: SseStream::new(),
        }
    }

    /// Handles one read of the socket: `Ok(bytes)` (empty at EOF) or the read's error.
    /// Returns true when the stream is over (and counted).
    fn received(&mut self, read: std::io::Result<&[u8]>) -> bool {
        match self.outcome(read) {
            Some(why) => {
                self.sse.end(why);
                true
            }
            None => false,
        }
    }

    /// Like [`H1Response::received`], but leaves counting the end to the caller.
    fn outcome(&mut self, read: std::io::Result<&[u8]>) -> Option<End> {
        Some(match read {
            Ok([]) => End::Eof,
            Ok(bytes) => {
                BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                match self.feed(bytes, now_micros()) {
                    Feed::More => return None,
                    Feed::End => End::Eof,
                    Feed::BadStatus => End::Http,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(_) => End::Read,
        })
    }

    fn feed(&mut self, mut buf: &[u8], now: u64) -> Feed {
        if let Some(head) = self.head.as_mut() {
            head.extend_from_slice(buf);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return if head.len() > 64 * 1024 {
                    Feed::BadStatus
                } else {
                    Feed::More
                };
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            if !text.starts_with("http/1.1 200") && !text.starts_with("http/1.0 200") {
                // The first refusal is shown (e.g. a proxy's 502 or 503), the rest counted.
                if !BAD_STATUS_SHOWN.swap(true, Ordering::Relaxed) {
                    let body = String::from_utf8_lossy(&head[end + 4..]);
                    eprintln!(
                        "loadgen: first non-200 response: {:?} {:?}",
                        text.lines().next().unwrap_or(""),
                        body.chars().take(200).collect::<String>()
                    );
                }
                return Feed::BadStatus;
            }
            self.chunked = text
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
            let rest = head.split_off(end + 4);
            self.head = None;
            self.sse.opened();
            return self.body(&rest, now);
        }
        if !self.chunked {
            self.sse.body(buf, now);
            return Feed::More;
        }
        while !buf.is_empty() {
            match self.chunk {
                Chunk::Size { value, ext } => {
                    let b = buf[0];
                    buf = &buf[1..];
                    self.chunk = match b {
                        b'\n' if value == 0 => Chunk::Done,
                        b'\n' => Chunk::Data(value),
                        b';' => Chunk::Size { value, ext: true },
                        _ if ext => Chunk::Size { value, ext },
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            let d = (b as char).to_digit(16).unwrap_or(0) as usize;
                            Chunk::Size {
                                value: value * 16 + d,
                                ext,
                            }
                        }
                        _ => Chunk::Size { value, ext },
                    };
                }
                Chunk::Data(rem) => {
                    let n = rem.min(buf.len());
                    self.sse.body(&buf[..n], now);
                    buf = &buf[n..];
                    self.chunk = if n == rem {
                        Chunk::AfterData
                    } else {
                        Chunk::Data(rem - n)
                    };
                }
                Chunk::AfterData => {
                    if buf[0] == b'\n' {
                        self.chunk = Chunk::Size {
                            value: 0,
                            ext: false,
                        };
                    }
                    buf = &buf[1..];
                }
                Chunk::Done => return Feed::End,
            }
        }
        if matches!(self.chunk, Chunk::Done) {
            Feed::End
        } else {
            Feed::More
        }
    }

    fn body(&mut self, buf: &[u8], now: u64) -> Feed {
        if buf.is_empty() {
            Feed::More
        } else {
            self.feed(buf, now)
        }
    }
}

impl SseScan {
    fn new() -> Self {
        SseScan {
            line_len: 0,
            prefix_ok: true,
            comment: false,
            in_ts: false,
            ts: 0,
            have_ts: false,
            in_data: false,
            prev: 0,
        }
    }
    /// Scans de-chunked `text/event-stream` bytes for event ends and `data: T=` stamps.
    fn scan(&mut self, buf: &[u8], now: u64) {
        for &b in buf {
            match b {
                b'\n' => {
                    if self.line_len == 0 {
                        if self.have_ts {
                            EVENTS.fetch_add(1, Ordering::Relaxed);
                            if RECORDING.load(Ordering::Relaxed) {
                                let lat = now.saturating_sub(self.ts).max(1);
                                if TRACING.load(Ordering::Relaxed) {
                                    TRACE
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .push((now, lat));
                                }
                                LOCAL_HIST.with(|h| {
                                    let _ = h
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .record(lat.min(60_000_000));
                                });
                            }
                        }
                        self.have_ts = false;
                    } else if self.comment {
                        HEARTBEATS.fetch_add(1, Ordering::Relaxed);
                    }
                    if self.in_ts {
                        self.have_ts = true;
                    }
                    self.line_len = 0;
                    self.prefix_ok = true;
                    self.comment = false;
                    self.in_ts = false;
                    self.in_data = false;
                    self.prev = 0;
                }
                b'\r' => {}
                _ => {
                    let i = self.line_len as usize;
                    if i == 0 && b == b':' {
                        self.comment = true;
                    }
                    if self.in_ts {
                        if b.is_ascii_digit() {
                            self.ts = self.ts * 10 + u64::from(b - b'0');
                        } else {
                            self.in_ts = false;
                            self.have_ts = true;
                        }
                    } else if i < DATA.len() {
                        self.prefix_ok &= DATA[i] == b;
                        self.in_data = i + 1 == DATA.len() && self.prefix_ok;
                    } else if self.in_data && !self.have_ts && self.prev == b'T' && b == b'=' {
                        // First `T=` of the event: at the line start or inside JSON text.
                        self.in_ts = true;
                        self.ts = 0;
                    }
                    self.prev = b;
                    self.line_len = self.line_len.saturating_add(1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- clients

async fn connect(src: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: valid fd, pointer to a c_int of the stated size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    socket.bind(SocketAddr::from((src, 0)))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connection `c`'s TCP socket: its source address and target are spread round-robin, a
/// failed connect is retried three times. The caller holds a `gate` permit.
async fn dial(c: usize, args: &Args) -> Option<TcpStream> {
    let src = Ipv4Addr::new(127, 0, 0, 1 + (c % args.sources as usize) as u8);
    let target = args.targets[c % args.targets.len()];
    let mut attempt = 0;
    let stream = loop {
        match connect(src, target).await {
            Ok(s) => break Some(s),
            Err(_) if attempt < 3 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(_) => break None,
        }
    };
    FINISHED_CONNECTING.fetch_add(1, Ordering::Relaxed);
    stream
}

/// Client `i`'s request path (`{i}` → `i mod --resources`).
fn path_of(i: usize, args: &Args) -> String {
    args.path.replace("{i}", &(i % args.resources).to_string())
}

/// The HTTP/1.1 request of client `i`.
fn h1_request(i: usize, args: &Args) -> String {
    let path = path_of(i, args);
    let host = match &args.tls {
        Some(tls) => tls.sni.clone(),
        None => args.targets[i % args.targets.len()].to_string(),
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nUser-Agent: sse-edge-loadgen\r\n\r\n"
    )
}

/// One HTTP/1.1 client over plain TCP, started at its `--connect-rate` slot; a refused
/// request is tried again up to `--retry-refused` times.
async fn client(i: usize, args: Arc<Args>, gate: Arc<Semaphore>, started: Instant) {
    if args.connect_rate > 0.0 {
        let slot = Duration::from_secs_f64(i as f64 / args.connect_rate);
        tokio::time::sleep_until((started + slot).into()).await;
    }
    let mut refused = 0;
    loop {
        let mut response = H1Response::new();
        let end = h1_session(i, &args, &gate, &mut response).await;
        if matches!(end, End::Http) && refused < args.retry_refused {
            refused += 1;
            RETRIED.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(250 << refused.min(4))).await;
            continue;
        }
        return response.sse.end(end);
    }
}

/// One request over plain TCP until the stream ends. It has no read buffer of its own:
/// reads go through a per-thread scratch buffer (`readable()` + `try_read`), so an idle
/// client costs its socket and a few words of parser state.
async fn h1_session(i: usize, args: &Args, gate: &Semaphore, response: &mut H1Response) -> End {
    let stream = {
        let _permit = gate.acquire().await;
        dial(i, args).await
    };
    let Some(mut stream) = stream else {
        return End::Connect;
    };
    if stream
        .write_all(h1_request(i, args).as_bytes())
        .await
        .is_err()
    {
        return End::Connect;
    }
    loop {
        if stream.ready(Interest::READABLE).await.is_err() {
            return End::Read;
        }
        let end = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let read = stream.try_read(&mut scratch[..]);
            response.outcome(read.map(|n| &scratch[..n]))
        });
        if let Some(end) = end {
            return end;
        }
    }
}

// ---------------------------------------------------------------- process sampling

/// utime+stime of a process, in µs.
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the comm field: state is index 0, utime is field 14 overall → index 11.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000 / hz)
}

/// Resident set size in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The parent pid of a process (field 4 of `/proc/PID/stat`).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `roots` and, with `tree`, every live descendant of them (one scan of `/proc`).
fn process_set(roots: &[u32], tree: bool) -> Vec<u32> {
    let mut set: Vec<u32> = roots.to_vec();
    if tree {
        let children: Vec<(u32, u32)> = std::fs::read_dir("/proc")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter_map(|pid| Some((parent_pid(pid)?, pid)))
                    .collect()
            })
            .unwrap_or_default();
        let mut i = 0;
        while i < set.len() {
            let parent = set[i];
            for &(pp, pid) in &children {
                if pp == parent && !set.contains(&pid) {
                    set.push(pid);
                }
            }
            i += 1;
        }
    }
    set
}

/// `f` of every pid, and their sum (`None` when there are no pids or none could be read).
fn sample(pids: &[u32], f: fn(u32) -> Option<u64>) -> (Vec<Option<u64>>, Option<u64>) {
    let each: Vec<Option<u64>> = pids.iter().map(|&p| f(p)).collect();
    let sum = each
        .iter()
        .flatten()
        .fold(None, |acc: Option<u64>, v| Some(acc.unwrap_or(0) + v));
    (each, sum)
}

/// The command name of a process (`/proc/PID/comm`).
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raises RLIMIT_NOFILE to cover the clients (root may raise the hard limit too) and
/// returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    nofile_raise(want);
    // SAFETY: getrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return want;
        }
        lim.rlim_cur
    }
}

fn nofile_raise(want: u64) {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur >= want {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            eprintln!("loadgen: RLIMIT_NOFILE capped at {}", lim.rlim_max);
        }
    }
}

/// bench_upstream's `GET /stats` counters (one short HTTP/1.0-style exchange).
async fn upstream_stats(addr: SocketAddr) -> Option<serde_json::Value> {
    use tokio::io::AsyncReadExt;
    let fetch = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: stats\r\n\r\n")
            .await
            .ok()?;
        let mut resp = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            resp.extend_from_slice(&buf[..n]);
            if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                if let Ok(v) = serde_json::from_slice(&resp[end + 4..]) {
                    return Some(v);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .flatten()
}

// ---------------------------------------------------------------- main

fn errors() -> u64 {
    ERR_CONNECT.load(Ordering::Relaxed)
        + ERR_HTTP.load(Ordering::Relaxed)
        + ERR_EOF.load(Ordering::Relaxed)
        + ERR_READ.load(Ordering::Relaxed)
}

async fn run(args: Args, tls: Option<tokio_rustls::TlsConnector>) -> serde_json::Value {
    let args = Arc::new(args);
    // The processes measured: fixed before the first client connects, so the RSS base and
    // the loaded RSS are sums over the same set.
    let pids = process_set(&args.proxy_pids, args.proxy_tree);
    let (each_base, rss_base) = sample(&pids, rss_kib);
    let self_base = rss_kib(std::process::id());
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let started = Instant::now();
    if args.h2 {
        let per = args.streams_per_conn;
        for c in 0..args.streams.div_ceil(per) {
            let streams = c * per..((c + 1) * per).min(args.streams);
            tokio::spawn(tls_h2::h2_connection(
                c,
                streams,
                args.clone(),
                gate.clone(),
                tls.clone(),
            ));
        }
    } else {
        for i in 0..args.streams {
            match &tls {
                Some(tls) => tokio::spawn(tls_h2::h1_client(
                    i,
                    args.clone(),
                    gate.clone(),
                    tls.clone(),
                )),
                None => tokio::spawn(client(i, args.clone(), gate.clone(), started)),
            };
            if i % 1024 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    // Wait until every client got its response head or failed (deadline 120 s after the
    // last paced start).
    let n = args.streams as u64;
    let pacing = if args.connect_rate > 0.0 {
        args.streams as f64 / args.connect_rate
    } else {
        0.0
    };
    let deadline = started + Duration::from_secs_f64(120.0 + pacing);
    let mut last_report = Instant::now();
    while CONNECTED.load(Ordering::Relaxed) + errors() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "loadgen: {} streams open, {} connect attempts done, {} errors",
                CONNECTED.load(Ordering::Relaxed),
                FINISHED_CONNECTING.load(Ordering::Relaxed),
                errors()
            );
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let (each_loaded, rss_loaded) = sample(&pids, rss_kib);
    let self_loaded = rss_kib(std::process::id());
    let connected_at_start = CONNECTED.load(Ordering::Relaxed);

    let (ev0, hb0, by0, err0) = (
        EVENTS.load(Ordering::Relaxed),
        HEARTBEATS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        errors(),
    );
    let up0 = match args.upstream_stats {
        Some(a) => upstream_stats(a).await,
        None => None,
    };
    let (each_cpu0, cpu0) = sample(&pids, cpu_micros);
    let load_start = loadavg();
    let t0 = Instant::now();
    let trace_file = std::env::var_os("LOADGEN_TRACE");
    TRACING.store(trace_file.is_some(), Ordering::Relaxed);
    RECORDING.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    RECORDING.store(false, Ordering::Relaxed);
    if let Some(file) = trace_file {
        write_trace(&file);
    }
    let window = t0.elapsed().as_secs_f64();
    let (each_cpu1, cpu1) = sample(&pids, cpu_micros);
    let up1 = match args.upstream_stats {
        Some(a) => upstream_stats(a).await,
        None => None,
    };
    let deliveries = EVENTS.load(Ordering::Relaxed) - ev0;
    let heartbeats = HEARTBEATS.load(Ordering::Relaxed) - hb0;
    let bytes = BYTES.load(Ordering::Relaxed) - by0;

    let mut hist = new_histogram();
    for h in HISTOGRAMS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        let _ = hist.add(&*h.lock().unwrap_or_else(PoisonError::into_inner));
    }
    let pct = |q: f64| {
        if hist.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::json!(hist.value_at_quantile(q))
        }
    };
    let cpu_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let per_stream = |base: Option<u64>, loaded: Option<u64>| match (base, loaded) {
        (Some(b), Some(l)) if connected_at_start > 0 => {
            Some((l.saturating_sub(b) as f64 / connected_at_start as f64 * 100.0).round() / 100.0)
        }
        _ => None,
    };
    serde_json::json!({
        "label": args.label,
        "workload": args.workload,
        "transport": args.transport(),
        "connections": if args.h2 { args.streams.div_ceil(args.streams_per_conn) } else { args.streams },
        "targets": args.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "streams": args.streams,
        "connected": connected_at_start,
        "connect_s": (connect_s * 100.0).round() / 100.0,
        "connect_rate": args.connect_rate,
        "rate": args.rate,
        "size": args.size,
        "shared": args.shared,
        "window_s": (window * 100.0).round() / 100.0,
        "deliveries": deliveries,
        "deliveries_per_s": (deliveries as f64 / window).round(),
        "heartbeats": heartbeats,
        "mbytes_per_s": (bytes as f64 / window / 1e4).round() / 100.0,
        "p50_us": pct(0.5),
        "p90_us": pct(0.9),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": if hist.is_empty() { serde_json::Value::Null } else { serde_json::json!(hist.max()) },
        "errors": {
            "connect": ERR_CONNECT.load(Ordering::Relaxed),
            "http": ERR_HTTP.load(Ordering::Relaxed),
            "eof": ERR_EOF.load(Ordering::Relaxed),
            "read": ERR_READ.load(Ordering::Relaxed),
            "refused_retried": RETRIED.load(Ordering::Relaxed),
            "in_window": errors() - err0,
        },
        "proxy": {
            "pid": pids.first(),
            "pids": pids,
            // Per process (several only with more than one --proxy-pid or --proxy-tree).
            "processes": pids.iter().enumerate().map(|(i, &p)| serde_json::json!({
                "pid": p,
                "comm": comm(p),
                "rss_base_kib": each_base[i],
                "rss_loaded_kib": each_loaded[i],
                "cpu_us": match (each_cpu0[i], each_cpu1[i]) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                    _ => None,
                },
            })).collect::<Vec<_>>(),
            "rss_base_kib": rss_base,
            "rss_loaded_kib": rss_loaded,
            "rss_per_stream_kib": per_stream(rss_base, rss_loaded),
            "cpu_us": cpu_us,
            "cpu_util": cpu_us.map(|c| (c as f64 / window / 1e4).round() / 100.0),
            "cpu_us_per_delivery": cpu_us.filter(|_| deliveries > 0)
                .map(|c| (c as f64 / deliveries as f64 * 1000.0).round() / 1000.0),
        },
        "upstream": upstream_summary(up0.as_ref(), up1.as_ref(), window),
        "resources": args.resources,
        "loadgen_rss_per_stream_kib": per_stream(self_base, self_loaded),
        "loadavg_start": load_start,
        "loadavg_end": loadavg(),
    })
}

/// Upstream requests/s over the window and WebSocket socket counts, from two `/stats` reads.
fn upstream_summary(
    a: Option<&serde_json::Value>,
    b: Option<&serde_json::Value>,
    window: f64,
) -> serde_json::Value {
    let (Some(a), Some(b)) = (a, b) else {
        return serde_json::Value::Null;
    };
    let get =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let requests = get(b, "poll_requests").saturating_sub(get(a, "poll_requests"));
    serde_json::json!({
        "poll_requests": requests,
        "poll_requests_per_s": (requests as f64 / window * 100.0).round() / 100.0,
        "ws_connections_total": get(b, "ws_connections"),
        "ws_open": get(b, "ws_open"),
    })
}

fn md_row(v: &serde_json::Value) -> String {
    let f = |p: &str| match v.pointer(p) {
        Some(serde_json::Value::Null) | None => "–".to_string(),
        Some(x) => x.to_string().trim_matches('"').to_string(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        f("/label"),
        f("/connected"),
        f("/rate"),
        f("/deliveries_per_s"),
        f("/p50_us"),
        f("/p99_us"),
        f("/p999_us"),
        f("/errors/in_window"),
        f("/proxy/rss_per_stream_kib"),
        f("/proxy/cpu_us_per_delivery"),
        f("/loadavg_start"),
    )
}

/// Writes the traced deliveries to `file`, sorted by receive time.
fn write_trace(file: &std::ffi::OsStr) {
    let mut trace = std::mem::take(&mut *TRACE.lock().unwrap_or_else(PoisonError::into_inner));
    trace.sort_unstable();
    let text: String = trace
        .iter()
        .map(|(at, lat)| format!("{at} {lat}\n"))
        .collect();
    if let Err(e) = std::fs::write(file, text) {
        eprintln!("loadgen: LOADGEN_TRACE {}: {e}", file.to_string_lossy());
    }
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
    let mut args = args;
    // One socket per stream, or per connection of `--streams-per-conn` streams with --h2.
    let sockets = if args.h2 {
        args.streams.div_ceil(args.streams_per_conn)
    } else {
        args.streams
    };
    let limit = raise_nofile(sockets as u64 + 4096);
    // Keep descriptors for /proc sampling and the runtime; report the cap rather than fail.
    let usable = limit.saturating_sub(128) as usize;
    if sockets > usable && !args.h2 {
        eprintln!(
            "loadgen: RLIMIT_NOFILE is {limit}: capping --streams {} to {usable}",
            args.streams
        );
        args.streams = usable;
    }
    let md = args.md;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let rt = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            std::process::exit(1);
        }
    };
    let tls = match tls_h2::connector(&args) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let result = rt.block_on(run(args, tls));
    println!("{result}");
    if md {
        println!("{}", md_row(&result));
    }
    // Dropping tens of thousands of sockets one by one is slow; the kernel closes them.
    std::process::exit(0);
}

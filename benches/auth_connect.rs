//! Connection acceptance rate with and without authentication: `--concurrency` clients each
//! open a TCP connection, send one `GET` for an SSE route, read the response head, and reset
//! the connection (SO_LINGER 0, so no TIME_WAIT piles up); accepted streams per second over
//! `--duration`, and the proxy's CPU per accepted stream with `--proxy-pid`.
//!
//! ```text
//! cargo bench --bench auth_connect -- keys DIR              # secret, ES256 key, jwks.json
//! cargo bench --bench auth_connect -- serve-auth ADDR       # forward-auth endpoint (200, X-User-Id)
//! cargo bench --bench auth_connect -- run --target ADDR --path /jwt --token hs256:DIR \
//!     [--cookie sid=1] [--concurrency 64] [--duration 10] [--proxy-pid PID] [--label L]
//! ```
//! Run by `benches/auth.sh`, which pins the proxy to one core.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "benchmark secret, not a real one";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("keys") => write_keys(Path::new(&args[1])),
        Some("serve-auth") => runtime.block_on(serve_auth(args[1].parse().expect("ADDR"))),
        Some("run") => runtime.block_on(run(Options::parse(&args[1..]))),
        _ => eprintln!("usage: auth_connect keys DIR | serve-auth ADDR | run --target ADDR ..."),
    }
}

/// `DIR/secret`, `DIR/es256.pem` (private) and `DIR/jwks.json` (its public key, kid `k1`).
fn write_keys(dir: &Path) {
    use base64::Engine;
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("secret"), SECRET).expect("secret");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    std::fs::write(dir.join("es256.pem"), pair.serialize_pem()).expect("pem");
    let point = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-256", "kid": "k1",
        "alg": "ES256", "x": b64(&point[1..33]), "y": b64(&point[33..65]) }] });
    std::fs::write(dir.join("jwks.json"), jwks.to_string()).expect("jwks");
}

/// A forward-auth endpoint that allows everyone (`X-User-Id: bench`); `GET /count` answers
/// how many checks it has answered.
async fn serve_auth(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let checks = Arc::new(AtomicU64::new(0));
    while let Ok((mut stream, _)) = listener.accept().await {
        let checks = checks.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 8192];
            let mut have = 0;
            loop {
                let Ok(n @ 1..) = stream.read(&mut buf[have..]).await else {
                    return;
                };
                have += n;
                while let Some(end) = find_head_end(&buf[..have]) {
                    let count = buf.starts_with(b"GET /count ");
                    buf.copy_within(end..have, 0);
                    have -= end;
                    let body = if count {
                        checks.load(Ordering::Relaxed).to_string()
                    } else {
                        checks.fetch_add(1, Ordering::Relaxed);
                        String::new()
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nX-User-Id: bench\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

struct Options {
    target: SocketAddr,
    path: String,
    headers: String,
    concurrency: usize,
    duration: Duration,
    proxy_pid: Option<u32>,
    label: String,
}

impl Options {
    fn parse(args: &[String]) -> Options {
        let mut o = Options {
            target: "127.0.0.1:18080".parse().expect("addr"),
            path: "/open".into(),
            headers: String::new(),
            concurrency: 64,
            duration: Duration::from_secs(10),
            proxy_pid: None,
            label: "run".into(),
        };
        for pair in args.chunks(2) {
            let value = pair.get(1).cloned().unwrap_or_default();
            match pair[0].as_str() {
                "--target" => o.target = value.parse().expect("--target ADDR"),
                "--path" => o.path = value,
                "--token" => o.headers += &format!("Authorization: Bearer {}\r\n", token(&value)),
                "--cookie" => o.headers += &format!("Cookie: {value}\r\n"),
                "--concurrency" => o.concurrency = value.parse().expect("--concurrency N"),
                "--duration" => o.duration = Duration::from_secs(value.parse().expect("secs")),
                "--proxy-pid" => o.proxy_pid = Some(value.parse().expect("--proxy-pid PID")),
                "--label" => o.label = value,
                other => panic!("unknown option {other}"),
            }
        }
        o
    }
}

/// `hs256:DIR` or `es256:DIR`: a token valid for an hour, signed with the keys in DIR.
fn token(spec: &str) -> String {
    let (kind, dir) = spec.split_once(':').expect("hs256:DIR or es256:DIR");
    let dir = Path::new(dir);
    let claims =
        serde_json::json!({ "sub": "bench", "exp": jsonwebtoken::get_current_timestamp() + 3600 });
    let (header, key) = match kind {
        "hs256" => (
            Header::new(Algorithm::HS256),
            EncodingKey::from_secret(SECRET.as_bytes()),
        ),
        "es256" => {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("k1".into());
            let pem = std::fs::read(dir.join("es256.pem")).expect("es256.pem");
            (header, EncodingKey::from_ec_pem(&pem))
        }
        other => panic!("unknown token kind {other}"),
    };
    encode(&header, &claims, &key.expect("key")).expect("signed")
}

async fn run(options: Options) {
    let options = Arc::new(options);
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let cpu_before = options.proxy_pid.and_then(cpu_micros);
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (options, accepted, refused) = (options.clone(), accepted.clone(), refused.clone());
            tokio::spawn(async move {
                while started.elapsed() < options.duration {
                    match one_stream(&options).await {
                        Some(200) => accepted.fetch_add(1, Ordering::Relaxed),
                        _ => refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = options
        .proxy_pid
        .and_then(cpu_micros)
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let accepted = accepted.load(Ordering::Relaxed);
    let row = serde_json::json!({
        "label": options.label, "path": options.path, "concurrency": options.concurrency,
        "seconds": (seconds * 10.0).round() / 10.0,
        "accepted": accepted, "refused": refused.load(Ordering::Relaxed),
        "accepted_per_s": (accepted as f64 / seconds).round(),
        "proxy_cpu_us_per_stream": cpu.map(|us| (us as f64 / accepted.max(1) as f64 * 10.0).round() / 10.0),
    });
    println!("{row}");
}

/// One stream: connect, request, read the head, reset. The status, or `None` on failure.
async fn one_stream(options: &Options) -> Option<u16> {
    let mut stream = TcpStream::connect(options.target).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{}\r\n",
        options.path, options.headers
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0; 1024];
    let read = async {
        while find_head_end(&head).is_none() {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()??;
    let status = std::str::from_utf8(&head)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok();
    stream.set_zero_linger().ok()?;
    status
}

/// utime+stime of a process, in µs.
fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000 / hz)
}

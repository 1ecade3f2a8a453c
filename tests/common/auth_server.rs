//! A scriptable forward-auth endpoint on 127.0.0.1:0, like the legacy API's `/auth/check`:
//! the test's function maps each request's headers to a status and answer headers; the
//! server counts and records requests, and can be made slow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The answer to one request: status and extra headers.
pub type Answer = (u16, Vec<(&'static str, String)>);

type Decide = dyn Fn(&[(String, String)]) -> Answer + Send + Sync;

/// One request's headers, names lowercased.
type Headers = Vec<(String, String)>;

/// The auth endpoint.
pub struct AuthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Headers>>>,
    delay_ms: Arc<AtomicU64>,
}

impl AuthServer {
    /// Starts a server answering each request with `decide(headers)` (names lowercased).
    pub async fn start(
        decide: impl Fn(&[(String, String)]) -> Answer + Send + Sync + 'static,
    ) -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind auth server");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let decide: Arc<Decide> = Arc::new(decide);
        let (seen, delay) = (requests.clone(), delay_ms.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, delay, decide) = (seen.clone(), delay.clone(), decide.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    while let Some(head) = super::parse_request_head(&mut reader).await {
                        let headers = head.headers;
                        seen.lock().expect("lock").push(headers.clone());
                        let wait = delay.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        if !answer(reader.get_mut(), decide(&headers)).await {
                            return;
                        }
                    }
                });
            }
        });
        AuthServer {
            addr,
            requests,
            delay_ms,
        }
    }

    /// `http://ADDR/path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    /// The value of header `name` in every request received, in order.
    pub fn seen(&self, name: &str) -> Vec<Option<String>> {
        let requests = self.requests.lock().expect("lock");
        requests
            .iter()
            .map(|headers| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }

    /// Makes every answer wait this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

async fn answer(stream: &mut TcpStream, (status, headers): Answer) -> bool {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.is_ok()
}

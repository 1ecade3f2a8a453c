//! A scriptable SSE upstream on 127.0.0.1:0: the test receives every accepted connection
//! (with its request headers) and writes raw bytes to it when it chooses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The upstream server.
pub struct SseUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<UpstreamConn>,
    accepted: Arc<AtomicUsize>,
}

/// One accepted upstream request.
pub struct UpstreamConn {
    /// Request path with query.
    pub path: String,
    /// Request headers, names lowercased.
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
}

impl SseUpstream {
    /// Starts a server that answers every request with a `text/event-stream` head
    /// (`content_type` overrides it) and hands the connection to the test.
    pub async fn start_with(status: u16, content_type: &str) -> SseUpstream {
        Self::start_answering(&[status], content_type).await
    }

    /// Like [`SseUpstream::start_with`], the n-th request answered with `statuses[n]` (the
    /// last one for every request past them).
    pub async fn start_answering(statuses: &[u16], content_type: &str) -> SseUpstream {
        let statuses = statuses.to_vec();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let (tx, connections) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let content_type = content_type.to_string();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let status = statuses[n.min(statuses.len() - 1)];
                let tx = tx.clone();
                let content_type = content_type.clone();
                tokio::spawn(async move {
                    if let Some(conn) = UpstreamConn::accept(stream, status, &content_type).await {
                        let _ = tx.send(conn);
                    }
                });
            }
        });
        SseUpstream {
            addr,
            connections,
            accepted,
        }
    }

    /// A normal SSE upstream.
    pub async fn start() -> SseUpstream {
        Self::start_with(200, "text/event-stream").await
    }

    /// `http://ADDR/path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next accepted connection, within the default deadline.
    pub async fn next_conn(&mut self) -> UpstreamConn {
        tokio::time::timeout(super::WAIT, self.connections.recv())
            .await
            .expect("upstream connection in time")
            .expect("upstream open")
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl UpstreamConn {
    async fn accept(stream: TcpStream, status: u16, content_type: &str) -> Option<UpstreamConn> {
        let mut reader = BufReader::new(stream);
        let super::RequestHead { path, headers } = super::parse_request_head(&mut reader).await?;
        let mut stream = reader.into_inner();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.ok()?;
        Some(UpstreamConn {
            path,
            headers,
            stream,
        })
    }

    /// A request header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Writes raw bytes and flushes.
    pub async fn send(&mut self, raw: &str) {
        self.stream
            .write_all(raw.as_bytes())
            .await
            .expect("upstream write");
        self.stream.flush().await.expect("upstream flush");
    }

    /// Writes raw bytes, returning false when the proxy side is gone.
    pub async fn try_send(&mut self, raw: &str) -> bool {
        self.stream.write_all(raw.as_bytes()).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Waits until the proxy closes this connection (or `limit` passes); true if closed.
    pub async fn closed_within(&mut self, limit: std::time::Duration) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(limit, self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

//! A client connection with its request heads watched on the way in: every byte pingora
//! reads passes the [`HeadScanner`], and a head that takes longer than `header_timeout`
//! ends the connection with `408` (SPEC §4), which pingora has no setting for — its
//! per-read timeouts let a client dribble one byte a minute for ever.
//!
//! Everything else is passed straight through to the connection inside.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::scanner::HeadScanner;

/// What every watched connection shares: the time a head may take and where cuts are counted.
pub struct HeadPolicy {
    /// `limits.header_timeout` of the current configuration, read at each head's start so
    /// a reload applies to the next head; `None`: heads may take any time.
    pub timeout: Box<dyn Fn() -> Option<Duration> + Send + Sync>,
    /// `sse_edge_requests_refused_total{reason="header_timeout"}`
    pub timeouts: IntCounter,
}

impl std::fmt::Debug for HeadPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadPolicy")
            .field("timeout", &(self.timeout)())
            .finish_non_exhaustive()
    }
}

/// The answer to a head that did not arrive in time; the connection closes after it.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 25\r\nConnection: close\r\n\r\nrequest head took too long\n";

/// A client connection whose request heads are watched.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    scanner: HeadScanner,
    /// Running while a head is incomplete: from accept for the first request, from its
    /// first byte for the next ones on a kept-alive connection.
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    /// Set when a response is complete and the next bytes begin a new head.
    next_head: AtomicBool,
    policy: Arc<HeadPolicy>,
}

impl GuardedStream {
    /// Watches `inner` from its first byte.
    pub fn new(inner: Stream, policy: Arc<HeadPolicy>) -> Self {
        GuardedStream {
            inner,
            scanner: HeadScanner::default(),
            deadline: (policy.timeout)().map(|t| Box::pin(tokio::time::sleep(t))),
            timed_out: false,
            next_head: AtomicBool::new(false),
            policy,
        }
    }

    /// Whether the current request's raw request line broke the grammar.
    pub fn bad_request_line(&self) -> bool {
        self.scanner.bad_request_line()
    }

    /// Starts watching for the next request's head (the current one has been answered).
    pub fn expect_next_head(&self) {
        self.next_head.store(true, Ordering::Relaxed);
    }

    /// The connection inside.
    pub fn into_inner(self) -> Stream {
        self.inner
    }

    /// Gives up on a head that took too long: counted, answered `408` if any of it arrived
    /// (best effort: the socket is idle, so the write does not block), and the read ends.
    fn cut(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed_out = true;
        self.deadline = None;
        self.policy.timeouts.inc();
        tracing::debug!("request head not complete within header_timeout: closing");
        if self.scanner.started() {
            let _ = Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Follows bytes just read; the clock of a re-armed head starts at its first byte.
    fn scan(&mut self, bytes: &[u8]) {
        if self.scanner.done() || bytes.is_empty() {
            return;
        }
        let starting = !self.scanner.started();
        self.scanner.feed(bytes);
        if self.scanner.done() {
            self.deadline = None;
        } else if starting && self.deadline.is_none() {
            self.deadline = (self.policy.timeout)().map(|t| Box::pin(tokio::time::sleep(t)));
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.next_head.swap(false, Ordering::Relaxed) {
            this.scanner = HeadScanner::default();
        }
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                return this.cut(cx);
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.scan(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    /// pingora peeks for an h2c preface before reading anything: that wait is bounded by
    /// the head's deadline too.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        let Some(at) = self.deadline.as_ref().map(|d| d.deadline()) else {
            return self.inner.try_peek(buf).await;
        };
        match tokio::time::timeout_at(at, self.inner.try_peek(buf)).await {
            Ok(peeked) => peeked,
            Err(_) => {
                self.timed_out = true;
                self.deadline = None;
                self.policy.timeouts.inc();
                Err(io::ErrorKind::TimedOut.into())
            }
        }
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn guarded(timeout: Duration) -> (GuardedStream, tokio::io::DuplexStream, IntCounter) {
        let (server, client) = tokio::io::duplex(1024);
        let timeouts = IntCounter::new("t", "t").expect("counter");
        let policy = Arc::new(HeadPolicy {
            timeout: Box::new(move || Some(timeout)),
            timeouts: timeouts.clone(),
        });
        (
            GuardedStream::new(Box::new(server), policy),
            client,
            timeouts,
        )
    }

    #[tokio::test]
    async fn a_late_head_is_answered_408_and_reads_end() {
        let (mut stream, mut client, timeouts) = guarded(Duration::from_millis(100));
        client
            .write_all(b"GET / HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut buf = [0; 64];
        assert_eq!(stream.read(&mut buf).await.expect("read"), 16);
        assert_eq!(
            stream.read(&mut buf).await.expect("read"),
            0,
            "cut at the deadline"
        );
        assert_eq!(timeouts.get(), 1);
        let mut answer = vec![0; REQUEST_TIMEOUT.len()];
        client.read_exact(&mut answer).await.expect("answer");
        assert_eq!(answer, REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_complete_head_stops_the_clock_and_the_next_one_starts_it_at_its_first_byte() {
        let (mut stream, mut client, timeouts) = guarded(Duration::from_millis(100));
        client
            .write_all(b"GET /a%20b HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0; 64];
        assert_eq!(stream.read(&mut buf).await.expect("read"), 32);
        assert!(!stream.bad_request_line());
        stream.expect_next_head();
        tokio::time::sleep(Duration::from_millis(200)).await;
        client
            .write_all(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            stream.read(&mut buf).await.expect("read"),
            30,
            "not cut while idle"
        );
        assert!(
            stream.bad_request_line(),
            "the second head judged on its own"
        );
        assert_eq!(timeouts.get(), 0);
    }
}

//! A plain-TCP client connection on a socket of our own, taken from under pingora's stream.
//!
//! pingora's stream buffers every write and times every read and write; a stream route needs
//! none of it once the response header is out. [`TcpClient::take`] duplicates the stream's
//! descriptor into a tokio socket, and the stream (closing only its own descriptor) goes.
//!
//! Watching for the client's close costs nothing per event: a wake-up registered for the
//! socket stays registered until the socket next becomes readable, which also marks it
//! ready — so while it is not marked, the close check is one atomic load, not a new
//! registration.
//!
//! The socket is shared with the stream as its [`Outlet`]: a private stream's feed writes
//! an event straight to it while the writer waits with nothing queued. Everything here
//! therefore works on a shared reference (`try_write`, `try_read` and readiness).

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::stream::Outlet;

/// A client's TCP connection, and whether this task is registered to hear of its close.
pub struct TcpClient {
    socket: Arc<TcpStream>,
    watching: bool,
}

impl Outlet for TcpStream {
    fn try_send(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

impl TcpClient {
    /// A socket of our own on the TCP connection behind `fd` (a Unix socket is refused). The
    /// caller keeps the descriptor's owner alive until this returns.
    pub fn take(fd: RawFd) -> io::Result<TcpClient> {
        // SAFETY: the caller holds the stream that owns `fd` open until after this returns.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = std::net::TcpStream::from(borrowed.try_clone_to_owned()?);
        socket.local_addr()?;
        // Already non-blocking: the flag belongs to the connection, shared by both descriptors.
        let socket = TcpStream::from_std(socket)?;
        Ok(TcpClient {
            socket: Arc::new(socket),
            watching: false,
        })
    }

    /// The socket as the outlet of a private stream.
    pub fn outlet(&self) -> Arc<dyn Outlet> {
        self.socket.clone()
    }

    /// Writes all of `bytes` (a tokio socket has nothing to flush). Most writes go at once:
    /// tried first as they are, without an async write's readiness poll and budget check;
    /// what does not fit waits for the socket.
    pub async fn send(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.socket.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => bytes = &bytes[sent..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    self.socket.writable().await?
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Sends FIN. The stream has let go of the socket as its outlet by then (its
    /// subscription is dropped first); were it still held, dropping the last holder closes
    /// the connection all the same.
    pub async fn shutdown(&mut self) {
        if let Some(socket) = Arc::get_mut(&mut self.socket) {
            let _ = socket.shutdown().await;
        }
    }

    /// Resolves when the client closes its side (stray bytes are discarded). Cancel-safe; it
    /// must be polled from one task only, whose wake-up it keeps registered.
    pub async fn closed(&mut self) {
        std::future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Not marked ready since the last registration: nothing happened, and the
        // registration still stands.
        let untouched = || self.socket.try_io(Interest::READABLE, || Ok(())).is_err();
        if self.watching && untouched() {
            return Poll::Pending;
        }
        let mut discard = [0; 64];
        loop {
            match self.socket.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {
                    self.watching = true;
                    return Poll::Pending;
                }
            }
            match self.socket.try_read(&mut discard) {
                Ok(1..) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Ok(0) | Err(_) => return Poll::Ready(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    use super::TcpClient;

    /// A connected pair: the proxy's side as a `TcpClient` (its original descriptor closed),
    /// and the client's side.
    async fn pair() -> (TcpClient, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let taken = TcpClient::take(accepted.as_raw_fd()).expect("take");
        drop(accepted);
        (taken, client)
    }

    /// Watches `taken` for a close as the writer's loop does: every other wake-up (a nudge)
    /// polls a fresh `closed()`. Yields the number of nudges seen before the close.
    fn watch(
        mut taken: TcpClient,
    ) -> (
        tokio::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<usize>,
    ) {
        let (nudge, mut nudged) = tokio::sync::mpsc::channel(1);
        let watcher = tokio::spawn(async move {
            let mut wake_ups = 0;
            loop {
                tokio::select! {
                    _ = taken.closed() => return wake_ups,
                    Some(()) = nudged.recv() => wake_ups += 1,
                }
            }
        });
        (nudge, watcher)
    }

    async fn nudge_three_times(nudge: &tokio::sync::mpsc::Sender<()>) {
        for _ in 0..3 {
            nudge.send(()).await.expect("nudge");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn writes_reach_the_client_and_its_close_is_heard_after_other_wake_ups() {
        let (mut taken, mut client) = pair().await;
        taken.send(b"data: x\n\n").await.expect("send");
        let mut got = [0; 9];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(
            &got, b"data: x\n\n",
            "the original descriptor's close cut nothing"
        );
        let (nudge, watcher) = watch(taken);
        nudge_three_times(&nudge).await;
        drop(client);
        let wake_ups = timeout(Duration::from_secs(5), watcher).await;
        assert_eq!(wake_ups.expect("the close is heard").expect("watcher"), 3);
    }

    #[tokio::test]
    async fn stray_bytes_are_no_close_and_the_watch_stands_after_them() {
        let (taken, mut client) = pair().await;
        let (nudge, watcher) = watch(taken);
        tokio::time::sleep(Duration::from_millis(20)).await;
        client.write_all(b"stray").await.expect("stray bytes");
        nudge_three_times(&nudge).await;
        assert!(!watcher.is_finished(), "stray bytes are not a close");
        drop(client);
        let wake_ups = timeout(Duration::from_secs(5), watcher).await;
        assert_eq!(wake_ups.expect("the close is heard").expect("watcher"), 3);
    }
}

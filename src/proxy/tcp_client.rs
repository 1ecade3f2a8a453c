//! A plain-TCP client connection on a socket of our own, taken from under pingora's stream.
//!
//! pingora's stream buffers every write and times every read and write; a stream route needs
//! none of it once the response header is out. [`TcpClient::take`] duplicates the stream's
//! descriptor into a tokio socket, and the stream (closing only its own descriptor) goes.
//!
//! A delivery touches one line of this socket's memory. Its writes go to the descriptor as
//! they are; only a send that finds the socket full goes through tokio's readiness, to wait
//! for room. Its close is watched through a waker of its own that marks the
//! socket before it wakes the task: while the mark is not set, the close check is a load
//! from the line the write read, not a look at tokio's readiness (a separately allocated
//! line that every delivery otherwise fetched cold — about 2 % of its CPU time).
//!
//! The socket is shared with the stream as its [`Outlet`]: a private stream's feed writes
//! an event straight to it while the writer waits with nothing queued. Everything here
//! therefore works on a shared reference.

use std::io;
use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use socket2::SockRef;
use tokio::net::TcpStream;

use crate::stream::Outlet;

/// A client's TCP connection, and whether this task is registered to hear of its close.
pub struct TcpClient {
    socket: Arc<ClientSocket>,
    /// What the socket's read readiness wakes: [`CloseWatch`], made once.
    close_watch: Waker,
    watching: bool,
}

/// The socket, with the mark its close watch sets. (`repr(C)`, a line of its own: the mark
/// and the descriptor a send reads come first, together.)
#[repr(C, align(64))]
struct ClientSocket {
    /// Set when the socket's read readiness fired (a close, or stray bytes) since the
    /// watching task last looked.
    stirred: AtomicBool,
    stream: TcpStream,
    /// The task watching for the close.
    watcher: AtomicWaker,
}

/// Wakes the watching task for a stir of the socket, marking it first. It holds the socket
/// weakly: tokio keeps this waker in the socket's own registration.
struct CloseWatch(Weak<ClientSocket>);

impl Wake for CloseWatch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(socket) = self.0.upgrade() {
            socket.stirred.store(true, Ordering::Release);
            socket.watcher.wake();
        }
    }
}

impl Outlet for ClientSocket {
    fn try_send(&self, bytes: &[u8]) -> io::Result<usize> {
        send_now(&self.stream, bytes)
    }
}

/// One send of `bytes` to `stream` as they are, without waiting; `WouldBlock` when the
/// socket is full. Tokio's readiness is neither read nor cleared: a caller that waits for
/// room tries once more through tokio, which then learns the socket is full.
fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    SockRef::from(stream).send_with_flags(bytes, libc::MSG_NOSIGNAL)
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
        let socket = Arc::new(ClientSocket {
            stirred: AtomicBool::new(false),
            stream: TcpStream::from_std(socket)?,
            watcher: AtomicWaker::new(),
        });
        let close_watch = Waker::from(Arc::new(CloseWatch(Arc::downgrade(&socket))));
        Ok(TcpClient {
            socket,
            close_watch,
            watching: false,
        })
    }

    /// The socket as the outlet of a private stream.
    pub fn outlet(&self) -> Arc<dyn Outlet> {
        self.socket.clone()
    }

    /// Writes all of `bytes` (a tokio socket has nothing to flush). Most writes go at once;
    /// what does not fit waits for the socket.
    pub async fn send(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let stream = &self.socket.stream;
        while !bytes.is_empty() {
            let sent = match send_now(stream, bytes) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => stream.try_write(bytes),
                sent => sent,
            };
            match sent {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => bytes = &bytes[sent..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Sends FIN, whoever else still holds the socket (the descriptor is closed when the
    /// last holder lets go: the stream drops its outlet with the subscription).
    pub fn shutdown(&self) {
        let _ = SockRef::from(&self.socket.stream).shutdown(Shutdown::Write);
    }

    /// Ready when the client has closed its side (stray bytes are discarded). It must be
    /// polled from one task only, the one its close watch wakes.
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Not stirred since the last registration: nothing happened, and the registration
        // still stands.
        if self.watching && !self.socket.stirred.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // The task first, then the mark cleared: a stir from now on wakes it.
        self.socket.watcher.register(cx.waker());
        self.socket.stirred.store(false, Ordering::Release);
        let mut watch = Context::from_waker(&self.close_watch);
        let mut discard = [0; 64];
        loop {
            match self.socket.stream.poll_read_ready(&mut watch) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {
                    self.watching = true;
                    return Poll::Pending;
                }
            }
            match self.socket.stream.try_read(&mut discard) {
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
    /// polls the close again. Yields the number of nudges seen before the close.
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
                    _ = std::future::poll_fn(|cx| taken.poll_closed(cx)) => return wake_ups,
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

    /// Fills the socket through the outlet until it takes nothing more; returns the bytes
    /// it took.
    fn fill_through_outlet(taken: &TcpClient) -> usize {
        let outlet = taken.outlet();
        let chunk = [b'x'; 64 * 1024];
        let mut total = 0;
        for _ in 0..10_000 {
            match outlet.try_send(&chunk) {
                Ok(sent) => total += sent,
                Err(err) => {
                    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
                    return total;
                }
            }
        }
        panic!("the socket never filled");
    }

    #[tokio::test]
    async fn a_send_after_the_outlet_filled_the_socket_waits_for_room_and_completes() {
        let (mut taken, mut client) = pair().await;
        let filled = fill_through_outlet(&taken);
        // tokio never saw the socket fill: its readiness still says writable.
        let sender = tokio::spawn(async move {
            taken.send(b"the end").await.expect("send");
            taken
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sender.is_finished(), "nothing fits until the client reads");
        let mut got = vec![0; filled + 7];
        timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("every byte arrives")
            .expect("read");
        assert!(got[..filled].iter().all(|&b| b == b'x'));
        assert_eq!(&got[filled..], b"the end");
        timeout(Duration::from_secs(5), sender)
            .await
            .expect("the send completes")
            .expect("sender");
    }

    #[tokio::test]
    async fn dropping_the_client_closes_the_connection_though_its_close_was_watched() {
        let (taken, mut client) = pair().await;
        let outlet = taken.outlet();
        let (nudge, watcher) = watch(taken);
        nudge_three_times(&nudge).await;
        // The watch stands (its waker sits in the socket's registration); the task goes.
        watcher.abort();
        let _ = watcher.await;
        drop(outlet);
        let mut byte = [0; 1];
        let read = timeout(Duration::from_secs(5), client.read(&mut byte)).await;
        assert_eq!(read.expect("the close arrives").expect("read"), 0, "EOF");
    }

    #[tokio::test]
    async fn shutdown_sends_fin_while_the_outlet_is_still_held() {
        let (taken, mut client) = pair().await;
        let outlet = taken.outlet();
        outlet.try_send(b"last").expect("send");
        taken.shutdown();
        let mut got = Vec::new();
        let read = timeout(Duration::from_secs(5), client.read_to_end(&mut got)).await;
        read.expect("FIN arrives").expect("read");
        assert_eq!(got, b"last");
    }
}

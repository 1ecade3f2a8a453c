//! The upstream socket of a streamed response, the read that drains it, and the read
//! buffer each worker thread lends its streams.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// The upstream connection of a stream.
pub enum Socket {
    /// `http://`: a socket opened by the stream itself, so that waiting for bytes needs no
    /// buffer (readiness), and nothing of pingora's connection wrapper is kept.
    Tcp(TcpStream),
    /// `https://`: a TLS connection from pingora's connector.
    Tls(Stream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(socket) => Pin::new(socket).poll_read(cx, buf),
            Socket::Tls(socket) => Pin::new(socket).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(socket) => Pin::new(socket).poll_write(cx, buf),
            Socket::Tls(socket) => Pin::new(socket).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(socket) => Pin::new(socket).poll_flush(cx),
            Socket::Tls(socket) => Pin::new(socket).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(socket) => Pin::new(socket).poll_shutdown(cx),
            Socket::Tls(socket) => Pin::new(socket).poll_shutdown(cx),
        }
    }
}

/// Reads what `socket` holds into `buf`'s spare room. A read that leaves room unused has
/// drained the socket, so its readiness is cleared too: the next wait is for new bytes,
/// instead of one more read that would only say "would block" (nginx does the same). The
/// readiness cleared is the one seen before the read, so bytes arriving after it still wake
/// the stream.
pub(super) fn read_draining(socket: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut short_read = None;
    let read = socket.try_io(Interest::READABLE, || {
        let n = socket.try_read_buf(buf)?;
        if (1..spare).contains(&n) {
            short_read = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short_read {
        Some(n) => Ok(n),
        None => read,
    }
}

thread_local! {
    /// A read buffer lent to whichever stream on this thread reads next. A stream holds a
    /// buffer only while bytes are there and gives it back before it waits, so one buffer per
    /// thread serves every stream, instead of an allocation and a free per event.
    static SPARE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest buffer kept for lending.
const LARGEST_LENT: usize = 8 * 1024;

/// A buffer to read into: this thread's spare one when it is free, else a new (empty) one.
pub(super) fn borrow_buffer() -> Vec<u8> {
    SPARE_BUFFER.with(Cell::take)
}

/// Gives a buffer whose bytes are all used back for the next read on this thread.
pub(super) fn return_buffer(mut buf: Vec<u8>) {
    if buf.capacity() <= LARGEST_LENT {
        buf.clear();
        SPARE_BUFFER.with(|spare| {
            let held = spare.take();
            spare.set(if held.capacity() >= buf.capacity() {
                held
            } else {
                buf
            });
        });
    }
}

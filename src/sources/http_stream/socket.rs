//! The upstream socket of a streamed response, and the read that drains it.

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

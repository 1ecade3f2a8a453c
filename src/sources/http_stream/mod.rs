//! A streamed upstream response that keeps, once its head is read, only the socket and a
//! small de-chunking state.
//!
//! pingora's client session holds its header buffer, the parsed request and response
//! headers and a body buffer for as long as it lives — for an SSE stream, hours. A stream
//! needs none of it after the head: [`Head::read`] parses the response head with `httparse`
//! and [`Body`] decodes the body (chunked, `Content-Length` or close-delimited) straight off
//! the socket. The read buffer exists only while bytes are in it: on a plain TCP socket the
//! wait for the next bytes holds no buffer at all (it waits for readability).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

use super::SourceError;

mod framing;
mod socket;

use framing::{Chunked, Framing, Step};
pub use socket::Socket;
use socket::{borrow_buffer, read_draining, return_buffer};

/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The first allocation for a response head.
const HEAD_BUF: usize = 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 100;
/// Bytes read at once from the upstream after a read that filled its buffer.
const READ_BUF: usize = 8 * 1024;
/// Bytes read at once otherwise: most reads carry one small event, and a buffer this size
/// comes from the allocator's per-thread cache, where 8 KiB is a slow path every time.
const SMALL_READ_BUF: usize = 1024;
/// Bytes held for a read that must wait with its buffer (TLS, where readability of the
/// socket says nothing about plaintext): small, since most events are small.
const WAITING_READ_BUF: usize = 2 * 1024;

/// The parts of a response head a stream needs.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    framing: Framing,
}

impl Head {
    /// Reads the response head (skipping `1xx` interim responses); returns it with the body
    /// that follows it on `socket`.
    pub async fn read(mut socket: Socket) -> Result<(Head, Body), SourceError> {
        let mut buf = Vec::with_capacity(HEAD_BUF);
        loop {
            if let Some((head, len)) = parse_head(&buf)? {
                buf.drain(..len);
                if (100..200).contains(&head.status) {
                    continue;
                }
                let framing = head.framing;
                return Ok((head, Body::new(socket, framing, buf)));
            }
            if buf.len() >= MAX_HEAD {
                return Err(SourceError::Read("response head too large".into()));
            }
            if buf.len() == buf.capacity() {
                buf.reserve(buf.len().min(MAX_HEAD - buf.len()));
            }
            let read = socket.read_buf(&mut buf).await.map_err(read_error)?;
            if read == 0 {
                return Err(SourceError::Read(
                    "connection closed before the response head".into(),
                ));
            }
        }
    }
}

/// Parses a complete head at the start of `buf`: `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, SourceError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(SourceError::Read(format!("invalid response head: {err}"))),
    };
    let status = response.code.unwrap_or(0);
    let (mut content_type, mut chunked, mut length) = (None, false, None);
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.into_owned());
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides (RFC 9112 §6.3): chunked, or read to the close.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = value.trim().parse::<u64>().ok();
            if parsed.is_none() || length.is_some_and(|known| Some(known) != parsed) {
                return Err(SourceError::Read("invalid Content-Length".into()));
            }
            length = parsed;
        }
    }
    let has_transfer_encoding = response
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let framing = match (status, has_transfer_encoding, length) {
        (204 | 304, _, _) => Framing::Length(0),
        (_, true, _) if chunked => Framing::Chunked(Chunked::SIZE_LINE),
        // Transfer-Encoding overrides Content-Length.
        (_, true, _) => Framing::Close,
        (_, false, Some(length)) => Framing::Length(length),
        (_, false, None) => Framing::Close,
    };
    let head = Head {
        status,
        content_type,
        framing,
    };
    Ok(Some((head, len)))
}

/// A response body read off the socket.
pub struct Body {
    socket: Socket,
    framing: Framing,
    /// Bytes read and not yet used, from `at`; no allocation when there are none.
    buf: Vec<u8>,
    at: usize,
    /// How much the next read of a plain socket asks for.
    read_size: usize,
}

impl Body {
    fn new(socket: Socket, framing: Framing, buf: Vec<u8>) -> Self {
        Body {
            socket,
            framing,
            buf,
            at: 0,
            read_size: SMALL_READ_BUF,
        }
    }

    /// The next piece of the body, valid until the next call; `None` at its end. Polled
    /// rather than awaited, so that a reader keeps its whole state in one place of its
    /// choosing (the `sse` source's `Reading`) instead of in a future per read.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<&[u8]>, SourceError>> {
        loop {
            match self.framing.step(&self.buf[self.at..])? {
                Step::Data { skip, len } => {
                    let start = self.at + skip;
                    self.at = start + len;
                    return Poll::Ready(Ok(Some(&self.buf[start..start + len])));
                }
                Step::End => return Poll::Ready(Ok(None)),
                Step::More => {
                    // Everything at hand is used: give the buffer back before waiting.
                    return_buffer(std::mem::take(&mut self.buf));
                    self.at = 0;
                }
            }
            if ready!(self.poll_fill(cx))? == 0 {
                if self.framing.ends_at_close() {
                    return Poll::Ready(Ok(None));
                }
                return Poll::Ready(Err(SourceError::Read(
                    "connection closed before the end of the body".into(),
                )));
            }
        }
    }

    /// Reads more bytes into the (empty) buffer; `0` when the upstream has closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, SourceError>> {
        match &mut self.socket {
            Socket::Tcp(socket) => poll_read_plain(socket, cx, &mut self.buf, &mut self.read_size),
            Socket::Tls(socket) => {
                self.buf.reserve(WAITING_READ_BUF);
                // The read future holds nothing between polls but its two references.
                pin!(socket.read_buf(&mut self.buf))
                    .poll(cx)
                    .map_err(read_error)
            }
        }
    }
}

/// Reads what a plain socket holds into `buf` (lent for the read, given back when there is
/// nothing), asking for `read_size` bytes and setting it for the next read. A socket marked
/// ready is read at once; only one that is not asks for a wake-up, in the socket's own reader
/// slot (this stream is its only reader). So the wake-up that brings an event costs no
/// readiness poll: the registration made when the last read drained the socket brought it.
fn poll_read_plain(
    socket: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut Vec<u8>,
    read_size: &mut usize,
) -> Poll<Result<usize, SourceError>> {
    loop {
        let marked_ready = socket.try_io(Interest::READABLE, || Ok(())).is_ok();
        if !marked_ready {
            ready!(socket.poll_read_ready(cx)).map_err(read_error)?;
        }
        if buf.capacity() == 0 {
            *buf = borrow_buffer();
        }
        buf.reserve(*read_size);
        match read_draining(socket, buf) {
            Ok(read) => {
                let filled = read >= *read_size;
                *read_size = if filled { READ_BUF } else { SMALL_READ_BUF };
                return Poll::Ready(Ok(read));
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return_buffer(std::mem::take(buf));
            }
            Err(err) => return Poll::Ready(Err(read_error(err))),
        }
    }
}

fn read_error(err: std::io::Error) -> SourceError {
    SourceError::Read(err.to_string())
}

#[cfg(test)]
mod tests;

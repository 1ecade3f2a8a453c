//! The client connection of a stream, taken out of pingora's request so that it can outlive it.
//!
//! pingora keeps a request's whole state machine alive until `request_filter` returns: for a
//! stream that lasts hours, that was about 27 KiB of futures per idle client (the boxed proxy
//! future, the connection task and the filter's own future; see benches/README.md). Once the
//! SSE response header is written, [`ClientConnection::detach`] moves the downstream session
//! out of pingora's [`Session`], leaving a closed placeholder, and the stream runs in a task of
//! its own that holds only what it needs.

use std::future::{poll_fn, Future};
use std::io::Cursor;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::tcp_client::TcpClient;
use crate::stream::{ClientGone, Downstream, Outlet};

/// A client connection the writer streams to, owned by the stream's task.
pub enum ClientConnection {
    /// HTTP/1.x over plain TCP: the bare socket, duplicated out of pingora's stream so that
    /// neither its buffers nor its timing of every read and write sit between an event and
    /// the client. The response is close-delimited (keep-alive is off and there is neither
    /// `Content-Length` nor chunking), so the body is the bytes themselves.
    Tcp(TcpClient),
    /// HTTP/1.x over TLS: pingora's TLS stream, its session let go (its 4 KiB request-head
    /// buffer, the parsed headers are not needed once the header is written).
    Http1(Stream),
    /// HTTP/2: one stream of a connection that pingora keeps driving. (pingora's other
    /// session kinds, subrequests and custom protocols, never reach a stream route.)
    Http2(Box<ServerSession>),
}

impl ClientConnection {
    /// Takes the downstream session out of `session`, whose response header is already written.
    ///
    /// pingora goes on with a placeholder: an HTTP/1.1 session over an empty in-memory stream
    /// with keep-alive off, so finishing it writes nothing and reuses nothing. This works for
    /// HTTP/2 streams too: pingora never reuses an HTTP/2 request's session.
    pub async fn detach(session: &mut Session) -> Self {
        let mut placeholder = ServerSession::new_http1(Box::new(Cursor::new(Vec::new())));
        placeholder.set_keepalive(None);
        let session = std::mem::replace(&mut session.downstream_session, Box::new(placeholder));
        match *session {
            ServerSession::H1(http1) => bare(super::heads::unguarded(http1.into_inner())).await,
            other => ClientConnection::Http2(Box::new(other)),
        }
    }

    /// Ends the response cleanly: a shutdown (FIN, or TLS close_notify first) on HTTP/1.x,
    /// END_STREAM on HTTP/2.
    pub async fn finish(self) {
        match self {
            ClientConnection::Tcp(client) => client.shutdown(),
            ClientConnection::Http1(mut socket) => drop(socket.shutdown().await),
            ClientConnection::Http2(session) => {
                // Boxed: pingora's `finish` future holds the whole session by value, which
                // would otherwise sit in every idle stream's task for its whole life.
                let _ = Box::pin(session.finish()).await;
            }
        }
    }
}

impl Downstream for ClientConnection {
    async fn send(&mut self, bytes: Bytes) -> Result<(), ClientGone> {
        match self {
            ClientConnection::Tcp(client) => client.send(&bytes).await.map_err(|_| ClientGone),
            ClientConnection::Http1(socket) => {
                socket.write_all(&bytes).await.map_err(|_| ClientGone)?;
                socket.flush().await.map_err(|_| ClientGone)
            }
            // Boxed, as below: pingora's HTTP/2 futures are large, and inline they would size
            // every stream's task (HTTP/1 ones too) for them — about 1.5 KiB per idle stream.
            ClientConnection::Http2(session) => Box::pin(session.write_response_body(bytes, false))
                .await
                .map_err(|_| ClientGone),
        }
    }

    fn outlet(&self) -> Option<std::sync::Arc<dyn Outlet>> {
        match self {
            ClientConnection::Tcp(client) => Some(client.outlet()),
            ClientConnection::Http1(_) | ClientConnection::Http2(_) => None,
        }
    }

    fn closed(&mut self) -> impl Future<Output = ()> + Send {
        // Polled in place rather than an `async fn`: this future sits in the writer's state
        // and is looked at on every wake-up, so it is kept to a reference and a tag (an
        // `async` body held the HTTP/1 read's buffer and future inline).
        let mut poll = match self {
            ClientConnection::Tcp(client) => ClosedPoll::Tcp(client),
            ClientConnection::Http1(socket) => ClosedPoll::Http1(socket),
            ClientConnection::Http2(session) => ClosedPoll::Http2(session),
        };
        poll_fn(move |cx| match &mut poll {
            ClosedPoll::Tcp(client) => client.poll_closed(cx),
            ClosedPoll::Http1(socket) => poll_read_to_close(socket, cx),
            ClosedPoll::Http2(session) => poll_h2_closed(session, cx),
        })
    }
}

/// What [`ClientConnection::closed`] polls.
enum ClosedPoll<'a> {
    Tcp(&'a mut TcpClient),
    Http1(&'a mut Stream),
    /// This stream's RST_STREAM (or the connection going away) ends it; the other streams
    /// on the connection are untouched.
    Http2(&'a mut ServerSession),
}

/// Reads `socket` until the client closes it: a GET stream has no request body, so a read
/// only returns when the client closes (or sends stray bytes, which are discarded).
fn poll_read_to_close(socket: &mut Stream, cx: &mut Context<'_>) -> Poll<()> {
    let mut discard = [0; 64];
    loop {
        let mut buf = ReadBuf::new(&mut discard);
        match Pin::new(&mut *socket).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Whether this HTTP/2 stream was reset, or its connection went away. pingora's watch is
/// only a reference to the session, made anew at each poll: nothing is allocated for it,
/// nor kept between the writer's waits (a boxed watch was an allocation and a free per
/// event).
fn poll_h2_closed(session: &mut ServerSession, cx: &mut Context<'_>) -> Poll<()> {
    match session.watch_h2_stream_close() {
        Some(mut watch) => Pin::new(&mut watch).poll(cx).map(drop),
        // Not an HTTP/2 session: pingora's other kinds (subrequests, custom protocols) never
        // reach a stream route. A write to a client that left fails anyway.
        None => Poll::Pending,
    }
}

/// The connection under `stream`: its bare socket when it is plain TCP, else `stream` itself.
async fn bare(mut stream: Stream) -> ClientConnection {
    let Some(fd) = stream
        .as_any()
        .downcast_ref::<L4Stream>()
        .map(|s| s.as_raw_fd())
    else {
        return ClientConnection::Http1(stream);
    };
    // The response header is still in pingora's write buffer.
    if stream.flush().await.is_err() {
        return ClientConnection::Http1(stream);
    }
    // Dropping `stream` then closes only its descriptor: the duplicate keeps the connection.
    match TcpClient::take(fd) {
        Ok(client) => ClientConnection::Tcp(client),
        Err(_) => ClientConnection::Http1(stream),
    }
}

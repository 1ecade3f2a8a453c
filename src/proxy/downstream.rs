//! The client connection of a stream, taken out of pingora's request so that it can outlive it.
//!
//! pingora keeps a request's whole state machine alive until `request_filter` returns: for a
//! stream that lasts hours, that was about 27 KiB of futures per idle client (the boxed proxy
//! future, the connection task and the filter's own future; see benches/README.md). Once the
//! SSE response header is written, [`ClientConnection::detach`] moves the downstream session
//! out of pingora's [`Session`], leaving a closed placeholder, and the stream runs in a task of
//! its own that holds only what it needs.

use std::io::Cursor;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

use crate::stream::Downstream;

/// A client connection the writer streams to, owned by the stream's task.
pub struct ClientConnection {
    session: Box<ServerSession>,
}

impl ClientConnection {
    /// Takes the downstream session out of `session`, whose response header is already written.
    ///
    /// pingora goes on with a placeholder: an HTTP/1.1 session over an empty in-memory stream
    /// with keep-alive off, so finishing it writes nothing and reuses nothing. This works for
    /// HTTP/2 streams too: pingora never reuses an HTTP/2 request's session.
    pub fn detach(session: &mut Session) -> Self {
        let mut placeholder = ServerSession::new_http1(Box::new(Cursor::new(Vec::new())));
        placeholder.set_keepalive(None);
        let session = std::mem::replace(&mut session.downstream_session, Box::new(placeholder));
        ClientConnection { session }
    }

    /// Ends the response cleanly: the terminating chunk and a shutdown on HTTP/1.1,
    /// END_STREAM on HTTP/2.
    pub async fn finish(self) {
        // Boxed: pingora's `finish` future holds the whole session by value (about 3 KiB),
        // which would otherwise sit in every idle stream's task for its whole life.
        let _ = Box::pin(self.session.finish()).await;
    }
}

#[async_trait]
impl Downstream for ClientConnection {
    async fn send(&mut self, bytes: Bytes) -> Result<(), ()> {
        self.session
            .write_response_body(bytes, false)
            .await
            .map_err(|_| ())
    }

    async fn closed(&mut self) {
        // HTTP/2: this stream's RST_STREAM (or the connection going away) ends it; the other
        // streams on the connection are untouched.
        if let Some(stream_closed) = self.session.watch_h2_stream_close() {
            let _ = stream_closed.await;
            return;
        }
        // HTTP/1.1: a GET stream has no request body, so this read only returns when the
        // client closes (or sends stray bytes, which are discarded).
        while let Ok(Some(_)) = self.session.read_body_or_idle(true).await {}
    }
}

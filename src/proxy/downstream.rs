//! The pingora session as the writer's [`Downstream`].

use async_trait::async_trait;
use bytes::Bytes;
use pingora::proxy::Session;

use crate::stream::Downstream;

/// A client connection the writer streams to.
pub struct SessionDownstream<'a> {
    session: &'a mut Session,
}

impl<'a> SessionDownstream<'a> {
    /// Wraps a session whose response header is already written.
    pub fn new(session: &'a mut Session) -> Self {
        SessionDownstream { session }
    }
}

#[async_trait]
impl Downstream for SessionDownstream<'_> {
    async fn send(&mut self, bytes: Bytes) -> Result<(), ()> {
        self.session
            .write_response_body(Some(bytes), false)
            .await
            .map_err(|_| ())
    }

    async fn closed(&mut self) {
        let downstream = &mut self.session.downstream_session;
        // HTTP/2: this stream's RST_STREAM (or the connection going away) ends it; the other
        // streams on the connection are untouched.
        if let Some(stream_closed) = downstream.watch_h2_stream_close() {
            let _ = stream_closed.await;
            return;
        }
        // HTTP/1.1: a GET stream has no request body, so this read only returns when the
        // client closes (or sends stray bytes, which are discarded).
        while let Ok(Some(_)) = downstream.read_body_or_idle(true).await {}
    }
}

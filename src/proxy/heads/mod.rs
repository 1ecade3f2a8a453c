//! Request heads, watched below pingora: each HTTP/1.x connection is wrapped in a
//! [`GuardedStream`] before pingora reads from it, so the raw request line can be judged
//! (pingora rewrites a bad one) and a head that arrives too slowly can be answered `408`.
//!
//! ```text
//! accept ─► HeadGuard::process_new ─► GuardedStream(connection) ─► pingora's HTTP/1.x
//!              (h2 by ALPN: unwrapped)     │ HeadScanner, deadline      session ─► EdgeProxy
//!                                          │
//!   request_filter: bad_request_line(session) ─► 400 ──┘  logging: next_request(session)
//! ```
//!
//! pingora does not pipeline by default (bytes after a request end the connection), so on
//! a kept-alive connection the next head starts with the first byte read after a response
//! whose request body was read to its end; [`next_request`] marks that moment.

mod scanner;
mod stream;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::Session;
use pingora::server::ShutdownWatch;

pub use stream::{GuardedStream, HeadPolicy};

/// A pingora application behind the head guard: connections reach it wrapped.
pub struct HeadGuard<A> {
    inner: Arc<A>,
    policy: Arc<HeadPolicy>,
}

impl<A> HeadGuard<A> {
    /// Guards `inner`'s connections with `policy`.
    pub fn new(inner: A, policy: HeadPolicy) -> Self {
        HeadGuard {
            inner: Arc::new(inner),
            policy: Arc::new(policy),
        }
    }

    /// The application inside, to set its options before the server starts (`None` once
    /// it is running).
    pub fn inner_mut(&mut self) -> Option<&mut A> {
        Arc::get_mut(&mut self.inner)
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadGuard<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // HTTP/2 (chosen by ALPN) has no request line and frames its own headers.
        let stream: Stream = if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            stream
        } else {
            Box::new(GuardedStream::new(stream, self.policy.clone()))
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// The guard of the session's connection, when it is HTTP/1.x.
fn guard(session: &Session) -> Option<&GuardedStream> {
    let stream = session.as_downstream().stream()?;
    stream.as_ref().as_any().downcast_ref::<GuardedStream>()
}

/// Whether the request's raw request line had a space or control byte in its target (or
/// was otherwise malformed) before pingora rewrote it.
pub fn bad_request_line(session: &Session) -> bool {
    guard(session).is_some_and(GuardedStream::bad_request_line)
}

/// Called when a request is finished: the connection's next bytes begin a new head. A
/// connection whose request body was not read to its end is not reused — pingora would
/// drain the rest, and those bytes are not a head.
pub fn next_request(session: &mut Session) {
    // Only a guarded session has read a request (a stream route leaves pingora a blank
    // placeholder, whose body state must not be asked for).
    if guard(session).is_none() {
        return;
    }
    if !session.as_downstream_mut().is_body_done() {
        session.set_keepalive(None);
    } else if let Some(guard) = guard(session) {
        guard.expect_next_head();
    }
}

/// `stream` without its guard, for a stream route that keeps the connection for hours
/// once its head is answered.
pub fn unguarded(stream: Stream) -> Stream {
    if !stream.as_ref().as_any().is::<GuardedStream>() {
        return stream;
    }
    match stream.into_any().downcast::<GuardedStream>() {
        Ok(guarded) => guarded.into_inner(),
        Err(_) => unreachable!("checked to be a GuardedStream"),
    }
}

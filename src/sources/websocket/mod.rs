//! The `websocket` kind: one upstream socket per stream, each message one event.
//!
//! ```text
//!   connect (size limits, headers, subprotocol) ─► send `subscribe`
//!        ▲                                              │
//!   backoff ◄── upstream_failed(reason) ◄── close / error / ping timeout
//!                                                       │
//!   text ─► Mapping::text ─► skip recent ids ─► Publisher::publish
//!   binary ─► base64 event, or dropped and counted
//! ```
//!
//! The socket lives as long as the stream: the hub drops the feed after the last subscriber
//! has left (plus `linger`), which drops the socket.

pub mod mapping;
mod tcp;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as SocketLimits;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::Connector;

use super::failover::{self, Failover, Target};
use super::reconnect::{self, Attempt, Backoff, Failure, Next};
use super::{ClientRequest, Prepare, SourceError, StreamKind, UpstreamRequest};
use crate::config::WebSocketRoute;
use crate::pool::Pool;
use crate::routes::Captures;
use crate::stream::{Feed, Publisher};
use mapping::{Mapping, RecentIds};

/// How long the TCP connect plus TLS and upgrade handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many upstream ids are remembered to drop repeats after a reconnect.
const RECENT_IDS: usize = 1024;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `websocket:` route, ready to start streams.
pub struct WebSocketKind {
    route: Arc<WebSocketRoute>,
    /// The client configuration for a `ca_file`, loaded once; `Ok(None)`: the system roots.
    tls: Result<Option<Arc<rustls::ClientConfig>>, String>,
    pool: Arc<Pool>,
}

impl WebSocketKind {
    /// Prepares `route`, loading its `ca_file` once and building its pool.
    pub fn new(route: &WebSocketRoute, with: &Prepare) -> Self {
        let tls = route
            .ca_file
            .as_deref()
            .map(crate::certs::websocket_client_config)
            .transpose();
        if let Err(reason) = &tls {
            tracing::error!(url = %route.url.first(), %reason, "websocket upstream CA unusable");
        }
        let ca_file = route.ca_file.as_deref();
        WebSocketKind {
            pool: failover::pool(&route.url, ca_file, with.metrics, with.checks),
            route: Arc::new(route.clone()),
            tls,
        }
    }
}

impl StreamKind for WebSocketKind {
    fn request(&self, client: &ClientRequest) -> UpstreamRequest {
        UpstreamRequest::new(self.route.url.first(), &self.route.headers, client)
    }

    fn start(
        &self,
        upstream: UpstreamRequest,
        captures: &Captures,
        _resume: Option<String>,
        out: Publisher,
    ) -> Feed {
        let failover = Failover::new(self.pool.clone(), &self.route.url.urls, &upstream, captures);
        let source = WebSocketSource {
            request: upstream,
            subscribe: self.route.subscribe.as_ref().map(|s| s.fill(captures)),
            mapping: Mapping::new(&self.route.mapping),
            recent: RecentIds::new(RECENT_IDS),
            route: self.route.clone(),
            tls: self.tls.clone(),
        };
        Box::pin(reconnect::run(source, out, Backoff::reconnect(), failover))
    }
}

/// Reads one upstream WebSocket and publishes its messages.
struct WebSocketSource {
    request: UpstreamRequest,
    route: Arc<WebSocketRoute>,
    tls: Result<Option<Arc<rustls::ClientConfig>>, String>,
    subscribe: Option<String>,
    mapping: Mapping,
    recent: RecentIds,
}

impl WebSocketSource {
    /// Opens the socket at `url` with the route's size limits, headers and subprotocol, and
    /// sends the `subscribe` message.
    async fn connect(&self, url: &str) -> Result<Socket, SourceError> {
        let tls = self.tls.clone().map_err(SourceError::CaFile)?;
        let mut request = url
            .into_client_request()
            .map_err(|err| SourceError::Url(err.to_string()))?;
        let headers = request.headers_mut();
        for (name, value) in &self.request.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => tracing::debug!(header = %name, "skipping unusable upstream header"),
            }
        }
        if let Some(protocol) = &self.route.subprotocol {
            let value = HeaderValue::from_str(protocol)
                .map_err(|_| SourceError::Url(format!("subprotocol {protocol:?}")))?;
            headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        let max = self.route.max_message_bytes;
        let limits = SocketLimits::default()
            .max_frame_size(Some(max))
            .max_message_size(Some(max));
        let connector = tls.map(Connector::Rustls);
        let connecting = async {
            let socket = tcp::connect(&request).await?;
            tokio_tungstenite::client_async_tls_with_config(
                request,
                socket,
                Some(limits),
                connector,
            )
            .await
        };
        let mut socket = match timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((socket, _response))) => socket,
            Ok(Err(err)) => return Err(connect_error(err)),
            Err(_) => return Err(SourceError::ConnectTimeout),
        };
        if let Some(text) = &self.subscribe {
            match timeout(CONNECT_TIMEOUT, socket.send(Message::text(text.as_str()))).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return Err(read_error(err)),
                Err(_) => return Err(SourceError::SubscribeTimeout),
            }
        }
        Ok(socket)
    }

    /// Publishes one message; returns whether it counts as delivered traffic.
    fn publish(&mut self, message: Message, out: &Publisher) -> bool {
        match message {
            Message::Text(text) => {
                let event = self.mapping.text(text.as_str());
                if let Some(id) = &event.id {
                    if !self.recent.insert(id) {
                        tracing::debug!(id = %id, "skipping an id already published");
                        return true;
                    }
                }
                out.publish(event);
                true
            }
            Message::Binary(bytes) => {
                match self.mapping.binary(&bytes) {
                    Some(event) => out.publish(event),
                    None => out.count_error("binary_dropped"),
                }
                true
            }
            // Pings are answered by tungstenite as we keep reading; a close is answered
            // too, and the stream then ends.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => false,
        }
    }
}

#[async_trait]
impl Attempt for WebSocketSource {
    async fn attempt(&mut self, target: &Target, out: &Publisher) -> Result<Next, Failure> {
        let mut socket = self.connect(target.url()).await?;
        out.metrics().upstream_connects.inc();
        reconnect::recovered(out, target);
        let mut keepalive = Keepalive::new(self.route.ping_interval);
        let mut delivered = false;
        loop {
            let message = keepalive
                .next(&mut socket)
                .await
                .map_err(|error| Failure::after(error, delivered))?;
            delivered |= self.publish(message, out);
        }
    }
}

/// Reads the socket, pinging it after `ping_interval` of silence; no pong (or any traffic)
/// within another interval means the upstream is dead.
struct Keepalive {
    interval: Option<Duration>,
    last_traffic: Instant,
    ping_sent: Option<Instant>,
}

impl Keepalive {
    fn new(interval: Option<Duration>) -> Self {
        Keepalive {
            interval,
            last_traffic: Instant::now(),
            ping_sent: None,
        }
    }

    /// The next message, or why the socket is finished.
    async fn next(&mut self, socket: &mut Socket) -> Result<Message, SourceError> {
        loop {
            let next = match self.interval {
                None => Ok(socket.next().await),
                Some(interval) => {
                    let deadline = self.ping_sent.unwrap_or(self.last_traffic) + interval;
                    timeout_at(deadline, socket.next()).await
                }
            };
            match next {
                Ok(None) => return Err(SourceError::Closed),
                Ok(Some(Err(err))) => return Err(read_error(err)),
                Ok(Some(Ok(message))) => {
                    self.last_traffic = Instant::now();
                    self.ping_sent = None;
                    return Ok(message);
                }
                Err(_) if self.ping_sent.is_some() => return Err(SourceError::PingTimeout),
                Err(_) => self.ping(socket).await?,
            }
        }
    }

    async fn ping(&mut self, socket: &mut Socket) -> Result<(), SourceError> {
        let interval = self.interval.unwrap_or(CONNECT_TIMEOUT);
        // An upstream that stopped reading can block the write itself.
        match timeout(interval, socket.send(Message::Ping(Default::default()))).await {
            Ok(Ok(())) => {
                self.ping_sent = Some(Instant::now());
                Ok(())
            }
            Ok(Err(err)) => Err(read_error(err)),
            Err(_) => Err(SourceError::PingTimeout),
        }
    }
}

/// A failed connect, by kind.
fn connect_error(err: WsError) -> SourceError {
    match err {
        WsError::Http(response) => SourceError::Status(response.status().as_u16()),
        WsError::Tls(err) => SourceError::Tls(err.to_string()),
        WsError::Url(_) | WsError::HttpFormat(_) => SourceError::Url(err.to_string()),
        // tokio-rustls reports a failed handshake (e.g. an untrusted certificate) as I/O.
        WsError::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
            SourceError::Tls(io.to_string())
        }
        WsError::Io(io) => SourceError::Connect(io.to_string()),
        err => SourceError::Handshake(err.to_string()),
    }
}

/// An error on an open socket, by kind.
fn read_error(err: WsError) -> SourceError {
    match err {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => SourceError::Closed,
        WsError::Capacity(_) => SourceError::MessageTooLarge,
        WsError::Utf8(_) => SourceError::InvalidUtf8,
        WsError::Protocol(_) | WsError::AttackAttempt => SourceError::Protocol(err.to_string()),
        WsError::Io(io) => SourceError::Io(io.to_string()),
        err => SourceError::Other(err.to_string()),
    }
}

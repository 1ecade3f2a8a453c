//! The `websocket` source: one upstream socket per stream, each message one event.
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
//! The socket lives as long as the stream: the hub aborts [`Source::run`] after the last
//! subscriber has left (plus `linger`), which drops the socket.

mod mapping;
mod tls;

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

use super::{Backoff, Source, UpstreamRequest};
use crate::config::WebSocketSource as WebSocketConfig;
use crate::stream::Publisher;
use mapping::{Mapping, RecentIds};

/// How long the TCP connect plus TLS and upgrade handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many upstream ids are remembered to drop repeats after a reconnect.
const RECENT_IDS: usize = 1024;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads one upstream WebSocket and publishes its messages.
pub struct WebSocketSource {
    request: UpstreamRequest,
    config: WebSocketConfig,
    subscribe: Option<String>,
    mapping: Mapping,
    recent: RecentIds,
}

impl WebSocketSource {
    /// A source for `request`, sending `subscribe` after every connect.
    pub fn new(
        request: UpstreamRequest,
        config: WebSocketConfig,
        subscribe: Option<String>,
    ) -> Self {
        WebSocketSource {
            request,
            mapping: Mapping::new(&config),
            config,
            subscribe,
            recent: RecentIds::new(RECENT_IDS),
        }
    }

    /// Opens the socket with the route's size limits, headers and subprotocol; `tls` is the
    /// client configuration for a `ca_file`, else the system roots are used.
    async fn connect(
        &self,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Socket, &'static str> {
        let mut request = self
            .request
            .url
            .as_str()
            .into_client_request()
            .map_err(|_| "url")?;
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
        if let Some(protocol) = &self.config.subprotocol {
            let value = HeaderValue::from_str(protocol).map_err(|_| "subprotocol")?;
            headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        let max = usize::try_from(self.config.max_message_bytes.as_u64()).unwrap_or(usize::MAX);
        let limits = SocketLimits::default()
            .max_frame_size(Some(max))
            .max_message_size(Some(max));
        let connecting = async {
            match tls {
                Some(tls) => {
                    let connector = Connector::Rustls(tls.clone());
                    tokio_tungstenite::connect_async_tls_with_config(
                        request,
                        Some(limits),
                        true,
                        Some(connector),
                    )
                    .await
                }
                None => {
                    tokio_tungstenite::connect_async_with_config(request, Some(limits), true).await
                }
            }
        };
        match timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((socket, _response))) => Ok(socket),
            Ok(Err(err)) => {
                tracing::debug!(url = %self.request.url, error = %err, "websocket connect failed");
                Err(connect_reason(&err))
            }
            Err(_) => Err("connect_timeout"),
        }
    }

    /// One connection: returns why it ended and whether it delivered any message.
    async fn stream_once(
        &mut self,
        out: &Publisher,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> (&'static str, bool) {
        let mut socket = match self.connect(tls).await {
            Ok(socket) => socket,
            Err(reason) => return (reason, false),
        };
        out.metrics().upstream_connects.inc();
        out.upstream_recovered();
        if let Some(text) = &self.subscribe {
            match timeout(CONNECT_TIMEOUT, socket.send(Message::text(text.as_str()))).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => return (read_reason(&err), false),
                Err(_) => return ("subscribe_timeout", false),
            }
        }
        let interval = self.config.ping_interval;
        let mut delivered = false;
        let mut last_traffic = Instant::now();
        let mut ping_sent: Option<Instant> = None;
        loop {
            // `ping_interval: 0s` turns the keepalive off.
            let next = if interval.is_zero() {
                Ok(socket.next().await)
            } else {
                timeout_at(ping_sent.unwrap_or(last_traffic) + interval, socket.next()).await
            };
            let message = match next {
                Err(_) if ping_sent.is_some() => return ("ping_timeout", delivered),
                Err(_) => {
                    // An upstream that stopped reading can block the write itself.
                    let ping = socket.send(Message::Ping(Default::default()));
                    match timeout(interval, ping).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => return (read_reason(&err), delivered),
                        Err(_) => return ("ping_timeout", delivered),
                    }
                    ping_sent = Some(Instant::now());
                    continue;
                }
                Ok(None) => return ("closed", delivered),
                Ok(Some(Err(err))) => return (read_reason(&err), delivered),
                Ok(Some(Ok(message))) => message,
            };
            last_traffic = Instant::now();
            ping_sent = None;
            match message {
                Message::Text(text) => {
                    delivered = true;
                    let event = self.mapping.text(text.as_str());
                    if let Some(id) = &event.id {
                        if !self.recent.insert(id) {
                            tracing::debug!(id = %id, "skipping an id already published");
                            continue;
                        }
                    }
                    out.publish(event);
                }
                Message::Binary(bytes) => {
                    delivered = true;
                    match self.mapping.binary(&bytes) {
                        Some(event) => out.publish(event),
                        None => out.metrics().upstream_error("binary_dropped"),
                    }
                }
                // Pings are answered by tungstenite as we keep reading; a close is answered
                // too, and the stream then ends.
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// A bounded metric label for a failed connect.
fn connect_reason(err: &WsError) -> &'static str {
    match err {
        WsError::Http(_) => "status",
        WsError::Tls(_) => "tls",
        WsError::Url(_) | WsError::HttpFormat(_) => "url",
        // tokio-rustls reports a failed handshake (e.g. an untrusted certificate) as I/O.
        WsError::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => "tls",
        WsError::Io(_) => "connect",
        _ => "handshake",
    }
}

/// A bounded metric label for an error on an open socket.
fn read_reason(err: &WsError) -> &'static str {
    match err {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => "closed",
        WsError::Capacity(_) => "message_too_large",
        WsError::Utf8(_) => "invalid_utf8",
        WsError::Protocol(_) | WsError::AttackAttempt => "protocol",
        WsError::Io(_) => "io",
        _ => "other",
    }
}

#[async_trait]
impl Source for WebSocketSource {
    async fn run(mut self: Box<Self>, out: Publisher) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let tls = match self.config.ca_file.as_deref().map(tls::client_config) {
            Some(Ok(config)) => Some(config),
            Some(Err(err)) => {
                // Nothing can connect without the CA: report it and stay failed, backing off.
                tracing::error!(url = %self.request.url, error = %err, "websocket upstream CA");
                loop {
                    out.upstream_failed("ca_file");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
            None => None,
        };
        loop {
            let (reason, delivered) = self.stream_once(&out, tls.as_ref()).await;
            if delivered {
                backoff.reset();
            }
            tracing::debug!(url = %self.request.url, reason, "upstream socket ended");
            out.upstream_failed(reason);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

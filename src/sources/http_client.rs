//! A small HTTP/1.1 client for upstream requests. Requests that end (polls) go through
//! pingora's connector and client session, so TLS, timeouts and connection reuse behave like
//! the rest of the proxy; streams ([`HttpClient::stream`]) keep only a socket once the head
//! is read — their own TCP connection for `http://`, pingora's TLS connection for `https://`
//! (see [`super::http_stream`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::protocols::http::v1::client::http_req_header_to_wire;
use pingora::upstreams::peer::HttpPeer;
use tokio::io::AsyncWriteExt;

use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::Stream;
use pingora::upstreams::peer::Peer;
use tokio::net::TcpStream;

use super::http_stream::{Body, Head, Socket};
use super::SourceError;
use crate::certs::CaType;

/// Shared upstream connector. Clients made by [`HttpClient::with_ca`] share its
/// connection pool and differ only in whom they trust for `https://` upstreams.
pub struct HttpClient {
    connector: Arc<Connector>,
    ca: Option<Arc<CaType>>,
}

/// An upstream response whose body is read chunk by chunk.
pub struct Response {
    session: HttpSession,
    peer: HttpPeer,
    connector: Arc<Connector>,
    /// The status code.
    pub status: u16,
}

/// How long connecting to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a pooled upstream connection may sit idle before it is closed.
const POOL_IDLE: Duration = Duration::from_secs(30);

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient {
            connector: Arc::new(Connector::new(None)),
            ca: None,
        }
    }
}

impl HttpClient {
    /// A client on the same connection pool that trusts `ca` (system roots plus a route's
    /// `ca_file`, from [`crate::certs::upstream_ca`]) for `https://` upstreams.
    fn with_ca(&self, ca: Arc<CaType>) -> HttpClient {
        HttpClient {
            connector: self.connector.clone(),
            ca: Some(ca),
        }
    }

    /// The client for a route: this one, or — when the route sets `ca_file` — a view of it
    /// on the same pool that also trusts that file, loaded now. The file passed validation
    /// at load; should it have become unusable since, the error is logged and the route
    /// keeps the system roots (its `https://` upstream then fails verification, counted).
    pub fn for_ca_file(self: &Arc<Self>, ca_file: Option<&str>) -> Arc<HttpClient> {
        let Some(path) = ca_file else {
            return self.clone();
        };
        match crate::certs::upstream_ca(path) {
            Ok(ca) => Arc::new(self.with_ca(ca)),
            Err(reason) => {
                tracing::error!(ca_file = path, %reason, "ca_file unusable");
                self.clone()
            }
        }
    }

    /// Sends `GET url` with `headers`; `read_timeout` bounds each read (`None` for streams).
    pub async fn get(
        &self,
        url: &str,
        headers: &[(String, String)],
        read_timeout: Option<Duration>,
    ) -> Result<Response, SourceError> {
        // Boxed: resolving, connecting and the TLS handshake make a 10 KiB future, which
        // would otherwise stay inside every source's future for as long as its stream lives.
        Box::pin(self.send_get(url, headers, read_timeout)).await
    }

    /// Sends `GET url` with `headers` for a response that streams for a long time, and
    /// reads its head: from then on only the socket and a de-chunking state are held
    /// ([`super::http_stream`]), not pingora's client session.
    pub async fn stream(
        &self,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<(Head, Body), SourceError> {
        // Boxed like `get`: the connect, TLS and head futures are large and short-lived.
        Box::pin(self.send_stream(url, headers)).await
    }

    async fn send_stream(
        &self,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<(Head, Body), SourceError> {
        // Only the wire bytes and a boxed peer are kept across the connect: in a burst of
        // new streams, every connect in flight holds this future.
        let (peer, wire) = {
            let (peer, request) = self.prepare(url, headers, None).await?;
            let wire = http_req_header_to_wire(&request)
                .ok_or_else(|| SourceError::Resolve("request cannot be written".into()))?;
            (Box::new(peer), wire)
        };
        let mut socket = if peer.is_tls() {
            Socket::Tls(Box::pin(self.tls_socket(peer)).await?)
        } else {
            let addr = inet_address(&peer)?;
            drop(peer);
            Socket::Tcp(tcp_socket(addr).await?)
        };
        let sent = async {
            socket.write_all(&wire).await?;
            socket.flush().await
        };
        sent.await
            .map_err(|err| SourceError::Connect(format!("writing the request: {err}")))?;
        drop(wire);
        Head::read(socket).await
    }

    /// A TLS connection to `peer` from pingora's connector (its trust store and session
    /// cache); pingora's client session around it is dropped at once.
    async fn tls_socket(&self, peer: Box<HttpPeer>) -> Result<Stream, SourceError> {
        let (session, _reused) = self
            .connector
            .get_http_session(&*peer)
            .await
            .map_err(connect_error)?;
        match session {
            HttpSession::H1(session) => Ok(session.into_inner()),
            _ => Err(SourceError::Connect("the upstream chose HTTP/2".into())),
        }
    }

    async fn send_get(
        &self,
        url: &str,
        headers: &[(String, String)],
        read_timeout: Option<Duration>,
    ) -> Result<Response, SourceError> {
        let (peer, request) = self.prepare(url, headers, read_timeout).await?;
        let (mut session, _reused) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(connect_error)?;
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(connect_error)?;
        session.finish_request_body().await.map_err(connect_error)?;
        session.read_response_header().await.map_err(read_error)?;
        let status = session.response_header().map_or(0, |h| h.status.as_u16());
        Ok(Response {
            session,
            peer,
            connector: self.connector.clone(),
            status,
        })
    }

    /// The peer (resolved now) and the request header of `GET url`.
    async fn prepare(
        &self,
        url: &str,
        headers: &[(String, String)],
        read_timeout: Option<Duration>,
    ) -> Result<(HttpPeer, RequestHeader), SourceError> {
        let unusable = |what: &str| SourceError::Resolve(format!("{what} in the URL"));
        let uri: http::Uri = url.parse().map_err(|_| unusable("invalid syntax"))?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri.host().ok_or_else(|| unusable("no host"))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| SourceError::Resolve(format!("{host}: {err}")))?
            .next()
            .ok_or_else(|| SourceError::Resolve(format!("{host}: no address")))?;
        let mut peer = HttpPeer::new(addr, tls, host.to_string());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        peer.options.read_timeout = read_timeout;
        peer.options.tcp_keepalive = Some(crate::keepalive::settings());
        peer.options.ca = self.ca.clone();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = RequestHeader::build("GET", path.as_bytes(), None)
            .map_err(|err| SourceError::Resolve(err.to_string()))?;
        let authority = uri.authority().map_or(host, |a| a.as_str());
        let insert = |request: &mut RequestHeader, name: &str, value: &str| {
            request
                .insert_header(name.to_string(), value)
                .map_err(|_| SourceError::Resolve(format!("header {name} cannot be sent")))
        };
        insert(&mut request, "Host", authority)?;
        for (name, value) in headers {
            insert(&mut request, name, value)?;
        }
        Ok((peer, request))
    }
}

impl Response {
    /// A response header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.session
            .response_header()?
            .headers
            .get(name)?
            .to_str()
            .ok()
    }

    /// The next body chunk; `None` at the end of the body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        self.session.read_response_body().await.map_err(read_error)
    }

    /// Returns the connection to the pool when the body has been read to its end, so the
    /// next request to this upstream (the next poll) skips the TCP and TLS handshakes.
    /// A response dropped without `finish` closes its connection.
    pub async fn finish(mut self) {
        if let Ok(None) = self.session.read_response_body().await {
            self.connector
                .release_http_session(self.session, &self.peer, Some(POOL_IDLE))
                .await;
        }
    }
}

/// The TCP address of `peer`.
fn inet_address(peer: &HttpPeer) -> Result<std::net::SocketAddr, SourceError> {
    match peer.address() {
        SocketAddr::Inet(addr) => Ok(*addr),
        SocketAddr::Unix(_) => Err(SourceError::Connect("not a TCP address".into())),
    }
}

/// A plain TCP connection to `addr`, with the connect timeout and TCP keepalive that
/// pingora's connector applies.
async fn tcp_socket(addr: std::net::SocketAddr) -> Result<TcpStream, SourceError> {
    let socket = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| SourceError::Connect(format!("{addr}: connect timed out")))?
        .map_err(|err| SourceError::Connect(format!("{addr}: {err}")))?;
    crate::keepalive::enable(&socket).map_err(connect_error)?;
    Ok(socket)
}

/// pingora's error for a failed connect, with its cause (e.g. the OS error).
fn connect_error(err: Box<pingora::Error>) -> SourceError {
    SourceError::Connect(err.to_string())
}

/// pingora's error for a failed read, with its cause.
fn read_error(err: Box<pingora::Error>) -> SourceError {
    SourceError::Read(err.to_string())
}

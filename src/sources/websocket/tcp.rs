//! The TCP socket under an upstream WebSocket. tokio-tungstenite's `connect_async` opens
//! its own socket with no way to set options on it, so the source opens it here — with the
//! proxy's TCP keepalive, so an upstream host that vanishes is noticed even when no
//! `ping_interval` is set, and without Nagle's delay, as tokio-tungstenite did — and hands
//! it to the WebSocket handshake.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Connects to the host and port of a `ws://` or `wss://` request.
pub async fn connect(request: &Request) -> Result<TcpStream, WsError> {
    let uri = request.uri();
    let host = uri.host().ok_or(WsError::Url(UrlError::NoHostName))?;
    let port = uri
        .port_u16()
        .or(match uri.scheme_str() {
            Some("wss") => Some(443),
            Some("ws") => Some(80),
            _ => None,
        })
        .ok_or(WsError::Url(UrlError::UnsupportedUrlScheme))?;
    // `host` keeps the brackets of an IPv6 literal, as a socket address needs.
    let socket = TcpStream::connect(format!("{host}:{port}")).await?;
    socket.set_nodelay(true)?;
    crate::keepalive::enable(&socket).map_err(|err| WsError::Io(std::io::Error::other(err)))?;
    Ok(socket)
}

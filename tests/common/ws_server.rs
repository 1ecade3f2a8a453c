//! A scriptable WebSocket upstream on `127.0.0.1:0`: it counts connections and open sockets,
//! records the text messages and handshake headers it receives, and lets a test push
//! messages to every open socket or drop them all without a close handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::PrivateKeyDer;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

enum Command {
    Send(Message),
    Drop,
    Freeze,
}

#[derive(Default)]
struct State {
    connections: AtomicUsize,
    open: AtomicUsize,
    received: Mutex<Vec<String>>,
    headers: Mutex<Vec<Vec<(String, String)>>>,
    sockets: Mutex<Vec<mpsc::UnboundedSender<Command>>>,
}

/// The running server; its accept loop ends with the test's runtime.
pub struct WsServer {
    addr: SocketAddr,
    state: Arc<State>,
    scheme: &'static str,
    ca_file: Option<std::path::PathBuf>,
}

impl Drop for WsServer {
    fn drop(&mut self) {
        if let Some(path) = &self.ca_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl WsServer {
    /// Binds `127.0.0.1:0` and starts accepting.
    pub async fn start() -> WsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, accepting.clone()));
            }
        });
        WsServer {
            addr,
            state,
            scheme: "ws",
            ca_file: None,
        }
    }

    /// Like [`Self::start`] behind TLS with a fresh self-signed certificate for
    /// `127.0.0.1`, whose PEM is at [`Self::ca_file`].
    pub async fn start_tls() -> WsServer {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .expect("self-signed certificate");
        let key = PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let ca_file = std::env::temp_dir().join(format!(
            "sse-edge-ws-ca-{}-{}.pem",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&ca_file, certified.cert.pem()).expect("write CA file");
        let state = Arc::new(State::default());
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let state = accepting.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, state).await;
                    }
                });
            }
        });
        WsServer {
            addr,
            state,
            scheme: "wss",
            ca_file: Some(ca_file),
        }
    }

    /// `ws://ADDR/path` (or `wss://`)
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// The PEM file of the TLS server's certificate.
    pub fn ca_file(&self) -> &std::path::Path {
        self.ca_file.as_deref().expect("a TLS server")
    }

    /// WebSocket handshakes completed so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Sockets currently open.
    pub fn open(&self) -> usize {
        self.state.open.load(Ordering::SeqCst)
    }

    /// Every text message received, in order, across connections.
    pub fn received(&self) -> Vec<String> {
        self.state.received.lock().expect("lock").clone()
    }

    /// The handshake headers of each connection (names lowercased).
    pub fn handshake_headers(&self) -> Vec<Vec<(String, String)>> {
        self.state.headers.lock().expect("lock").clone()
    }

    fn broadcast(&self, make: impl Fn() -> Command) {
        self.state
            .sockets
            .lock()
            .expect("lock")
            .retain(|socket| socket.send(make()).is_ok());
    }

    /// Sends a text message to every open socket.
    pub fn send_text(&self, text: &str) {
        self.broadcast(|| Command::Send(Message::text(text)));
    }

    /// Sends a binary message to every open socket.
    pub fn send_binary(&self, bytes: &[u8]) {
        self.broadcast(|| Command::Send(Message::binary(bytes.to_vec())));
    }

    /// Sends one text frame of `len` bytes to every open socket (for size limits).
    pub fn send_oversize(&self, len: usize) {
        self.send_text(&"x".repeat(len));
    }

    /// Sends a text frame whose payload is not UTF-8 (a protocol violation) to every socket.
    pub fn send_invalid_utf8(&self) {
        self.broadcast(|| {
            let frame =
                Frame::message(vec![b'o', b'k', 0xff, 0xfe], OpCode::Data(Data::Text), true);
            Command::Send(Message::Frame(frame))
        });
    }

    /// Stops reading every open socket (so pings go unanswered) while keeping it open.
    pub fn freeze_all(&self) {
        self.broadcast(|| Command::Freeze);
    }

    /// Drops every open socket without a close handshake.
    pub fn drop_all(&self) {
        self.broadcast(|| Command::Drop);
    }
}

// tungstenite's handshake callback returns its (large) error response by value.
#[allow(clippy::result_large_err)]
async fn serve<S>(tcp: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let record = state.clone();
    let callback = move |request: &Request, mut response: Response| {
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        record.headers.lock().expect("lock").push(headers);
        if let Some(protocol) = request.headers().get("sec-websocket-protocol") {
            let first = protocol.to_str().unwrap_or_default().split(',').next();
            if let Some(first) = first.and_then(|p| p.trim().parse().ok()) {
                response
                    .headers_mut()
                    .insert("sec-websocket-protocol", first);
            }
        }
        Ok(response)
    };
    // The server itself accepts anything, so size limits are the proxy's to enforce.
    let config = WebSocketConfig::default()
        .max_frame_size(None)
        .max_message_size(None);
    let Ok(mut socket) =
        tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    state.sockets.lock().expect("lock").push(tx);
    state.connections.fetch_add(1, Ordering::SeqCst);
    state.open.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Send(message)) => {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Command::Drop) | None => break,
                Some(Command::Freeze) => {
                    // Read raw bytes (pings included) without answering, until the peer
                    // closes the connection.
                    let tcp = socket.get_mut();
                    let mut buf = [0u8; 1024];
                    let deadline = tokio::time::Instant::now() + super::WAIT;
                    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
                        if n == 0 {
                            break;
                        }
                    }
                    break;
                }
            },
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    state.received.lock().expect("lock").push(text.to_string());
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
}

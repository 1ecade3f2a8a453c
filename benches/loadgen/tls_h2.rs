//! The load generator's TLS and HTTP/2 transports: HTTP/1.1 over TLS (one connection per
//! stream) and HTTP/2 (streams multiplexed over connections, over TLS or prior-knowledge
//! h2c). Only how the bytes arrive differs from the plain HTTP/1.1 client: every stream is
//! an [`SseStream`], parsed and counted like the others.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::TlsConnector;

use super::{dial, h1_request, now_micros, path_of, Args, End, H1Response, SseStream, BYTES};

/// HTTP/2 flow-control windows: large enough that the client never throttles the server.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// A rustls connector trusting only the certificates in `--ca`, offering ALPN `h2` or
/// `http/1.1`.
pub fn connector(args: &Args) -> Result<Option<TlsConnector>, String> {
    let Some(tls) = &args.tls else {
        return Ok(None);
    };
    use pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pki_types::CertificateDer::pem_file_iter(&tls.ca)
        .map_err(|e| format!("--ca {}: {e}", tls.ca))?
    {
        let cert = cert.map_err(|e| format!("--ca {}: {e}", tls.ca))?;
        roots
            .add(cert)
            .map_err(|e| format!("--ca {}: {e}", tls.ca))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {}: no certificate", tls.ca));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![if args.h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    Ok(Some(TlsConnector::from(Arc::new(config))))
}

/// Reports the first connection failure of a run (later ones are only counted).
fn first_failure(what: &str, err: &dyn std::fmt::Display) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if !REPORTED.swap(true, Ordering::Relaxed) {
        eprintln!("loadgen: {what}: {err}");
    }
}

/// Connection `c`: TCP, then the TLS handshake with the negotiated ALPN checked.
async fn open_tls(
    c: usize,
    args: &Args,
    gate: &Semaphore,
    tls: &TlsConnector,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let _permit = gate.acquire().await;
    let tcp = dial(c, args).await?;
    let sni = args.tls.as_ref().map_or("localhost", |t| t.sni.as_str());
    let name = match pki_types::ServerName::try_from(sni.to_string()) {
        Ok(name) => name,
        Err(e) => {
            first_failure("--sni", &e);
            return None;
        }
    };
    let stream = match tls.connect(name, tcp).await {
        Ok(s) => s,
        Err(e) => {
            first_failure("TLS handshake", &e);
            return None;
        }
    };
    let want: &[u8] = if args.h2 { b"h2" } else { b"http/1.1" };
    let alpn = stream.get_ref().1.alpn_protocol();
    if alpn != Some(want) {
        let got = alpn.map_or("none".into(), |p| String::from_utf8_lossy(p).into_owned());
        first_failure("ALPN", &format!("server chose {got}"));
        return None;
    }
    Some(stream)
}

/// One HTTP/1.1 client over TLS (ALPN `http/1.1`): like the plain client, but rustls
/// decrypts into a small per-connection buffer.
pub async fn h1_client(i: usize, args: Arc<Args>, gate: Arc<Semaphore>, tls: TlsConnector) {
    let mut response = H1Response::new();
    let Some(mut stream) = open_tls(i, &args, &gate, &tls).await else {
        return response.sse.end(End::Connect);
    };
    if stream
        .write_all(h1_request(i, &args).as_bytes())
        .await
        .is_err()
    {
        return response.sse.end(End::Connect);
    }
    let mut buf = vec![0u8; 4096];
    loop {
        let read = stream.read(&mut buf).await;
        if response.received(read.map(|n| &buf[..n])) {
            return;
        }
    }
}

/// One HTTP/2 connection carrying the streams of clients `streams`: TLS with ALPN `h2`
/// when `tls` is given, else prior-knowledge h2c. Each stream is its own task.
pub async fn h2_connection(
    c: usize,
    streams: Range<usize>,
    args: Arc<Args>,
    gate: Arc<Semaphore>,
    tls: Option<TlsConnector>,
) {
    let port = args.targets[c % args.targets.len()].port();
    let fail_all = |streams: Range<usize>| {
        for _ in streams {
            SseStream::new().end(End::Connect);
        }
    };
    match tls {
        Some(tls) => match open_tls(c, &args, &gate, &tls).await {
            Some(io) => h2_streams(io, port, streams, args).await,
            None => fail_all(streams),
        },
        None => {
            let tcp = {
                let _permit = gate.acquire().await;
                dial(c, &args).await
            };
            match tcp {
                Some(io) => h2_streams(io, port, streams, args).await,
                None => fail_all(streams),
            }
        }
    }
}

async fn h2_streams<IO>(io: IO, port: u16, streams: Range<usize>, args: Arc<Args>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = h2::client::Builder::new()
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io)
        .await;
    let (send, connection) = match handshake {
        Ok(pair) => pair,
        Err(e) => {
            first_failure("HTTP/2 handshake", &e);
            for _ in streams {
                SseStream::new().end(End::Connect);
            }
            return;
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            first_failure("HTTP/2 connection", &e);
        }
    });
    for i in streams {
        tokio::spawn(h2_stream(i, port, send.clone(), args.clone()));
    }
}

/// One SSE request on an HTTP/2 connection to `port`; DATA frames go to the shared parser.
async fn h2_stream(i: usize, port: u16, send: h2::client::SendRequest<Bytes>, args: Arc<Args>) {
    let mut sse = SseStream::new();
    let (scheme, authority) = match &args.tls {
        Some(tls) => ("https", tls.sni.clone()),
        None => ("http", "localhost".to_string()),
    };
    let request = http::Request::get(format!(
        "{scheme}://{authority}:{port}{}",
        path_of(i, &args)
    ))
    .header("accept", "text/event-stream")
    .header("user-agent", "sse-edge-loadgen")
    .body(());
    let Ok(request) = request else {
        return sse.end(End::Http);
    };
    // `ready` waits while the connection is at the server's concurrent-stream limit.
    let Ok(mut send) = send.ready().await else {
        return sse.end(End::Connect);
    };
    let Ok((response, _)) = send.send_request(request, true) else {
        return sse.end(End::Connect);
    };
    let response = match response.await {
        Ok(r) if r.status() == http::StatusCode::OK => r,
        Ok(_) => return sse.end(End::Http),
        Err(e) => {
            first_failure("HTTP/2 response", &e);
            return sse.end(End::Http);
        }
    };
    sse.opened();
    let mut body = response.into_body();
    loop {
        match body.data().await {
            Some(Ok(data)) => {
                let _ = body.flow_control().release_capacity(data.len());
                BYTES.fetch_add(data.len() as u64, Ordering::Relaxed);
                sse.body(&data, now_micros());
            }
            Some(Err(_)) => return sse.end(End::Read),
            None => return sse.end(End::Eof),
        }
    }
}

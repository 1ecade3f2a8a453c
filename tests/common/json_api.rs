//! A scriptable JSON upstream on 127.0.0.1:0 for `poll` routes: it counts requests, records
//! their headers, and answers every request with the reply the test last set — a JSON body
//! (with an optional ETag, answering `304` when `If-None-Match` matches), a bare status, raw
//! bytes (invalid JSON), or a huge body streamed without a length. Connections are kept
//! alive (except after a length-less body), so tests can see the proxy reuse them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `200` with this JSON text; with an ETag, `304` to a matching `If-None-Match`.
    Json {
        /// The body.
        body: String,
        /// The `ETag` header, quotes included.
        etag: Option<String>,
    },
    /// `200` with this JSON text and a `Last-Modified` date; `304` to a matching
    /// `If-Modified-Since`.
    Dated {
        /// The body.
        body: String,
        /// The `Last-Modified` header value.
        last_modified: String,
    },
    /// This status with an empty body.
    Status(u16),
    /// `200 application/json` with this body as-is (e.g. invalid JSON).
    Raw(String),
    /// `200` with this many bytes of body and no Content-Length (read until close).
    Huge(usize),
}

#[derive(Default)]
struct Shared {
    reply: Option<Reply>,
    requests: Vec<Vec<(String, String)>>,
}

/// The JSON API server.
pub struct JsonApi {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    not_modified: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl JsonApi {
    /// Starts a server answering `reply` until told otherwise.
    pub async fn start(reply: Reply) -> JsonApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind json api");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared {
            reply: Some(reply),
            requests: Vec::new(),
        }));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (state, counter, accepted) =
            (shared.clone(), not_modified.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (state, counter) = (state.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    while let Ok(true) = serve(&mut reader, &state, &counter).await {}
                });
            }
        });
        JsonApi {
            addr,
            shared,
            not_modified,
            connections,
        }
    }

    /// Starts a server answering `value` without validators.
    pub async fn start_json(value: &serde_json::Value) -> JsonApi {
        Self::start(json(value, None)).await
    }

    /// `http://ADDR/path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Changes the reply for the following requests.
    pub fn set(&self, reply: Reply) {
        self.shared.lock().expect("lock").reply = Some(reply);
    }

    /// Answers `value` from now on, without validators.
    pub fn set_json(&self, value: &serde_json::Value) {
        self.set(json(value, None));
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.shared.lock().expect("lock").requests.len()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// `304` answers sent so far.
    pub fn not_modified(&self) -> usize {
        self.not_modified.load(Ordering::SeqCst)
    }

    /// A header (lowercased name) of the most recent request.
    pub fn last_header(&self, name: &str) -> Option<String> {
        let shared = self.shared.lock().expect("lock");
        let headers = shared.requests.last()?;
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// A JSON reply with an optional ETag.
pub fn json(value: &serde_json::Value, etag: Option<&str>) -> Reply {
    Reply::Json {
        body: value.to_string(),
        etag: etag.map(str::to_string),
    }
}

/// Answers one request; `Ok(true)` when the connection may carry another.
async fn serve(
    reader: &mut BufReader<TcpStream>,
    shared: &Mutex<Shared>,
    not_modified: &AtomicUsize,
) -> std::io::Result<bool> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await? == 0 {
        return Ok(false);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let if_modified_since = header("if-modified-since");
    let if_none_match = headers
        .iter()
        .find(|(n, _)| n == "if-none-match")
        .map(|(_, v)| v.clone());
    let reply = {
        let mut shared = shared.lock().expect("lock");
        shared.requests.push(headers);
        shared.reply.clone().expect("a reply")
    };
    let stream = reader.get_mut();
    let head = |status: u16, extra: &str, length: Option<usize>| {
        let framing = match length {
            Some(n) => format!("Content-Length: {n}\r\n"),
            None if status == 304 => String::new(),
            None => "Connection: close\r\n".to_string(),
        };
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}{framing}\r\n")
    };
    match reply {
        Reply::Json { body, etag } => {
            if etag.is_some() && etag == if_none_match {
                not_modified.fetch_add(1, Ordering::SeqCst);
                let etag = etag.unwrap_or_default();
                let head = head(304, &format!("ETag: {etag}\r\n"), None);
                stream.write_all(head.as_bytes()).await?;
            } else {
                let extra = etag.map_or(String::new(), |e| format!("ETag: {e}\r\n"));
                stream
                    .write_all(head(200, &extra, Some(body.len())).as_bytes())
                    .await?;
                stream.write_all(body.as_bytes()).await?;
            }
        }
        Reply::Dated {
            body,
            last_modified,
        } => {
            let extra = format!("Last-Modified: {last_modified}\r\n");
            if if_modified_since.as_deref() == Some(last_modified.as_str()) {
                not_modified.fetch_add(1, Ordering::SeqCst);
                stream.write_all(head(304, &extra, None).as_bytes()).await?;
            } else {
                stream
                    .write_all(head(200, &extra, Some(body.len())).as_bytes())
                    .await?;
                stream.write_all(body.as_bytes()).await?;
            }
        }
        Reply::Status(status) => {
            stream
                .write_all(head(status, "", Some(0)).as_bytes())
                .await?;
        }
        Reply::Raw(body) => {
            stream
                .write_all(head(200, "", Some(body.len())).as_bytes())
                .await?;
            stream.write_all(body.as_bytes()).await?;
        }
        Reply::Huge(size) => {
            stream.write_all(head(200, "", None).as_bytes()).await?;
            stream.write_all(b"[").await?;
            let chunk = vec![b'1'; 64 * 1024];
            let mut sent = 1;
            while sent < size {
                let n = chunk.len().min(size - sent);
                stream.write_all(&chunk[..n]).await?;
                sent += n;
            }
            stream.shutdown().await?;
            return Ok(false);
        }
    }
    Ok(true)
}

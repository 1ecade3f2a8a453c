//! A raw HTTP/1.1 client for SSE responses: it decodes chunked bodies itself and splits the
//! stream into frames exactly as sent (comments and `retry:` frames included), so tests can
//! assert on heartbeats and framing, not just on parsed events.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// One blank-line-terminated block of the stream, as its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The lines, without line ends.
    pub lines: Vec<String>,
}

impl Frame {
    fn field(&self, name: &str) -> Option<String> {
        self.lines.iter().rev().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            Some(value.strip_prefix(' ').unwrap_or(value).to_string())
        })
    }

    /// The `id:` value.
    pub fn id(&self) -> Option<String> {
        self.field("id")
    }

    /// The `event:` value.
    pub fn event(&self) -> Option<String> {
        self.field("event")
    }

    /// The `data:` lines joined with `\n`, or `None` without any.
    pub fn data(&self) -> Option<String> {
        let lines: Vec<String> = self
            .lines
            .iter()
            .filter_map(|line| {
                let value = line.strip_prefix("data")?;
                if value.is_empty() {
                    return Some(String::new());
                }
                let value = value.strip_prefix(':')?;
                Some(value.strip_prefix(' ').unwrap_or(value).to_string())
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Whether this frame is only comments (a heartbeat).
    pub fn is_comment(&self) -> bool {
        !self.lines.is_empty() && self.lines.iter().all(|l| l.starts_with(':'))
    }

    /// The `retry:` value, if the frame sets one.
    pub fn retry(&self) -> Option<u64> {
        self.field("retry").and_then(|v| v.parse().ok())
    }
}

/// An SSE response being read.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    /// The status code.
    pub status: u16,
    /// Response headers, names lowercased.
    pub headers: Vec<(String, String)>,
    chunked: bool,
    remaining_in_chunk: usize,
    body: String,
    /// Set once the body ended.
    pub ended: bool,
}

impl SseClient {
    /// Sends `GET url` with extra headers and reads the response head.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> SseClient {
        Self::request("GET", url, headers).await
    }

    /// Sends `method url` with extra headers and reads the response head.
    pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> SseClient {
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = timeout(super::WAIT, TcpStream::connect(host))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut reader = BufReader::new(stream);
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut client = SseClient {
            reader,
            status: 0,
            headers: Vec::new(),
            chunked: false,
            remaining_in_chunk: 0,
            body: String::new(),
            ended: false,
        };
        client.read_head().await;
        client
    }

    async fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        let read = timeout(super::WAIT, self.reader.read_line(&mut line))
            .await
            .ok()?
            .ok()?;
        (read > 0).then(|| line.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn read_head(&mut self) {
        let status_line = self.read_line().await.expect("status line");
        self.status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        while let Some(line) = self.read_line().await {
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                self.headers
                    .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        self.chunked = self
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        if !self.chunked {
            if let Some(length) = self
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
            {
                let mut body = vec![0; length];
                let _ = timeout(super::WAIT, self.reader.read_exact(&mut body)).await;
                self.body = String::from_utf8_lossy(&body).to_string();
                self.ended = true;
            }
        }
    }

    /// A response header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads more body bytes; false at the end of the body or after `limit`.
    async fn fill(&mut self, limit: Duration) -> bool {
        if self.ended {
            return false;
        }
        let read = timeout(limit, self.read_some()).await;
        matches!(read, Ok(true))
    }

    async fn read_some(&mut self) -> bool {
        if !self.chunked {
            let mut buf = [0u8; 8192];
            return match self.reader.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    self.ended = true;
                    false
                }
                Ok(n) => {
                    self.body.push_str(&String::from_utf8_lossy(&buf[..n]));
                    true
                }
            };
        }
        if self.remaining_in_chunk == 0 {
            let mut size_line = String::new();
            if self.reader.read_line(&mut size_line).await.unwrap_or(0) == 0 {
                self.ended = true;
                return false;
            }
            let size_line = size_line.trim();
            if size_line.is_empty() {
                return true; // the CRLF after a chunk
            }
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                self.ended = true;
                return false;
            }
            self.remaining_in_chunk = size;
        }
        let mut buf = vec![0u8; self.remaining_in_chunk.min(8192)];
        match self.reader.read(&mut buf).await {
            Ok(0) | Err(_) => {
                self.ended = true;
                false
            }
            Ok(n) => {
                self.remaining_in_chunk -= n;
                self.body.push_str(&String::from_utf8_lossy(&buf[..n]));
                if self.remaining_in_chunk == 0 {
                    let mut crlf = [0u8; 2];
                    let _ = self.reader.read_exact(&mut crlf).await;
                }
                true
            }
        }
    }

    /// The next frame within `limit`, or `None` (timeout or end of stream).
    pub async fn next_frame_within(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.body.find("\n\n") {
                let block: String = self.body.drain(..end + 2).collect();
                let lines = block
                    .trim_end_matches('\n')
                    .split('\n')
                    .map(str::to_string)
                    .collect();
                return Some(Frame { lines });
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                return None;
            }
        }
    }

    /// The next frame within the default deadline.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        self.next_frame_within(super::WAIT).await
    }

    /// The next frame that carries data (skipping heartbeats and `retry:` frames).
    pub async fn next_event(&mut self) -> Option<Frame> {
        self.next_event_within(super::WAIT).await
    }

    /// Like [`Self::next_event`] with a custom deadline.
    pub async fn next_event_within(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_frame_within(left).await?;
            if frame.data().is_some() {
                return Some(frame);
            }
        }
    }

    /// Whatever body text has been read but not yet consumed as frames.
    pub fn pending_text(&self) -> &str {
        &self.body
    }

    /// Reads until the end of the body (or `limit`), returning all remaining text.
    pub async fn read_to_end(&mut self, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.ended {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                break;
            }
        }
        std::mem::take(&mut self.body)
    }
}

//! A killable backend for pool tests on 127.0.0.1:0: plain `GET`s answered with its name
//! (keep-alive), `GET /healthz` with a status the test sets, and any path under `/events` as
//! an SSE ticker that resumes after `Last-Event-ID` — so two of them feed one contiguous
//! stream. [`Backend::kill`] closes the listener and every connection (connections are then
//! refused); [`Backend::restart`] listens on the same port again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::RequestHead;

/// How often the ticker sends an event.
pub const TICK: Duration = Duration::from_millis(40);

/// One backend of a pool.
pub struct Backend {
    /// Where it listens (the same across restarts).
    pub addr: SocketAddr,
    /// Its name: the body of its plain answers and the start of each event's data.
    pub name: String,
    state: Arc<State>,
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// What the test reads and sets.
#[derive(Default)]
struct State {
    name: String,
    health: AtomicU16,
    requests: AtomicUsize,
    open_streams: AtomicUsize,
    /// Every stream request: its path and `Last-Event-ID`.
    streams: Mutex<Vec<(String, Option<String>)>>,
}

impl Backend {
    /// Starts backend `name`, healthy.
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let state = Arc::new(State {
            name: name.to_string(),
            health: AtomicU16::new(200),
            ..State::default()
        });
        let mut backend = Backend {
            addr: listener.local_addr().expect("addr"),
            name: name.to_string(),
            state,
            running: None,
        };
        backend.serve(listener);
        backend
    }

    /// `http://ADDR/path`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The status `GET /healthz` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    /// Plain requests answered (not health checks, not streams).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// SSE streams open now.
    pub fn open_streams(&self) -> usize {
        self.state.open_streams.load(Ordering::SeqCst)
    }

    /// Every stream request so far: its path and `Last-Event-ID`.
    pub fn streams(&self) -> Vec<(String, Option<String>)> {
        self.state.streams.lock().expect("streams").clone()
    }

    /// Stops listening and drops every connection; returns once the port is closed.
    pub async fn kill(&mut self) {
        if let Some((stop, accept)) = self.running.take() {
            stop.send_replace(true);
            let _ = accept.await;
        }
    }

    /// Listens on the same port again.
    pub async fn restart(&mut self) {
        self.kill().await;
        let listener = TcpListener::bind(self.addr).await.expect("rebind backend");
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (stop, stopped) = watch::channel(false);
        let state = self.state.clone();
        let accept = tokio::spawn(async move {
            let mut until_stop = stopped.clone();
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    },
                    _ = until_stop.changed() => return,
                };
                let (state, mut stopped) = (state.clone(), stopped.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = connection(stream, &state) => {}
                        _ = stopped.changed() => {}
                    }
                });
            }
        });
        self.running = Some((stop, accept));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some((stop, accept)) = self.running.take() {
            stop.send_replace(true);
            accept.abort();
        }
    }
}

/// Serves one connection: requests in turn until it closes or turns into a stream.
async fn connection(stream: TcpStream, state: &State) {
    let mut reader = BufReader::new(stream);
    while let Some(head) = super::parse_request_head(&mut reader).await {
        if head.path.starts_with("/events") {
            ticker(reader.into_inner(), head, state).await;
            return;
        }
        let (status, body) = if head.path == "/healthz" {
            (state.health.load(Ordering::SeqCst), String::new())
        } else {
            state.requests.fetch_add(1, Ordering::SeqCst);
            (200, state.name.clone())
        };
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nX-Backend: {}\r\n\r\n{body}",
            body.len(),
            state.name
        );
        if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An SSE stream of `id: N` / `data: NAME N` every [`TICK`], N counting on from the
/// request's `Last-Event-ID` (or from 1).
async fn ticker(mut stream: TcpStream, head: RequestHead, state: &State) {
    let last = head
        .headers
        .iter()
        .find(|(name, _)| name == "last-event-id")
        .map(|(_, value)| value.clone());
    state
        .streams
        .lock()
        .expect("streams")
        .push((head.path.clone(), last.clone()));
    let mut next = last
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(1, |id| id + 1);
    let reply = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    let _open = Open::count(&state.open_streams);
    loop {
        let event = format!("id: {next}\ndata: {} {next}\n\n", state.name);
        if stream.write_all(event.as_bytes()).await.is_err() {
            return;
        }
        next += 1;
        tokio::time::sleep(TICK).await;
    }
}

/// Counts an open stream for as long as it lives, however it ends (a kill drops it).
struct Open<'a>(&'a AtomicUsize);

impl<'a> Open<'a> {
    fn count(open: &'a AtomicUsize) -> Open<'a> {
        open.fetch_add(1, Ordering::SeqCst);
        Open(open)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

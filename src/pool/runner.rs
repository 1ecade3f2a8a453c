//! Where pools run their health checks: a pingora background service that outlives every
//! configuration generation.
//!
//! A pool is built with its route table — for the first generation before any runtime
//! exists, on SIGHUP in the signal handler's — so it cannot spawn its loop itself. It queues
//! the loop here instead, keeping a [`StopGuard`]; the service spawns each queued loop on its
//! own runtime, and a loop ends when its guard is dropped (the pool, with its route, was
//! retired and its last stream is gone) or when the server shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Runs the health-check loops of every pool of the process.
pub struct CheckRunner {
    queue: mpsc::UnboundedSender<Job>,
    jobs: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
}

/// Ends a loop of the [`CheckRunner`] when dropped.
pub struct StopGuard {
    _stop: oneshot::Sender<()>,
}

impl Default for CheckRunner {
    fn default() -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        CheckRunner {
            queue,
            jobs: Mutex::new(Some(jobs)),
        }
    }
}

impl CheckRunner {
    /// Runs `pass` now and then `interval` after each pass ends, until the guard is dropped.
    pub fn repeat<F, Fut>(&self, interval: Duration, mut pass: F) -> StopGuard
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let job = async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = pass() => {}
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        };
        // Nobody receives once the service has ended: the server is shutting down.
        let _ = self.queue.send(Box::pin(job));
        StopGuard { _stop: stop }
    }
}

#[async_trait]
impl BackgroundService for CheckRunner {
    /// Spawns every queued loop until shutdown, then ends them all.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut jobs) = taken else {
            return;
        };
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => {
                        running.spawn(job);
                    }
                    None => return,
                },
                Some(_) = running.join_next() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

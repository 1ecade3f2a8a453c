//! The registry of live streams: identical requests share one stream (and so one upstream),
//! the first subscriber starts its source, and the source stops `linger` after the last
//! subscriber leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::shared::{Publisher, Stream, StreamSpec};
use super::subscriber::Subscription;
use crate::metrics::RouteMetrics;
use crate::sources::Source;

/// All live streams, by key.
#[derive(Default)]
pub struct Hub {
    streams: Mutex<HashMap<String, Arc<Stream>>>,
    next_private: AtomicU64,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Subscribes to the stream `key`, creating it (and starting its source with `start`)
    /// when it does not exist. `start` receives the Last-Event-ID to hand the upstream.
    pub fn join(
        self: &Arc<Self>,
        key: String,
        spec: &StreamSpec,
        metrics: &RouteMetrics,
        last_event_id: Option<&str>,
        start: impl FnOnce(Option<String>) -> Box<dyn Source>,
    ) -> Subscription {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let (stream, created) = match streams.get(&key) {
            Some(stream) => (stream.clone(), false),
            None => {
                let stream = Arc::new(Stream::new(spec.clone(), metrics.clone()));
                let resume = last_event_id.filter(|_| spec.resumes_upstream);
                let source = start(resume.map(str::to_string));
                let task = tokio::spawn(source.run(Publisher::new(stream.clone())));
                *stream.source.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(task.abort_handle());
                streams.insert(key.clone(), stream.clone());
                (stream, true)
            }
        };
        stream.subscribers.fetch_add(1, Ordering::Relaxed);
        drop(streams);
        let joined = stream.join(last_event_id, created);
        Subscription::new(self.clone(), key, stream, joined)
    }

    /// Called when a subscription ends; schedules the stream's end if it was the last.
    pub(super) fn leave(self: &Arc<Self>, key: String, stream: Arc<Stream>) {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        if stream.subscribers.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        drop(streams);
        let linger = stream.spec().linger;
        let hub = self.clone();
        if linger.is_zero() {
            hub.remove_if_idle(&key, &stream);
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(linger).await;
                hub.remove_if_idle(&key, &stream);
            });
        } else {
            hub.remove_if_idle(&key, &stream);
        }
    }

    fn remove_if_idle(&self, key: &str, stream: &Arc<Stream>) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = stream.subscribers.load(Ordering::Relaxed) == 0;
        if idle && streams.get(key).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            streams.remove(key);
            if let Some(task) = stream
                .source
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                task.abort();
            }
        }
    }

    /// A number never returned before, to give a per-client stream its own key.
    pub fn unique_id(&self) -> u64 {
        self.next_private.fetch_add(1, Ordering::Relaxed)
    }

    /// Number of live streams (for tests and `/readyz` diagnostics).
    pub fn len(&self) -> usize {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no stream is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! The streaming core shared by every SSE route kind. It knows nothing of what feeds it or
//! how the file spells its settings: a feed is a future holding a [`Publisher`], the
//! settings are a [`StreamSpec`], the client is a [`Downstream`].
//!
//! ```text
//!   Hub::join(StreamKey, spec, start) ── table: key ─► Stream, members, feed task
//!        │ first member: start(Publisher) ─► Feed     (one per stream key, spawned;
//!        │                                             a private stream's runs in its
//!        │                                             one Subscription, not spawned)
//!        ▼
//!   Feed ── Publisher::publish(Event)                  id assigned, encoded once
//!        │  (a relayed Publisher also hands it to its Relay, once: the cluster's log)
//!        ▼
//!   Stream ── Ring (replay + every client's queue) ── Head (seq, standing wakers)
//!        │                                             wakes subscribers
//!        ▼
//!   Subscription (cursor + Membership)  ×N clients     nothing copied per client;
//!        │                                             dropping it leaves the stream
//!        ▼
//!   writer::run ── retry · heartbeats · batches · slow-client policy · lifetime · shutdown
//!        │         (a private stream's events bypass the ring while nothing is queued:
//!        ▼          the feed writes them to the client's Outlet — see `outlet`)
//!   Downstream (the client connection, owned by the stream's task)
//! ```
//!
//! The last member to leave ends the stream `linger` later: its entry is removed from the
//! table and its feed task aborted. A private stream (`StreamKey::Private`) ends with its
//! one subscription, feed and all.

mod ends;
mod head;
mod hub;
mod outlet;
mod own_feed;
mod ring;
mod shared;
mod spec;
mod subscriber;
mod table;
pub mod writer;

pub use ends::{Ends, RouteStop, StreamEnd};
pub use hub::{Hub, StreamKey};
pub use outlet::{Outlet, Passed};
pub use ring::{Backlog, StoredEvent};
pub use shared::{Feed, Publisher, Relay, Snapshot};
pub use spec::{SlowClientPolicy, StreamSpec};
pub use subscriber::Subscription;
pub use writer::{ClientGone, Downstream, Tally};

/// Helpers for the core's unit tests: a stream fed by hand, and a recording client.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use tokio::sync::watch;

    use super::{
        ClientGone, Downstream, Hub, Publisher, StoredEvent, StreamKey, StreamSpec, Subscription,
    };
    use crate::metrics::{Metrics, RouteMetrics};

    /// One shared stream whose publisher the test holds; `join` adds subscribers to it.
    pub struct HandFed {
        /// Publishes into the stream, as a source would.
        pub out: Publisher,
        /// The route's metrics.
        pub metrics: RouteMetrics,
        registry: Metrics,
        hub: Arc<Hub>,
        spec: Arc<StreamSpec>,
    }

    impl HandFed {
        /// A new stream with `spec`, and its first subscriber, joined with `last_event_id`.
        pub fn new(spec: StreamSpec, last_event_id: Option<&str>) -> (HandFed, Subscription) {
            let hub = Hub::new();
            let registry = Metrics::register().expect("metrics");
            let metrics = registry.route("/t");
            let spec = Arc::new(spec);
            let slot = Arc::new(Mutex::new(None));
            let stash = slot.clone();
            let first = hub.join(key(), &spec, &metrics, last_event_id, move |out, _| {
                *stash.lock().expect("lock") = Some(out);
                Box::pin(std::future::pending())
            });
            let out = slot.lock().expect("lock").take().expect("feed started");
            let fed = HandFed {
                out,
                metrics,
                registry,
                hub,
                spec,
            };
            (fed, first)
        }

        /// Another subscriber of the same stream.
        pub fn join(&self, last_event_id: Option<&str>) -> Subscription {
            self.hub
                .join(key(), &self.spec, &self.metrics, last_event_id, |_, _| {
                    unreachable!("the stream exists")
                })
        }

        /// The value of a sample of the exposition, e.g. `sse_edge_replay_hits_total{route="/t"}`.
        pub fn sample(&self, sample: &str) -> f64 {
            self.registry
                .render()
                .lines()
                .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or(0.0)
        }
    }

    fn key() -> StreamKey {
        StreamKey::shared("/t", "http://u/s")
    }

    /// Everything `subscription` has to write now.
    pub fn batch(subscription: &mut Subscription) -> Vec<StoredEvent> {
        let mut batch = Vec::new();
        subscription.next_batch(usize::MAX, &mut batch);
        batch
    }

    /// A client that records what the writer sends, and can stall or hang up.
    pub struct Recorder {
        /// Everything written, in order.
        pub written: Arc<Mutex<Vec<u8>>>,
        /// After this many sends, every send blocks forever (a client that stopped reading).
        pub stall_after: Option<usize>,
        sends: usize,
        /// Becomes `true` when the client closes its side.
        pub closed: watch::Receiver<bool>,
    }

    impl Recorder {
        /// A reading client, and the switch that closes it.
        pub fn new() -> (Recorder, watch::Sender<bool>) {
            let (close, closed) = watch::channel(false);
            let recorder = Recorder {
                written: Arc::default(),
                stall_after: None,
                sends: 0,
                closed,
            };
            (recorder, close)
        }

        /// What was written, as text.
        pub fn text(written: &Mutex<Vec<u8>>) -> String {
            String::from_utf8_lossy(&written.lock().expect("lock")).to_string()
        }
    }

    impl Downstream for Recorder {
        async fn send(&mut self, bytes: Bytes) -> Result<(), ClientGone> {
            if self.stall_after.is_some_and(|after| self.sends >= after) {
                std::future::pending::<()>().await;
            }
            self.sends += 1;
            if *self.closed.borrow() {
                return Err(ClientGone);
            }
            self.written.lock().expect("lock").extend_from_slice(&bytes);
            Ok(())
        }

        async fn closed(&mut self) {
            let _ = self.closed.wait_for(|closed| *closed).await;
        }
    }
}

//! The registry of live streams: identical requests share one stream (and so one upstream),
//! the first subscriber starts its feed, and the feed stops `linger` after the last
//! subscriber leaves.

use std::sync::Arc;

use super::shared::{Feed, Publisher, Stream};
use super::spec::StreamSpec;
use super::subscriber::Subscription;
use super::table::{Membership, Table};
use crate::metrics::RouteMetrics;

/// Which stream a client joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamKey {
    /// Every client with the same key shares one stream.
    Shared(String),
    /// A stream of its own.
    Private,
}

impl StreamKey {
    /// The key of clients of `scope` (a route and its settings) making the request
    /// identified by `upstream` (the final upstream URL).
    pub fn shared(scope: &str, upstream: &str) -> StreamKey {
        StreamKey::Shared(format!("{scope}\n{upstream}"))
    }
}

/// All live streams.
#[derive(Default)]
pub struct Hub {
    table: Arc<Table>,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Subscribes to the stream `key`, creating it — and the feed `start` makes — when it
    /// does not exist. `start` receives the first client's Last-Event-ID when the stream's
    /// upstream resumes by itself (`spec.resumes_upstream`).
    ///
    /// A shared stream's feed runs in a task of its own; a private stream's feed runs inside
    /// its one subscription (see [`Subscription::ready`]), so an event goes from the upstream
    /// socket to the client's in one task, with no wake-up in between.
    pub fn join(
        &self,
        key: StreamKey,
        spec: &Arc<StreamSpec>,
        metrics: &RouteMetrics,
        last_event_id: Option<&str>,
        start: impl FnOnce(Publisher, Option<String>) -> Feed,
    ) -> Subscription {
        let resume = last_event_id.filter(|_| spec.resumes_upstream);
        let new_stream = |private| Arc::new(Stream::new(spec.clone(), metrics.clone(), private));
        let StreamKey::Shared(key) = key else {
            let stream = new_stream(true);
            let feed = start(Publisher::new(stream.clone()), resume.map(str::to_string));
            let joined = stream.join(last_event_id, true);
            return Subscription::new(Membership::private(stream), joined, Some(feed));
        };
        let (membership, created) = self.table.join(key, || {
            let stream = new_stream(false);
            let feed = start(Publisher::new(stream.clone()), resume.map(str::to_string));
            (stream, tokio::spawn(feed).abort_handle())
        });
        let joined = membership.stream().join(last_event_id, created);
        Subscription::new(membership, joined, None)
    }

    /// Whether the stream `key` is live on this node (a private key never is).
    pub fn has(&self, key: &StreamKey) -> bool {
        match key {
            StreamKey::Shared(key) => self.table.has(key),
            StreamKey::Private => false,
        }
    }

    /// Number of live shared streams.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::super::testing::batch;
    use super::*;
    use crate::metrics::Metrics;
    use crate::sse::Event;

    fn metrics() -> RouteMetrics {
        Metrics::register().expect("metrics").route("/t")
    }

    /// A feed that publishes `events` and then waits to be aborted; it counts its starts.
    fn feed(
        starts: &Arc<AtomicU64>,
        events: &'static [&'static str],
    ) -> impl FnOnce(Publisher, Option<String>) -> Feed {
        let starts = starts.clone();
        move |out, _resume| {
            starts.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move {
                for data in events {
                    out.publish(Event::message(*data));
                }
                std::future::pending::<()>().await;
            })
        }
    }

    #[tokio::test]
    async fn identical_keys_share_one_feed_and_private_ones_do_not() {
        let hub = Hub::new();
        let (spec, metrics) = (Arc::new(StreamSpec::for_tests()), metrics());
        let starts = Arc::new(AtomicU64::new(0));
        let key = || StreamKey::shared("/t", "http://u/a");
        let a = hub.join(key(), &spec, &metrics, None, feed(&starts, &[]));
        let b = hub.join(key(), &spec, &metrics, None, feed(&starts, &[]));
        assert_eq!(starts.load(Ordering::Relaxed), 1);
        let c = hub.join(
            StreamKey::Private,
            &spec,
            &metrics,
            None,
            feed(&starts, &[]),
        );
        let d = hub.join(
            StreamKey::Private,
            &spec,
            &metrics,
            None,
            feed(&starts, &[]),
        );
        assert_eq!(starts.load(Ordering::Relaxed), 3);
        assert_eq!(hub.len(), 1, "private streams live in their subscription");
        drop((a, c, d));
        assert_eq!(hub.len(), 1, "the shared stream still has a subscriber");
        drop(b);
        assert_eq!(hub.len(), 0);
    }

    #[tokio::test]
    async fn the_last_leave_stops_the_feed_after_linger() {
        let hub = Hub::new();
        let spec = Arc::new(StreamSpec {
            linger: Duration::from_millis(50),
            ..StreamSpec::for_tests()
        });
        let metrics = metrics();
        let starts = Arc::new(AtomicU64::new(0));
        let key = || StreamKey::shared("/t", "http://u/a");
        let first = hub.join(key(), &spec, &metrics, None, feed(&starts, &["x"]));
        drop(first);
        assert_eq!(hub.len(), 1, "lingering");
        let again = hub.join(key(), &spec, &metrics, None, feed(&starts, &[]));
        assert_eq!(starts.load(Ordering::Relaxed), 1, "rejoined within linger");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hub.len(), 1, "a rejoined stream is not removed");
        drop(again);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hub.len(), 0);
        assert_eq!(metrics.upstream_streams_active.get(), 0, "stream dropped");
    }

    #[tokio::test]
    async fn a_private_feed_runs_in_its_subscription_and_ends_with_it() {
        let hub = Hub::new();
        let (spec, metrics) = (Arc::new(StreamSpec::for_tests()), metrics());
        let dropped = Arc::new(AtomicU64::new(0));
        let guard = Dropped(dropped.clone());
        let mut private = hub.join(StreamKey::Private, &spec, &metrics, None, |out, _| {
            Box::pin(async move {
                let _guard = guard;
                for data in ["a", "b"] {
                    out.publish(Event::message(data));
                    tokio::task::yield_now().await;
                }
                std::future::pending::<()>().await;
            })
        });
        tokio::task::yield_now().await;
        assert_eq!(metrics.upstream_streams_active.get(), 1);
        assert!(batch(&mut private).is_empty(), "not run before polled");
        private.ready().await;
        assert_eq!(batch(&mut private).len(), 1);
        private.ready().await;
        assert_eq!(batch(&mut private).len(), 1);
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
        drop(private);
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            1,
            "the feed ends with its client"
        );
        assert_eq!(metrics.upstream_streams_active.get(), 0);
    }

    /// Counts its drop.
    struct Dropped(Arc<AtomicU64>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn resume_ids_reach_only_feeds_that_resume_upstream() {
        let hub = Hub::new();
        let metrics = metrics();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        for resumes_upstream in [false, true] {
            let spec = Arc::new(StreamSpec {
                resumes_upstream,
                ..StreamSpec::for_tests()
            });
            let seen = seen.clone();
            let _subscription = hub.join(
                StreamKey::Private,
                &spec,
                &metrics,
                Some("7"),
                |_, resume| {
                    seen.lock().expect("lock").push(resume);
                    Box::pin(std::future::pending())
                },
            );
        }
        assert_eq!(*seen.lock().expect("lock"), [None, Some("7".to_string())]);
    }
}

//! The writer with a private stream whose client is an outlet: events that go past the ring,
//! a socket that takes only part of an event, and heartbeats that count those writes.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::*;
use crate::metrics::Metrics;
use crate::sse::Event;
use crate::stream::{Hub, Outlet, StreamKey};

/// A client socket shared by the writer and the outlet: one byte record in write order, and
/// room for the outlet (`None`: all of it; the writer's sends always go whole).
#[derive(Default)]
struct Socket {
    written: Vec<u8>,
    room: Option<usize>,
    writer_sends: usize,
}

#[derive(Clone, Default)]
struct SharedSocket(Arc<Mutex<Socket>>);

impl SharedSocket {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock").written).to_string()
    }

    fn set_room(&self, room: Option<usize>) {
        self.0.lock().expect("lock").room = room;
    }

    fn writer_sends(&self) -> usize {
        self.0.lock().expect("lock").writer_sends
    }
}

impl Outlet for SharedSocket {
    fn try_send(&self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut socket = self.0.lock().expect("lock");
        let taken = socket
            .room
            .map_or(bytes.len(), |room| room.min(bytes.len()));
        if taken == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        socket.written.extend_from_slice(&bytes[..taken]);
        socket.room = socket.room.map(|room| room - taken);
        Ok(taken)
    }
}

impl Downstream for SharedSocket {
    async fn send(&mut self, bytes: Bytes) -> Result<(), ClientGone> {
        let mut socket = self.0.lock().expect("lock");
        socket.writer_sends += 1;
        socket.written.extend_from_slice(&bytes);
        Ok(())
    }

    async fn closed(&mut self) {
        std::future::pending::<()>().await;
    }

    fn outlet(&self) -> Option<Arc<dyn Outlet>> {
        Some(Arc::new(self.clone()))
    }
}

/// A writer on a private stream whose feed publishes what the test sends it.
struct Private {
    events: mpsc::UnboundedSender<Event>,
    socket: SharedSocket,
    metrics: RouteMetrics,
    writer: tokio::task::JoinHandle<(StreamEnd, Tally)>,
    _stop: watch::Sender<Option<RouteStop>>,
}

impl Private {
    async fn start(spec: StreamSpec) -> Private {
        let metrics = Metrics::register().expect("metrics").route("/t");
        let (events, mut received) = mpsc::unbounded_channel::<Event>();
        let spec = Arc::new(spec);
        let mut subscription = Hub::new().join(StreamKey::Private, &spec, &metrics, None, {
            move |out, _| {
                Box::pin(async move {
                    while let Some(event) = received.recv().await {
                        out.publish(event);
                    }
                    out.finish();
                })
            }
        });
        let socket = SharedSocket::default();
        let (stop, signal) = watch::channel(None);
        let (mut client, route) = (socket.clone(), metrics.clone());
        let writer = tokio::spawn(async move {
            let mut ends = Ends {
                stop: signal,
                expires: None,
            };
            let mut tally = Tally::default();
            let client = &mut client;
            let end = run(
                client,
                &mut subscription,
                &spec,
                &mut ends,
                &route,
                &mut tally,
            )
            .await;
            (end, tally)
        });
        settle().await;
        Private {
            events,
            socket,
            metrics,
            writer,
            _stop: stop,
        }
    }

    async fn publish(&self, data: &str) {
        self.events.send(Event::message(data)).expect("feed");
        settle().await;
    }

    /// The body after the `retry:` line.
    fn events_written(&self) -> String {
        let text = self.socket.text();
        text.split_once("\n\n").expect("retry frame").1.to_string()
    }

    /// Ends the feed (the upstream ends) and returns the writer's end and tally.
    async fn finish(self) -> (StreamEnd, Tally) {
        drop(self.events);
        self.writer.await.expect("writer")
    }
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// The `data:` values of `body`, in order, and whether every event in it is whole.
fn data_lines(body: &str) -> Vec<&str> {
    assert!(body.is_empty() || body.ends_with("\n\n"), "{body:?}");
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .collect()
}

#[tokio::test]
async fn events_for_a_caught_up_client_go_past_the_ring_and_are_counted() {
    let private = Private::start(StreamSpec::for_tests()).await;
    for data in ["a", "b", "c"] {
        private.publish(data).await;
    }
    let body = private.events_written();
    assert_eq!(data_lines(&body), ["a", "b", "c"]);
    assert_eq!(private.socket.writer_sends(), 1, "only the retry line");
    let ids: Vec<u64> = body
        .lines()
        .filter_map(|line| line.strip_prefix("id: ")?.parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let metrics = private.metrics.clone();
    assert_eq!(metrics.events_sent.get(), 3);
    assert_eq!(metrics.bytes_sent.get(), body.len() as u64);
    assert_eq!(metrics.event_delivery.get_sample_count(), 3);
    let (end, tally) = private.finish().await;
    assert_eq!(end, StreamEnd::UpstreamEnded);
    assert_eq!((tally.events, tally.bytes), (3, body.len() as u64));
}

#[tokio::test]
async fn an_event_the_socket_cut_is_finished_by_the_writer_before_the_next() {
    let private = Private::start(StreamSpec::for_tests()).await;
    private.publish("first").await;
    private.socket.set_room(Some(5));
    private.publish("cut").await;
    private.publish("queued").await;
    let body = private.events_written();
    assert_eq!(data_lines(&body), ["first", "cut", "queued"]);
    // The rest; then the next event, which the full socket refused.
    assert_eq!(private.socket.writer_sends(), 3);
    private.socket.set_room(None);
    private.publish("through again").await;
    assert_eq!(private.socket.writer_sends(), 3);
    let body = private.events_written();
    assert_eq!(
        data_lines(&body),
        ["first", "cut", "queued", "through again"]
    );
    assert_eq!(private.metrics.events_sent.get(), 4);
    assert_eq!(private.metrics.bytes_sent.get(), body.len() as u64);
    assert_eq!(private.metrics.event_delivery.get_sample_count(), 4);
    let (_, tally) = private.finish().await;
    assert_eq!((tally.events, tally.bytes), (4, body.len() as u64));
}

#[tokio::test]
async fn a_full_socket_sends_events_the_ring_way_in_order() {
    let private = Private::start(StreamSpec::for_tests()).await;
    private.socket.set_room(Some(0));
    private.publish("one").await;
    private.publish("two").await;
    private.socket.set_room(None);
    private.publish("three").await;
    assert_eq!(
        data_lines(&private.events_written()),
        ["one", "two", "three"]
    );
    assert_eq!(private.metrics.events_sent.get(), 3);
}

#[tokio::test(start_paused = true)]
async fn writes_through_the_outlet_put_the_heartbeat_off() {
    let spec = StreamSpec {
        heartbeat: Some(Duration::from_secs(5)),
        ..StreamSpec::for_tests()
    };
    let private = Private::start(spec).await;
    for data in ["a", "b", "c", "d"] {
        tokio::time::advance(Duration::from_secs(3)).await;
        private.publish(data).await;
    }
    assert_eq!(private.metrics.heartbeats_sent.get(), 0, "never 5 s silent");
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(private.metrics.heartbeats_sent.get(), 1);
    assert!(private.events_written().ends_with("data: d\n\n: hb\n\n"));
}

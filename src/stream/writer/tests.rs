//! The writer's tests: a hand-fed stream and a recording client, in paused time where it matters.

use std::sync::Arc;

use tokio::sync::watch;

use super::super::testing::{HandFed, Recorder};
use super::*;
use crate::sse::Event;

fn event(i: u32) -> Event {
    Event {
        id: Some(i.to_string()),
        ..Event::message(format!("n={i}"))
    }
}

/// Runs the writer on its own task; the handle yields how the stream ended.
fn spawn(
    spec: StreamSpec,
    mut client: Recorder,
    mut subscription: Subscription,
    mut ends: Ends,
    metrics: RouteMetrics,
) -> tokio::task::JoinHandle<StreamEnd> {
    tokio::spawn(async move {
        let mut tally = Tally::default();
        run(
            &mut client,
            &mut subscription,
            &spec,
            &mut ends,
            &metrics,
            &mut tally,
        )
        .await
    })
}

/// A route's stop signal, and the ends of one client of it (expiring at `expires`).
fn ends(expires: Option<Instant>) -> (watch::Sender<Option<RouteStop>>, Ends) {
    let (stop, signal) = watch::channel(None);
    let ends = Ends {
        stop: signal,
        expires,
    };
    (stop, ends)
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A writer running for `spec` on a hand-fed stream, with what it writes; the route's stop
/// and the client's close switch are held, so neither ends it.
struct Started {
    fed: HandFed,
    written: Arc<std::sync::Mutex<Vec<u8>>>,
    writer: tokio::task::JoinHandle<StreamEnd>,
    _stop: watch::Sender<Option<RouteStop>>,
    _close: watch::Sender<bool>,
}

/// Starts a writer for `spec` and lets it write its first frame.
async fn started(spec: StreamSpec) -> Started {
    let (fed, subscription) = HandFed::new(spec.clone(), None);
    let (client, close) = Recorder::new();
    let written = client.written.clone();
    let (stop, ends) = ends(None);
    let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
    settle().await;
    Started {
        fed,
        written,
        writer,
        _stop: stop,
        _close: close,
    }
}

#[tokio::test(start_paused = true)]
async fn retry_first_then_whole_events_with_heartbeats_only_between_them() {
    let spec = StreamSpec {
        heartbeat: Some(Duration::from_secs(5)),
        retry: Duration::from_secs(10),
        ..StreamSpec::for_tests()
    };
    let run = started(spec).await;
    let (fed, written) = (&run.fed, &run.written);
    fed.out.publish(event(1));
    settle().await;
    tokio::time::advance(Duration::from_secs(6)).await;
    settle().await;
    fed.out.publish(event(2));
    settle().await;
    let text = Recorder::text(written);
    let (retry, rest) = text.split_once("\n\n").expect("retry frame");
    let retry: u64 = retry
        .strip_prefix("retry: ")
        .and_then(|r| r.parse().ok())
        .expect("retry value");
    assert!((8000..=12000).contains(&retry), "10s ±20%: {retry}");
    assert_eq!(rest, "id: 1\ndata: n=1\n\n: hb\n\nid: 2\ndata: n=2\n\n");
    assert_eq!(fed.metrics.heartbeats_sent.get(), 1);
    assert_eq!(fed.metrics.events_sent.get(), 2);
    run.writer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_comes_only_after_a_full_period_of_silence_since_the_last_write() {
    let spec = StreamSpec {
        heartbeat: Some(Duration::from_secs(5)),
        ..StreamSpec::for_tests()
    };
    let run = started(spec).await;
    let (fed, written) = (&run.fed, &run.written);
    let body = || {
        let text = Recorder::text(written);
        text.split_once("\n\n").expect("retry frame").1.to_string()
    };
    // Events at 0 s and 3 s: the timer set at the start (due at 5 s) waits again until 8 s.
    fed.out.publish(event(1));
    for (at, publish) in [(3, true), (6, false)] {
        tokio::time::advance(Duration::from_secs(3)).await;
        settle().await;
        if publish {
            fed.out.publish(event(2));
            settle().await;
        }
        assert_eq!(fed.metrics.heartbeats_sent.get(), 0, "at {at} s");
    }
    tokio::time::advance(Duration::from_secs(3)).await;
    settle().await;
    assert_eq!(body(), "id: 1\ndata: n=1\n\nid: 2\ndata: n=2\n\n: hb\n\n");
    // And every period after that while nothing is written.
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(fed.metrics.heartbeats_sent.get(), 2);
    run.writer.abort();
}

#[tokio::test(start_paused = true)]
async fn stops_lifetime_and_expiry_end_with_a_final_retry() {
    let hour = Duration::from_secs(3600);
    let cases = [
        (
            None,
            None,
            Some(RouteStop::Shutdown),
            StreamEnd::Stopped(RouteStop::Shutdown),
        ),
        (
            None,
            None,
            Some(RouteStop::Reload),
            StreamEnd::Stopped(RouteStop::Reload),
        ),
        (Some(60), None, None, StreamEnd::Lifetime),
        (Some(60), Some(30), None, StreamEnd::TokenExpired),
        (None, Some(30), None, StreamEnd::TokenExpired),
    ];
    // Each case also after events have been written: the stop and deadline waits are
    // polled only when due once the stream runs, and must still end it.
    let cases = cases.iter().flat_map(|&case| [(case, 0), (case, 3)]);
    for ((lifetime, expires_in, stop_with, expected), events_first) in cases {
        let spec = StreamSpec {
            max_lifetime: lifetime.map(Duration::from_secs),
            ..StreamSpec::for_tests()
        };
        let (fed, subscription) = HandFed::new(spec.clone(), None);
        let (client, _close) = Recorder::new();
        let written = client.written.clone();
        let expires = expires_in.map(|s| Instant::now() + Duration::from_secs(s));
        let (stop, ends) = ends(expires);
        let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
        settle().await;
        for i in 1..=events_first {
            fed.out.publish(event(i));
            settle().await;
        }
        match stop_with {
            Some(reason) => drop(stop.send_replace(Some(reason))),
            None => tokio::time::advance(hour).await,
        }
        let end = writer.await.expect("writer");
        assert_eq!(end, expected);
        let text = Recorder::text(&written);
        assert_eq!(text.matches("retry: ").count(), 2, "{expected:?}: {text}");
        assert_eq!(
            text.matches("id: ").count(),
            events_first as usize,
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_ends_its_stream() {
    let spec = StreamSpec::for_tests();
    let (fed, subscription) = HandFed::new(spec.clone(), None);
    let (client, close) = Recorder::new();
    let (_stop, ends) = ends(None);
    let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
    settle().await;
    close.send_replace(true);
    let end = tokio::time::timeout(Duration::from_secs(5), writer).await;
    assert_eq!(end.expect("ended").expect("writer"), StreamEnd::ClientGone);
}

#[tokio::test]
async fn a_stalled_client_past_max_lag_is_disconnected() {
    let spec = StreamSpec {
        max_lag: 64,
        ..StreamSpec::for_tests()
    };
    let (fed, subscription) = HandFed::new(spec.clone(), None);
    let (mut client, _close) = Recorder::new();
    client.stall_after = Some(1);
    let (_stop, ends) = ends(None);
    let writer = spawn(spec, client, subscription, ends, fed.metrics.clone());
    settle().await;
    for i in 0..10 {
        fed.out.publish(event(i));
    }
    let end = tokio::time::timeout(Duration::from_secs(5), writer).await;
    assert_eq!(end.expect("ended").expect("writer"), StreamEnd::SlowClient);
    assert_eq!(fed.metrics.slow_client_disconnects.get(), 1);
}

#[tokio::test]
async fn a_private_feed_goes_on_while_its_stalled_client_blocks_a_write() {
    let spec = StreamSpec {
        max_lag: 64,
        ..StreamSpec::for_tests()
    };
    let metrics = crate::metrics::Metrics::register()
        .expect("metrics")
        .route("/t");
    let subscription = super::super::Hub::new().join(
        super::super::StreamKey::Private,
        &Arc::new(spec.clone()),
        &metrics,
        None,
        |out, _| {
            Box::pin(async move {
                for i in 0..10 {
                    out.publish(event(i));
                    tokio::task::yield_now().await;
                }
                std::future::pending::<()>().await;
            })
        },
    );
    let (mut client, _close) = Recorder::new();
    client.stall_after = Some(2);
    let (_stop, ends) = ends(None);
    let writer = spawn(spec, client, subscription, ends, metrics.clone());
    let end = tokio::time::timeout(Duration::from_secs(5), writer).await;
    assert_eq!(end.expect("ended").expect("writer"), StreamEnd::SlowClient);
    assert_eq!(metrics.slow_client_disconnects.get(), 1);
}

#[tokio::test]
async fn only_live_events_are_timed_in_event_delivery_seconds() {
    let run = started(StreamSpec::for_tests()).await;
    let fed = &run.fed;
    for i in 1..=3 {
        fed.out.publish(event(i));
    }
    settle().await;
    // A second client resumes after id 1: events 2 and 3 are replayed to it, then 4 is live.
    let (client, _close) = Recorder::new();
    let written = client.written.clone();
    let (_stop, ends) = ends(None);
    let resumed = fed.join(Some("1"));
    let writer = spawn(
        StreamSpec::for_tests(),
        client,
        resumed,
        ends,
        fed.metrics.clone(),
    );
    settle().await;
    fed.out.publish(event(4));
    settle().await;
    let text = Recorder::text(&written);
    assert!(text.ends_with("id: 2\ndata: n=2\n\nid: 3\ndata: n=3\n\nid: 4\ndata: n=4\n\n"));
    assert_eq!(fed.metrics.events_sent.get(), 4 + 3);
    // Four live events to the first client, one to the second: the replay is not latency.
    assert_eq!(fed.metrics.event_delivery.get_sample_count(), 4 + 1);
    writer.abort();
    run.writer.abort();
}

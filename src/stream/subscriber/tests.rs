use super::super::testing::{batch, HandFed};
use super::super::{Backlog, Snapshot, StreamSpec};
use super::*;
use crate::sse::Event;

fn with_id(id: &str, data: &str) -> Event {
    Event {
        id: Some(id.to_string()),
        ..Event::message(data)
    }
}

fn ids(batch: &[StoredEvent]) -> Vec<&str> {
    batch.iter().map(StoredEvent::id).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn what_a_wake_up_reads_lies_in_the_first_64_bytes() {
    let hot = std::mem::offset_of!(Subscription, membership) + std::mem::size_of::<usize>();
    assert!(hot <= 64, "{hot} bytes");
}

#[tokio::test]
async fn every_subscriber_reads_every_event_once_in_order() {
    let (fed, mut first) = HandFed::new(StreamSpec::for_tests(), None);
    let mut second = fed.join(None);
    for i in 1..=3 {
        fed.out.publish(with_id(&i.to_string(), "x"));
    }
    for subscription in [&mut first, &mut second] {
        subscription.ready().await;
        assert_eq!(ids(&batch(subscription)), ["1", "2", "3"]);
        assert!(batch(subscription).is_empty());
    }
    let mut wire = Vec::new();
    first
        .stream()
        .read(|ring| ring.after(0, usize::MAX, &mut wire));
    assert_eq!(text(&wire[0].wire), "id: 1\ndata: x\n\n");
}

/// A relay that numbers from 100 and records what it was handed (an end as number 0).
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<(u64, String, bool)>>);

impl super::super::Relay for Recording {
    fn next_number(&self) -> u64 {
        100 + self.0.lock().expect("lock").len() as u64
    }

    fn relay(&self, number: u64, id: &str, _event: &Event, snapshot: Option<&Snapshot>) {
        let entry = (number, id.to_string(), snapshot.is_some());
        self.0.lock().expect("lock").push(entry);
    }

    fn finish(&self) {
        self.0.lock().expect("lock").push((0, "end".into(), false));
    }
}

#[tokio::test]
async fn a_relayed_publisher_numbers_and_hands_over_each_event_once_then_the_end() {
    let (fed, mut first) = HandFed::new(StreamSpec::for_tests(), None);
    let _second = fed.join(None);
    let relay = Arc::new(Recording::default());
    let out = fed.out.relayed(relay.clone());
    out.publish(Event::message("a"));
    out.publish(with_id("up-1", "b"));
    let snapshot = Snapshot {
        join_event: "snapshot".into(),
        data: "{}".into(),
    };
    out.publish_with_snapshot(Event::message("c"), snapshot);
    out.finish();
    assert!(fed.out.is_finished(), "the stream itself ends too");
    first.ready().await;
    assert_eq!(ids(&batch(&mut first)), ["100", "up-1", "102"]);
    assert!(first.is_finished());
    let handed = relay.0.lock().expect("lock").clone();
    let want = [
        (100, "100", false),
        (101, "up-1", false),
        (102, "102", true),
        (0, "end", false),
    ];
    let want: Vec<(u64, String, bool)> = want
        .iter()
        .map(|(n, id, s)| (*n, id.to_string(), *s))
        .collect();
    assert_eq!(handed, want, "once per event, whatever the subscribers");
}

#[tokio::test]
async fn resume_inside_the_ring_replays_exactly_what_followed() {
    let (fed, _first) = HandFed::new(StreamSpec::for_tests(), None);
    for i in 1..=5 {
        fed.out.publish(with_id(&i.to_string(), "x"));
    }
    let mut resumed = fed.join(Some("3"));
    assert!(resumed.take_preamble().is_empty());
    assert_eq!(ids(&batch(&mut resumed)), ["4", "5"]);
    assert_eq!(fed.sample(r#"sse_edge_replay_hits_total{route="/t"}"#), 1.0);
}

#[tokio::test]
async fn an_unknown_id_gets_a_gap_marker_and_a_snapshot_route_a_reset() {
    let (fed, _first) = HandFed::new(StreamSpec::for_tests(), None);
    fed.out.publish(with_id("1", "x"));
    let mut lost = fed.join(Some("gone"));
    let gap = text(&lost.take_preamble());
    assert!(gap.starts_with("event: gap\nid: 1\n"), "{gap}");
    assert!(gap.contains(r#""last_event_id":"gone""#), "{gap}");
    assert!(batch(&mut lost).is_empty(), "nothing replayed");

    let snapshot = Snapshot {
        join_event: "snapshot".into(),
        data: r#"{"v":2}"#.into(),
    };
    fed.out
        .publish_with_snapshot(Event::named("patch", "[]"), snapshot);
    let mut late = fed.join(None);
    let joined = text(&late.take_preamble());
    assert!(joined.starts_with("event: snapshot\n"), "{joined}");
    assert!(joined.ends_with("data: {\"v\":2}\n\n"), "{joined}");
    let mut reset = fed.join(Some("gone"));
    assert!(text(&reset.take_preamble()).starts_with("event: reset\n"));
    assert_eq!(
        fed.sample(r#"sse_edge_replay_misses_total{route="/t"}"#),
        2.0
    );
}

#[tokio::test]
async fn proxy_ids_increase_and_unsafe_or_oversize_events_are_refused() {
    let spec = StreamSpec {
        max_event_bytes: 8,
        ..StreamSpec::for_tests()
    };
    let (fed, mut subscription) = HandFed::new(spec, None);
    fed.out.attach(&std::sync::Arc::from("http://u/s"));
    fed.out.publish(Event::message("a"));
    fed.out.publish(Event::message("far too large"));
    fed.out.publish(with_id("6\0x", "b"));
    fed.out.publish(Event::message("c"));
    let batch = batch(&mut subscription);
    assert_eq!(batch.len(), 2, "only the safe events");
    let (first, second): (u64, u64) = (
        batch[0].id().parse().expect("numeric id"),
        batch[1].id().parse().expect("numeric id"),
    );
    assert!(second > first && second < 1 << 53);
    let errors = |reason: &str| {
        fed.sample(&format!(
            "sse_edge_upstream_errors_total{{backend=\"http://u/s\",reason=\"{reason}\",route=\"/t\"}}"
        ))
    };
    assert_eq!(errors("oversize_event"), 1.0);
    assert_eq!(errors("unsafe_field"), 1.0);
}

#[tokio::test]
async fn backlog_counts_only_live_bytes_and_drop_oldest_skips_ahead() {
    let (fed, _first) = HandFed::new(StreamSpec::for_tests(), None);
    fed.out.publish(with_id("1", "old"));
    let mut subscription = fed.join(Some("1"));
    assert_eq!(subscription.backlog(), Backlog::Bytes(0));
    for i in 2..=4 {
        fed.out.publish(with_id(&i.to_string(), "0123456789"));
    }
    let each = "id: 2\ndata: 0123456789\n\n".len() as u64;
    assert_eq!(subscription.backlog(), Backlog::Bytes(3 * each));
    assert!(subscription.is_lagging(2 * each));
    subscription.skip_oldest(each);
    assert_eq!(ids(&batch(&mut subscription)), ["4"]);
}

//! The publish side of a stream: what a source holds to feed it, and the hook that hands
//! each event elsewhere too. A publisher made with [`Publisher::relayed`] hands every event,
//! once, to a [`Relay`] that numbers it (a cluster holder's log); without one, publishing is
//! exactly the single-instance path.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::{Snapshot, Stream};
use crate::metrics::RouteMetrics;
use crate::sse::{EncodeError, Event, Parsed};

/// Where a [`Publisher`] made with [`Publisher::relayed`] sends each event it appends, and
/// who numbers its events: the hook of a stream whose events also go elsewhere (a cluster's
/// shared log). It is called once per event, never per subscriber.
pub trait Relay: Send + Sync {
    /// The number of the next event: increasing for the stream wherever it is published.
    /// An event the source left without an id is sent with this number as its id.
    fn next_number(&self) -> u64;

    /// Hands over an event just appended locally, with its number and the id it was sent
    /// with, and the document it leads to (poll routes).
    fn relay(&self, number: u64, id: &str, event: &Event, snapshot: Option<&Snapshot>);

    /// Hands over the end of the stream for good, after every event it was handed.
    fn finish(&self);
}

/// What feeds a stream: a task that publishes through its [`Publisher`] until it is dropped.
/// The core does not know what is behind it (an upstream connection, a poller, a socket).
pub type Feed = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a source holds to feed its stream.
#[derive(Clone)]
pub struct Publisher {
    stream: Arc<Stream>,
    relay: Option<Arc<dyn Relay>>,
}

impl Publisher {
    pub(in crate::stream) fn new(stream: Arc<Stream>) -> Self {
        Publisher {
            stream,
            relay: None,
        }
    }

    /// A publisher into the same stream whose events `relay` numbers and receives after
    /// each append (the cluster holder's source publishes through one).
    pub fn relayed(&self, relay: Arc<dyn Relay>) -> Publisher {
        Publisher {
            stream: self.stream.clone(),
            relay: Some(relay),
        }
    }

    /// Publishes a complete event. An event whose `event`/`id` would break the framing is
    /// refused and counted as `unsafe_field`; one larger than `max_event_bytes` as
    /// `oversize_event`.
    pub fn publish(&self, event: Event) {
        self.publish_inner(event, None);
    }

    /// Publishes an event as an SSE parser handed it over: one received in the encoder's
    /// form goes on as its bytes (decoded only for a relay), with the same refusals as
    /// [`Publisher::publish`].
    pub fn publish_parsed(&self, event: Parsed<'_>) {
        match event {
            Parsed::AsSent(event) if self.relay.is_none() => {
                if self.admits(event.data_len()) {
                    self.stream.append_as_sent(&event);
                }
            }
            event => self.publish(event.into_event()),
        }
    }

    /// Publishes an event together with the full document it leads to, which later
    /// subscribers receive first (poll routes).
    pub fn publish_with_snapshot(&self, event: Event, snapshot: Snapshot) {
        self.publish_inner(event, Some(snapshot));
    }

    /// Whether an event with `data_len` bytes of data may be appended (one past
    /// `max_event_bytes` is counted as `oversize_event`); an event admitted means the
    /// upstream is delivering again.
    fn admits(&self, data_len: usize) -> bool {
        if data_len > self.stream.hot.spec.max_event_bytes {
            self.stream.count_error("oversize_event");
            return false;
        }
        self.stream.hot.failing.store(false, Ordering::Relaxed);
        true
    }

    fn publish_inner(&self, event: Event, snapshot: Option<Snapshot>) {
        if !self.admits(event.data.len()) {
            return;
        }
        let appended = match &self.relay {
            None => self.stream.append(&event, event.id.as_deref(), snapshot),
            Some(relay) => relayed(&self.stream, relay.as_ref(), event, snapshot),
        };
        if appended.is_err() {
            self.stream.count_error("unsafe_field");
        }
    }

    /// Names the upstream that feeds the stream from now on (one backend of a pool, by its
    /// configured URL): the `backend` label of every upstream error counted after this.
    pub fn attach(&self, backend: &Arc<str>) {
        *self
            .stream
            .backend
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = backend.clone();
    }

    /// Counts an upstream error that is no outage — a message refused or dropped — against
    /// the attached backend.
    pub fn count_error(&self, reason: &'static str) {
        self.stream.count_error(reason);
    }

    /// Records an upstream failure; the first one of an outage may notify clients. Returns
    /// whether it is the first of an outage, so the caller can report it once.
    pub fn upstream_failed(&self, reason: &'static str) -> bool {
        self.stream.count_error(reason);
        let first_of_outage = !self.stream.hot.failing.swap(true, Ordering::Relaxed);
        if first_of_outage && self.stream.hot.spec.upstream_error_event {
            let data = serde_json::json!({ "reason": reason }).to_string();
            // The event sits in the ring like any other, so resuming clients see it too.
            let event = Event::named("upstream-error", data);
            let _ = match &self.relay {
                None => self.stream.append(&event, None, None),
                Some(relay) => relayed(&self.stream, relay.as_ref(), event, None),
            };
        }
        first_of_outage
    }

    /// Marks the upstream healthy again (a connect or a successful poll); returns whether
    /// it was failing, so the caller can report the recovery once.
    pub fn upstream_recovered(&self) -> bool {
        self.stream.hot.failing.swap(false, Ordering::Relaxed)
    }

    /// Ends the stream for good: its subscribers write what is queued, then close. A
    /// relayed publisher hands the end to its relay too (a cluster's followers end there).
    pub fn finish(&self) {
        if let Some(relay) = &self.relay {
            relay.finish();
        }
        self.stream.hot.head.finish();
    }

    /// Whether the stream has ended for good (a cluster feed then stops following it).
    pub fn is_finished(&self) -> bool {
        self.stream.hot.head.is_finished()
    }

    /// The largest event the stream accepts (`max_event_bytes`), for parsers to cut at.
    pub fn max_event_bytes(&self) -> usize {
        self.stream.hot.spec.max_event_bytes
    }

    /// The route's metric handles.
    pub fn metrics(&self) -> &RouteMetrics {
        &self.stream.metrics
    }
}

/// Appends an event numbered by `relay` (its number is the id when the source gave none),
/// then hands it over.
fn relayed(
    stream: &Stream,
    relay: &dyn Relay,
    mut event: Event,
    snapshot: Option<Snapshot>,
) -> Result<(), EncodeError> {
    let number = relay.next_number();
    event.id.get_or_insert_with(|| number.to_string());
    let id = event.id.as_deref().unwrap_or_default();
    stream.append(&event, Some(id), snapshot.clone())?;
    relay.relay(number, id, &event, snapshot.as_ref());
    Ok(())
}

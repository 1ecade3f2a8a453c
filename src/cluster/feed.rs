//! One stream's feed on a cluster node: follow the stream's log while another node holds
//! its lease, hold it (run the source, append every event) when this node gets it.
//!
//! ```text
//!  follow ── try the lease every third of `lease` ──► got it, or Redis away for `lease`
//!    ▲                                                   │
//!    │                                          catch up from the log, then run the
//!    │                                          source: sse resumes with the last id,
//!    └──── another node renewed it ◄──────────  poll from the last document
//! ```
//!
//! Redis away: a holder keeps its source and appends later (bounded); a follower runs the
//! source itself once the lease it could not see would have run out. When Redis returns and
//! another node holds the stream, what this node's clients saw and what the log holds have
//! parted: the log's last event is published as a marker (`reset` with the document on poll
//! routes, else `gap`) and following continues after it.
//!
//! An upstream that ends the stream for good (an sse `204`) ends it on every node: the
//! holder appends an end mark, and a stream that follows the log ends where it reads it
//! (its feed then stops; the holder keeps the lease until its own stream goes). A stream
//! created after the mark passes it: its first client is a new request, and the node that
//! then holds the lease asks the upstream again, as a single instance would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::appender::Appender;
use super::entry::Record;
use super::error::Op;
use super::lease::{Held, Lease};
use super::link::Link;
use super::reader::{self, Reader};
use super::tail::Tail;
use super::Source;
use crate::sse::Event;
use crate::stream::{Publisher, Snapshot};

/// Longest wait between lease attempts, whatever `lease`.
const MAX_TRY: Duration = Duration::from_secs(1);

/// Everything one stream's cluster feed needs.
pub struct StreamFeed {
    /// The node's link to Redis.
    pub link: Arc<Link>,
    /// The node's follower task.
    pub reader: Arc<Reader>,
    /// The stream key's lease.
    pub lease: Lease,
    /// The stream's log key.
    pub events: String,
    /// Events kept in the log.
    pub replay: usize,
    /// The local stream.
    pub out: Publisher,
    /// What this node published last.
    pub tail: Tail,
    /// How to run the source here.
    pub source: Arc<dyn Source>,
    /// The first client's Last-Event-ID, for a source that resumes upstream.
    pub resume: Option<String>,
}

impl StreamFeed {
    /// Follows and holds in turn until the stream ends for good or the hub drops the feed.
    pub async fn run(mut self) {
        while self.follow_until_held().await {
            self.hold().await;
            if self.out.is_finished() {
                return;
            }
        }
    }

    /// Follows the log until this node holds the lease, or Redis has been unreachable
    /// for `lease` (then this node runs the source alone): `true`. `false`: the log's end
    /// mark ended the stream.
    async fn follow_until_held(&self) -> bool {
        let _following = self
            .reader
            .follow(&self.events, self.tail.clone(), self.out.clone());
        let mut unreachable_since: Option<Instant> = None;
        while !self.out.is_finished() {
            match self.lease.acquire().await {
                Ok(true) => return true,
                Ok(false) => unreachable_since = None,
                Err(_) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.lease.length() {
                        tracing::warn!(
                            route = self.out.metrics().route(),
                            "cluster: redis unreachable; running the source on this node"
                        );
                        return true;
                    }
                }
            }
            tokio::time::sleep(try_period(self.lease.length())).await;
        }
        false
    }

    /// Runs the source here, appending its events, until another node holds the lease
    /// (at once if the log this node had not read yet ends the stream).
    async fn hold(&mut self) {
        let mut held = Held::new(self.lease.clone());
        self.catch_up().await;
        if self.out.is_finished() {
            return;
        }
        let (appender, appends) = Appender::new(
            self.link.clone(),
            self.tail.clone(),
            self.events.clone(),
            self.replay,
        );
        held.release_after(appends);
        let out = self.out.relayed(Arc::new(appender));
        let last = self.tail.last();
        let source = match last.id {
            Some(id) => self.source.take_over(out, id, last.document),
            None => self.source.start(out, self.resume.take()),
        };
        // A source that ended for good (an sse upstream's 204) leaves the lease held: only
        // another node's lease ends this phase.
        let source = async {
            source.await;
            std::future::pending::<()>().await
        };
        tokio::select! {
            () = source => {}
            () = renew_until_lost(held.lease()) => {}
        }
        tracing::info!(
            route = self.out.metrics().route(),
            "cluster: another node holds the stream; following it"
        );
        self.mark_divergence().await;
    }

    /// After holding while another node held too, the log's end is not this node's last
    /// event: this node's clients get the log's last event as a marker — `reset` with its
    /// document on poll routes, else `gap` — and this node follows the log from there.
    async fn mark_divergence(&self) {
        let end = match self.log_end().await {
            Some(Record::Event(end)) => end,
            Some(Record::End(number)) => {
                // The other holder's upstream ended the stream for good: so it ends here.
                self.tail.pass(number);
                self.out.finish();
                return;
            }
            None => return,
        };
        if end.event.id == self.tail.last().id {
            // The same event (an upstream id both sources got): nothing was missed.
            self.tail.jump_to(&end);
            return;
        }
        tracing::warn!(
            route = self.out.metrics().route(),
            "cluster: events published on this node while redis was away differ from the \
             stream's log; clients get a marker"
        );
        self.tail.jump_to(&end);
        let id = end.event.id.clone();
        match end.snapshot {
            Some((join_event, document)) => {
                let reset = Event {
                    id,
                    ..Event::named("reset", document.as_str())
                };
                let snapshot = Snapshot {
                    join_event,
                    data: document,
                };
                self.out.publish_with_snapshot(reset, snapshot);
            }
            None => {
                let data = serde_json::json!({
                    "reason": "events published while the cluster was split are not in the stream's log",
                });
                let gap = Event {
                    id,
                    ..Event::named("gap", data.to_string())
                };
                self.out.publish(gap);
            }
        }
    }

    /// The last record of the stream's log, waiting up to `lease` for the new holder's first
    /// append (a Redis restarted empty); `None` when there is none by then.
    async fn log_end(&self) -> Option<Record> {
        let deadline = Instant::now() + self.lease.length();
        loop {
            if let Some(end) = self.read_log_end().await {
                return Some(end);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(try_period(self.lease.length())).await;
        }
    }

    async fn read_log_end(&self) -> Option<Record> {
        let newest = reader::newest(&self.link, self.events.clone(), 1).await?;
        newest.into_iter().next()
    }

    /// Publishes what the log holds past this node's last event (appended by the previous
    /// holder after this node's last read), so the source resumes from the log's end; an
    /// end mark there ends the stream instead.
    async fn catch_up(&self) {
        let (events, after) = (self.events.clone(), self.tail.last().number);
        let read = self
            .link
            .run(Op::Read, |mut c| async move {
                redis::cmd("XRANGE")
                    .arg(events)
                    .arg(format!("({after}-0"))
                    .arg("+")
                    .query_async::<redis::streams::StreamRangeReply>(&mut c)
                    .await
            })
            .await;
        for item in read.map(|r| r.ids).unwrap_or_default() {
            if let Some(record) = Record::parse(&item.id, &item.map) {
                reader::apply(&self.out, &self.tail, &record);
            }
        }
    }
}

/// Renews the lease every third of its length; returns when another node holds it. While
/// Redis is unreachable the node keeps the source (it carries on alone).
async fn renew_until_lost(lease: &Lease) {
    loop {
        tokio::time::sleep(lease.length() / 3).await;
        if let Ok(false) = lease.acquire().await {
            return;
        }
    }
}

/// The wait between a follower's lease attempts: a third of `lease` (at most 1 s), with
/// jitter so followers do not ask together.
fn try_period(lease: Duration) -> Duration {
    (lease / 3)
        .min(MAX_TRY)
        .mul_f64(0.75 + fastrand::f64() * 0.25)
}

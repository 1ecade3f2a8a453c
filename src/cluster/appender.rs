//! The holder's side of the stream log: every event its source publishes is numbered,
//! queued, and appended to Redis (`XADD ... MAXLEN ~ replay`), in batches, by one task per
//! held stream. The queue is bounded: while Redis is away the oldest events wait, and new
//! ones past the bound are dropped from the log (counted) — local clients still get them.
//!
//! The task outlives the stream on this node: what was queued when its last client left
//! (the end mark of an upstream that said stop, above all) is still appended, and the lease
//! is given back only after it (see [`super::lease::Held::release_after`]). Once the
//! stream is gone, a failed append is not tried again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::entry::{Entry, Record};
use super::error::Op;
use super::link::Link;
use super::tail::Tail;
use crate::sse::Event;
use crate::stream::{Relay, Snapshot};

/// Events waiting to be appended, at most.
pub const BACKLOG: usize = 4096;
/// Events appended by one pipeline, at most.
const BATCH: usize = 256;
/// How long a failed append waits before it is tried again.
const RETRY: Duration = Duration::from_millis(250);
/// How often the log's expiry is pushed back: once a minute, not once per batch, so an
/// event costs one command on the holder.
const TTL_REFRESH: Duration = Duration::from_secs(60);

/// The relay a holder's source publishes through.
pub struct Appender {
    tail: Tail,
    queue: mpsc::Sender<Record>,
    link: Arc<Link>,
}

impl Appender {
    /// The relay, and the task that drains its queue into `events`: it ends once the
    /// relay is dropped and what it queued is appended.
    pub fn new(
        link: Arc<Link>,
        tail: Tail,
        events: String,
        replay: usize,
    ) -> (Appender, JoinHandle<()>) {
        let (queue, pending) = mpsc::channel(BACKLOG);
        let drain = tokio::spawn(drain(link.clone(), pending, events, replay));
        (Appender { tail, queue, link }, drain)
    }

    fn queue(&self, record: Record) {
        if self.queue.try_send(record).is_err() {
            self.link.metrics.error("append");
        }
    }
}

impl Relay for Appender {
    fn next_number(&self) -> u64 {
        self.tail.next_number()
    }

    fn relay(&self, number: u64, id: &str, event: &Event, snapshot: Option<&Snapshot>) {
        let entry = Entry::new(number, id, event, snapshot);
        self.tail.advance(&entry);
        self.queue(Record::Event(entry));
    }

    fn finish(&self) {
        self.queue(Record::End(self.tail.next_number()));
    }
}

/// Appends what the queue holds, a batch per round trip, until the queue closes. A failed
/// batch is tried again while the stream lives here; once it is gone, it is let go.
async fn drain(
    link: Arc<Link>,
    mut pending: mpsc::Receiver<Record>,
    events: String,
    replay: usize,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut refreshed: Option<Instant> = None;
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let refresh = refreshed.is_none_or(|at| at.elapsed() >= TTL_REFRESH);
        while append(&link, &events, replay, &batch, refresh)
            .await
            .is_err()
        {
            if pending.is_closed() {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
        if refresh {
            refreshed = Some(Instant::now());
        }
        batch.clear();
    }
}

/// One pipeline of `XADD`s, then (`refresh`) the log's expiry pushed back. An entry Redis refuses (a
/// number not above the log's last, after two nodes held the stream during an outage) is
/// counted and skipped: the pipeline does not stop at it.
async fn append(
    link: &Link,
    events: &str,
    replay: usize,
    batch: &[Record],
    refresh: bool,
) -> Result<(), super::ClusterError> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for record in batch {
        pipe.cmd("XADD")
            .arg(events)
            .arg("MAXLEN")
            .arg("~")
            .arg(replay.max(1))
            .arg(record.log_id())
            .arg(record.fields());
    }
    if refresh {
        pipe.cmd("PEXPIRE").arg(events).arg(LOG_TTL_MS).ignore();
    }
    let results: Vec<redis::RedisResult<redis::Value>> = link
        .run(
            Op::Append,
            |mut c| async move { pipe.query_async(&mut c).await },
        )
        .await?;
    let mut appended = 0;
    for (record, result) in batch.iter().zip(&results) {
        match (record, result) {
            (_, Err(_)) => link.metrics.error("append"),
            (Record::Event(_), Ok(_)) => appended += 1,
            (Record::End(_), Ok(_)) => {}
        }
    }
    link.metrics.events_relayed.inc_by(appended);
    Ok(())
}

/// How long a stream's log outlives its last expiry refresh (at most a minute before its last
/// append): resumes after a quiet hour are gaps.
pub const LOG_TTL_MS: u64 = 3_600_000;

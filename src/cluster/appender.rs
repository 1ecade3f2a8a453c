//! The holder's side of the stream log: every event its source publishes is numbered,
//! queued, and appended to Redis (`XADD ... MAXLEN ~ replay`), in batches, by one task per
//! held stream. The queue is bounded: while Redis is away the oldest events wait, and new
//! ones past the bound are dropped from the log (counted) — local clients still get them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::entry::Entry;
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
    queue: mpsc::Sender<Entry>,
    link: Arc<Link>,
}

impl Appender {
    /// The relay, and the task that drains its queue into `events` (run while holding).
    pub fn new(
        link: Arc<Link>,
        tail: Tail,
        events: String,
        replay: usize,
    ) -> (Appender, impl std::future::Future<Output = ()>) {
        let (queue, pending) = mpsc::channel(BACKLOG);
        let drain = drain(link.clone(), pending, events, replay);
        (Appender { tail, queue, link }, drain)
    }
}

impl Relay for Appender {
    fn next_number(&self) -> u64 {
        self.tail.next_number()
    }

    fn relay(&self, number: u64, id: &str, event: &Event, snapshot: Option<&Snapshot>) {
        let entry = Entry::new(number, id, event, snapshot);
        self.tail.advance(&entry);
        if self.queue.try_send(entry).is_err() {
            self.link.metrics.error("append");
        }
    }
}

/// Appends what the queue holds, a batch per round trip, until the queue closes.
async fn drain(link: Arc<Link>, mut pending: mpsc::Receiver<Entry>, events: String, replay: usize) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut refreshed: Option<Instant> = None;
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let refresh = refreshed.is_none_or(|at| at.elapsed() >= TTL_REFRESH);
        while append(&link, &events, replay, &batch, refresh)
            .await
            .is_err()
        {
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
    batch: &[Entry],
    refresh: bool,
) -> Result<(), super::ClusterError> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for entry in batch {
        pipe.cmd("XADD")
            .arg(events)
            .arg("MAXLEN")
            .arg("~")
            .arg(replay.max(1))
            .arg(entry.log_id())
            .arg(entry.fields());
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
    let refused = results.iter().filter(|r| r.is_err()).count();
    for _ in 0..refused {
        link.metrics.error("append");
    }
    let appended = batch.len().saturating_sub(refused) as u64;
    link.metrics.events_relayed.inc_by(appended);
    Ok(())
}

/// How long a stream's log outlives its last expiry refresh (at most a minute before its last
/// append): resumes after a quiet hour are gaps.
pub const LOG_TTL_MS: u64 = 3_600_000;

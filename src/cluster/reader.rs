//! The follower's side: one task per node reads every stream log this node follows with a
//! single blocking `XREAD` over all their keys (not one connection or one read per key),
//! and publishes each new entry into the local stream — the core, ring and writer then serve
//! the clients as if the source ran here. An end mark ends the local stream.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::streams::StreamReadReply;
use tokio::sync::Notify;

use super::entry::Record;
use super::error::Op;
use super::link::{Link, READ_BLOCK};
use super::tail::Tail;
use crate::stream::Publisher;

/// Entries read per key and round trip, at most.
const COUNT: usize = 512;

/// One local stream following a log.
struct Follow {
    events: String,
    tail: Tail,
    out: Publisher,
}

/// Every log this node follows.
#[derive(Default)]
pub struct Reader {
    follows: Mutex<HashMap<u64, Follow>>,
    next: AtomicU64,
    changed: Notify,
}

/// A local stream's place among the followed logs; dropping it stops following.
pub struct Following {
    reader: Arc<Reader>,
    id: u64,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.reader.lock().remove(&self.id);
    }
}

impl Reader {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Follow>> {
        self.follows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follows the log `events` from after `tail`'s last number, publishing into `out`.
    pub fn follow(self: &Arc<Self>, events: &str, tail: Tail, out: Publisher) -> Following {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let follow = Follow {
            events: events.to_string(),
            tail,
            out,
        };
        self.lock().insert(id, follow);
        self.changed.notify_one();
        Following {
            reader: self.clone(),
            id,
        }
    }

    /// Applies `record` to every follower of `events` that has not applied it yet.
    fn deliver(&self, events: &str, record: &Record, link: &Link) {
        for follow in self.lock().values().filter(|f| f.events == events) {
            let applied = apply(&follow.out, &follow.tail, record);
            if applied && matches!(record, Record::Event(_)) {
                link.metrics.events_relayed.inc();
            }
        }
    }

    /// The keys to read and the id to read each after (the oldest any follower needs).
    fn cursors(&self) -> BTreeMap<String, u64> {
        let mut cursors = BTreeMap::new();
        for follow in self.lock().values() {
            let number = follow.tail.last().number;
            cursors
                .entry(follow.events.clone())
                .and_modify(|n: &mut u64| *n = (*n).min(number))
                .or_insert(number);
        }
        cursors
    }

    /// Reads and delivers, forever.
    pub async fn run(self: Arc<Self>, link: Arc<Link>) {
        loop {
            let cursors = self.cursors();
            if cursors.is_empty() {
                self.changed.notified().await;
                continue;
            }
            match read(&link, &cursors).await {
                Ok(reply) => {
                    for key in reply.keys {
                        for item in &key.ids {
                            if let Some(record) = Record::parse(&item.id, &item.map) {
                                self.deliver(&key.key, &record, &link);
                            }
                        }
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// Applies a record of the log to a local stream that follows it, if it is past `tail`:
/// an event is published (with its snapshot on poll routes), an end mark ends the stream.
/// Returns whether it was past `tail`. (Copied only then: every follower of the log on this
/// node is handed the same record.)
pub fn apply(out: &Publisher, tail: &Tail, record: &Record) -> bool {
    match record {
        Record::Event(entry) if tail.advance(entry) => {
            match entry.clone().into_parts() {
                (event, Some(snapshot)) => out.publish_with_snapshot(event, snapshot),
                (event, None) => out.publish(event),
            }
            true
        }
        Record::End(number) if tail.pass(*number) => {
            tracing::info!(
                route = out.metrics().route(),
                "cluster: the upstream ended the stream for good on its holder; it ends here too"
            );
            out.finish();
            true
        }
        Record::Event(_) | Record::End(_) => false,
    }
}

/// The newest `count` records of the log `events`, newest first; `None` when Redis is away.
pub async fn newest(link: &Link, events: String, count: usize) -> Option<Vec<Record>> {
    let reply = link
        .run(Op::Read, |mut c| async move {
            redis::cmd("XREVRANGE")
                .arg(events)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(count)
                .query_async::<redis::streams::StreamRangeReply>(&mut c)
                .await
        })
        .await
        .ok()?;
    let entries = reply.ids.iter();
    Some(
        entries
            .filter_map(|item| Record::parse(&item.id, &item.map))
            .collect(),
    )
}

/// One blocking `XREAD` over every followed key.
async fn read(
    link: &Link,
    cursors: &BTreeMap<String, u64>,
) -> Result<StreamReadReply, super::ClusterError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(COUNT)
        .arg("BLOCK")
        .arg(READ_BLOCK.as_millis() as u64)
        .arg("STREAMS");
    for key in cursors.keys() {
        cmd.arg(key);
    }
    for number in cursors.values() {
        cmd.arg(format!("{number}-0"));
    }
    let reply: Option<StreamReadReply> = link
        .read(|mut c| async move { cmd.query_async(&mut c).await })
        .await?;
    Ok(reply.unwrap_or_default())
}

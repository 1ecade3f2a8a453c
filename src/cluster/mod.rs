//! Cluster mode (SPEC §9): several instances share one upstream per stream key, the replay
//! window and the per-client limits through one Redis — no protocol of our own between
//! nodes. docs/cluster.md lists every key, its type and lifetime.
//!
//! ```text
//!  holder node                         Redis                       follower nodes
//!  source ─► Publisher::relayed ─► XADD {s:…}:events ──► XREAD (one, all keys) ─► Publisher
//!    │        (local ring too)          {s:…}:lease (SET NX PX, renewed)            │
//!    ▼                                                                               ▼
//!  local clients                    {c:…}:slots (client slots)              local clients
//! ```
//!
//! The core knows none of this: a cluster stream is a [`crate::stream::Feed`] like any other
//! ([`Cluster::feed`]), whose holder publishes through a [`crate::stream::Relay`]. Without a
//! `cluster:` block nothing here runs.

mod appender;
mod entry;
mod error;
mod feed;
mod keys;
mod lease;
mod link;
mod reader;
mod slots;
mod tail;

use std::sync::Arc;
use std::time::Duration;

pub use error::ClusterError;
pub use slots::Slot;

use crate::config::ClusterConfig;
use crate::metrics::ClusterMetrics;
use crate::stream::{Feed, Publisher};
use entry::Record;
use feed::StreamFeed;
use keys::StreamKeys;
use lease::Lease;
use link::Link;
use reader::Reader;
use slots::Slots;
use tail::Tail;

/// How a cluster stream runs its source on the node that holds it.
pub trait Source: Send + Sync {
    /// A stream new to the cluster: `resume` is the first client's Last-Event-ID, for an
    /// upstream that resumes by itself.
    fn start(&self, out: Publisher, resume: Option<String>) -> Feed;

    /// A stream taken over: its last event was sent with `last_id` and (poll routes) led to
    /// `document`. An sse source resumes with the id, a poller continues from the document.
    fn take_over(&self, out: Publisher, last_id: String, document: Option<String>) -> Feed;
}

/// The last records of a stream's log, read before its local stream is created.
#[derive(Debug, Default)]
pub struct History(Vec<Record>);

/// This node's part of the cluster.
pub struct Cluster {
    link: Arc<Link>,
    reader: Arc<Reader>,
    slots: Arc<Slots>,
    node: Arc<str>,
    prefix: String,
    lease: Duration,
}

impl Cluster {
    /// The cluster of `config`; nothing is connected until [`Cluster::run`].
    pub fn new(
        config: &ClusterConfig,
        metrics: ClusterMetrics,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let client = redis::Client::open(config.redis.as_str())
            .map_err(|error| ClusterError::Connect(error.to_string()))?;
        let timeout = (config.lease / 4).min(Duration::from_secs(1));
        let link = Arc::new(Link::new(client, timeout, metrics));
        let node: Arc<str> = format!("{:016x}-{}", fastrand::u64(..), std::process::id()).into();
        let slots = Slots::new(link.clone(), &config.prefix, node.clone(), config.lease);
        Ok(Arc::new(Cluster {
            link,
            reader: Arc::default(),
            slots: Arc::new(slots),
            node,
            prefix: config.prefix.clone(),
            lease: config.lease,
        }))
    }

    /// Connects and runs the node's cluster tasks — health, the follower's reads, slot
    /// renewals — until the process stops.
    pub async fn run(self: Arc<Self>) {
        if let Err(error) = self.link.connect() {
            tracing::error!(%error, "cluster: cannot set up the redis connections");
            return;
        }
        tracing::info!(node = %self.node, "cluster: joining");
        tokio::join!(
            self.link.watch_health(),
            self.reader.clone().run(self.link.clone()),
            self.slots.clone().renew(),
        );
    }

    /// The last `replay` events of the stream `key`'s log (empty when Redis is away), to
    /// fill a new local stream before its first client is positioned.
    pub async fn history(&self, key: &str, replay: usize) -> History {
        let events = StreamKeys::new(&self.prefix, key).events;
        let mut entries = reader::newest(&self.link, events, replay.max(1))
            .await
            .unwrap_or_default();
        entries.reverse();
        History(entries)
    }

    /// The feed of a new local stream for `key`: `history` is published into it at once
    /// (so a resuming client finds its id), then the stream follows or holds. An end mark
    /// in the history is passed, not applied: this stream is a new request.
    pub fn feed(
        self: &Arc<Self>,
        key: &str,
        history: History,
        out: Publisher,
        resume: Option<String>,
        source: Arc<dyn Source>,
        replay: usize,
    ) -> Feed {
        let keys = StreamKeys::new(&self.prefix, key);
        let tail = Tail::default();
        for record in history.0 {
            match record {
                Record::End(number) => {
                    tail.pass(number);
                }
                event => {
                    reader::apply(&out, &tail, &event);
                }
            }
        }
        let lease = Lease::new(self.link.clone(), keys.lease, self.node.clone(), self.lease);
        let feed = StreamFeed {
            link: self.link.clone(),
            reader: self.reader.clone(),
            lease,
            events: keys.events,
            replay,
            out,
            tail,
            source,
            resume,
        };
        Box::pin(feed.run())
    }

    /// Takes a cluster-wide slot for `client` (see [`Slots::acquire`]). `None`: over a
    /// limit across the cluster.
    pub async fn slot(
        &self,
        client: &str,
        per_client: usize,
        route: &str,
        route_limit: Option<usize>,
    ) -> Option<Slot> {
        self.slots
            .acquire(client, per_client, route, route_limit)
            .await
    }
}

//! Per-client limits across the cluster: each stream a client holds on any node is a member
//! of a sorted set per identity (and one per route with its own `per_client`), scored by
//! its expiry in ms of Redis time. Nodes renew their members every third of `lease`, so a
//! dead node's slots lapse within `lease`; a stream that ends removes its member at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::Script;

use super::error::{ClusterError, Op};
use super::keys::client_slots;
use super::link::Link;

/// Drops lapsed members, checks every limit, then adds the member to every set. Redis time,
/// so node clocks need not agree. KEYS: the sets; ARGV: member, lease ms, then one limit
/// per key. 1: taken; 0: a limit is reached.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[2 + i]) then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ARGV[2], ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return 1";

/// Pushes the expiry of one member this node holds (adding it back if it lapsed). KEYS:
/// its sets; ARGV: lease ms, member.
const RENEW: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ARGV[1], ARGV[2])
  redis.call('PEXPIRE', key, ARGV[1])
end
return 1";

/// [`RENEW`], hashed once.
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));

/// The client slots this node holds.
pub struct Slots {
    link: Arc<Link>,
    prefix: String,
    node: Arc<str>,
    lease: Duration,
    held: Mutex<HashMap<String, Vec<String>>>,
    next: AtomicU64,
}

/// One stream's slot in the cluster; removed when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    member: String,
}

impl Slots {
    /// The slots of `node`, lasting `lease` past each renewal.
    pub fn new(link: Arc<Link>, prefix: &str, node: Arc<str>, lease: Duration) -> Slots {
        Slots {
            link,
            prefix: prefix.to_string(),
            node,
            lease,
            held: Mutex::default(),
            next: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for `client` against `per_client`, and against `route_limit` on
    /// `route` when the route sets its own. `None`: a limit is reached cluster-wide. While
    /// Redis is away the slot is granted (this node's own limiter still counts) and written
    /// by the next renewal that reaches Redis, so the stream counts once the cluster is back.
    pub async fn acquire(
        self: &Arc<Self>,
        client: &str,
        per_client: usize,
        route: &str,
        route_limit: Option<usize>,
    ) -> Option<Slot> {
        let member = format!(
            "{}:{}",
            self.node,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let mut keys = vec![(client_slots(&self.prefix, client, None), per_client)];
        if let Some(limit) = route_limit {
            keys.push((client_slots(&self.prefix, client, Some(route)), limit));
        }
        let mut script = redis::cmd("EVAL");
        script.arg(ACQUIRE).arg(keys.len());
        for (key, _) in &keys {
            script.arg(key);
        }
        script.arg(&member).arg(self.lease.as_millis() as u64);
        for (_, limit) in &keys {
            script.arg(*limit);
        }
        let taken: Result<i64, ClusterError> = self
            .link
            .run(Op::Limits, |mut c| async move {
                script.query_async(&mut c).await
            })
            .await;
        if let Ok(0) = taken {
            return None;
        }
        let keys = keys.into_iter().map(|(key, _)| key).collect();
        self.lock().insert(member.clone(), keys);
        Some(Slot {
            slots: self.clone(),
            member,
        })
    }

    /// Renews every held slot every third of `lease`, forever — adding back any that lapsed
    /// while Redis was away (or restarted empty).
    pub async fn renew(self: Arc<Self>) {
        let lease_ms = self.lease.as_millis() as u64;
        loop {
            tokio::time::sleep(self.lease / 3).await;
            // The script's body crosses the network once per round, not once per member:
            // loaded first on the pipeline's connection (a Redis restarted empty has it
            // again), then called by its hash.
            let mut pipe = redis::pipe();
            pipe.cmd("SCRIPT").arg("LOAD").arg(RENEW).ignore();
            let mut members = 0;
            for (member, keys) in self.lock().iter() {
                pipe.cmd("EVALSHA")
                    .arg(RENEW_SCRIPT.get_hash())
                    .arg(keys.len())
                    .arg(keys);
                pipe.arg(lease_ms).arg(member).ignore();
                members += 1;
            }
            if members > 0 {
                let renewed = |mut c: redis::aio::ConnectionManager| async move {
                    pipe.query_async::<()>(&mut c).await
                };
                let _ = self.link.run(Op::Limits, renewed).await;
            }
        }
    }

    /// Removes `member` from its sets now.
    async fn release(&self, member: String) {
        let Some(keys) = self.lock().remove(&member) else {
            return;
        };
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("ZREM").arg(key).arg(&member).ignore();
        }
        let _ = self
            .link
            .run(Op::Limits, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (slots, member) = (self.slots.clone(), std::mem::take(&mut self.member));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { slots.release(member).await });
            }
            // No runtime left (the process is stopping): the member lapses within `lease`.
            Err(_) => {
                slots.lock().remove(&member);
            }
        }
    }
}

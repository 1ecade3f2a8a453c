//! A stream key's lease: a string holding the holder's node id, with a `lease` expiry. The
//! holder renews it every third of `lease`; a node that stops renewing (dead, cut off) loses
//! it within `lease`, and a follower takes it with `SET NX`. Leaving by drop: a [`Held`]
//! lease is given back when the stream stops on its holder.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tokio::task::JoinHandle;

use super::error::{ClusterError, Op};
use super::link::Link;

/// Renews the lease if this node holds it, or takes it if nobody does (a Redis restarted
/// empty); 0 when another node holds it.
const RENEW: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// [`RENEW`], hashed once.
static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RENEW));

/// Deletes the lease only if this node still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

/// [`RELEASE`], hashed once.
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// One stream key's lease, as seen from this node.
#[derive(Clone)]
pub struct Lease {
    link: Arc<Link>,
    key: String,
    node: Arc<str>,
    length: Duration,
}

impl Lease {
    /// The lease `key` for `node`, lasting `length` past each renewal.
    pub fn new(link: Arc<Link>, key: String, node: Arc<str>, length: Duration) -> Lease {
        Lease {
            link,
            key,
            node,
            length,
        }
    }

    /// How long a lease lasts.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// Takes the lease if it is free or already ours (`SET NX` through the renewal script);
    /// `Ok(false)`: another node holds it.
    pub async fn acquire(&self) -> Result<bool, ClusterError> {
        let (key, node, ms) = (self.key.clone(), self.node.clone(), self.ms());
        self.link
            .run(Op::Lease, |mut c| async move {
                let held: i64 = RENEW_SCRIPT
                    .key(key)
                    .arg(&*node)
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await?;
                Ok(held == 1)
            })
            .await
    }

    /// Gives the lease back now, if this node still holds it.
    pub async fn release(&self) -> Result<(), ClusterError> {
        let (key, node) = (self.key.clone(), self.node.clone());
        self.link
            .run(Op::Lease, |mut c| async move {
                RELEASE_SCRIPT
                    .key(key)
                    .arg(&*node)
                    .invoke_async::<i64>(&mut c)
                    .await
                    .map(drop)
            })
            .await
    }

    fn ms(&self) -> u64 {
        self.length.as_millis() as u64
    }
}

/// A lease this node holds: counted in `cluster_leases_held`, released when dropped.
pub struct Held {
    lease: Lease,
    /// The holder's appends, which end before the lease is given back.
    appends: Option<JoinHandle<()>>,
}

impl Held {
    /// Counts the lease as held.
    pub fn new(lease: Lease) -> Held {
        lease.link.metrics.leases_held.inc();
        Held {
            lease,
            appends: None,
        }
    }

    /// The lease itself.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Gives the lease back only once `appends` has ended (waiting at most a lease): the
    /// next holder then reads the log with everything this node queued, its end mark too.
    pub fn release_after(&mut self, appends: JoinHandle<()>) {
        self.appends = Some(appends);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.lease.link.metrics.leases_held.dec();
        let (lease, appends) = (self.lease.clone(), self.appends.take());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(appends) = appends {
                    let _ = tokio::time::timeout(lease.length(), appends).await;
                }
                lease.release().await
            });
        }
    }
}

//! The node's two connections to Redis, through the `redis` crate's `ConnectionManager`
//! (multiplexed, reconnecting by itself): one for commands, one for the blocking reads that
//! follow streams (a blocking `XREAD` would hold up every command queued behind it).
//!
//! Every call is bounded by a timeout: a slow Redis counts as a down one, and the node
//! carries on alone. `cluster_up` follows a `PING` every [`HEALTH_PERIOD`].

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};

use super::error::{ClusterError, Op};
use crate::metrics::ClusterMetrics;

/// How often `cluster_up` is checked.
pub const HEALTH_PERIOD: Duration = Duration::from_millis(500);
/// How long a follower's `XREAD` blocks waiting for events.
pub const READ_BLOCK: Duration = Duration::from_millis(500);

/// The connections, made once the cluster's task runs inside a runtime.
struct Connections {
    commands: ConnectionManager,
    reads: ConnectionManager,
}

/// The node's link to Redis.
pub struct Link {
    client: Client,
    timeout: Duration,
    connections: OnceLock<Connections>,
    /// The cluster's metric handles.
    pub metrics: ClusterMetrics,
}

impl Link {
    /// A link to `client` whose calls give up after `timeout`.
    pub fn new(client: Client, timeout: Duration, metrics: ClusterMetrics) -> Link {
        Link {
            client,
            timeout,
            connections: OnceLock::new(),
            metrics,
        }
    }

    /// Opens the connections (lazily: nothing waits for Redis here); needs a runtime.
    pub fn connect(&self) -> RedisResult<()> {
        let config = |timeout: Duration| {
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1))
        };
        let commands =
            ConnectionManager::new_lazy_with_config(self.client.clone(), config(self.timeout))?;
        let reads = ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            config(READ_BLOCK + self.timeout),
        )?;
        let _ = self.connections.set(Connections { commands, reads });
        Ok(())
    }

    /// Runs `call` on the command connection, bounded by the timeout; a failure is
    /// counted under `op`.
    pub async fn run<T, F, Fut>(&self, op: Op, call: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let connection = self.connections.get().map(|c| c.commands.clone());
        self.bounded(op, connection, call, self.timeout).await
    }

    /// Runs a blocking read on the read connection.
    pub async fn read<T, F, Fut>(&self, call: F) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let connection = self.connections.get().map(|c| c.reads.clone());
        let limit = READ_BLOCK + self.timeout;
        self.bounded(Op::Read, connection, call, limit).await
    }

    async fn bounded<T, F, Fut>(
        &self,
        op: Op,
        connection: Option<ConnectionManager>,
        call: F,
        limit: Duration,
    ) -> Result<T, ClusterError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(connection) = connection else {
            return Err(self.failed(ClusterError::Connect("not connected yet".into())));
        };
        match tokio::time::timeout(limit, call(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.failed(ClusterError::of(op, &error))),
            Err(_) => Err(self.failed(ClusterError::Connect(format!("no answer in {limit:?}")))),
        }
    }

    fn failed(&self, error: ClusterError) -> ClusterError {
        self.metrics.error(error.reason());
        tracing::debug!(%error, "cluster: redis call failed");
        error
    }

    /// Sets `cluster_up` from a `PING` every [`HEALTH_PERIOD`], logging each change once.
    pub async fn watch_health(&self) {
        let mut was_up = None;
        loop {
            let ping = self
                .run(Op::Read, |mut c| async move {
                    redis::cmd("PING").query_async::<String>(&mut c).await
                })
                .await;
            let up = ping.is_ok();
            self.metrics.up.set(i64::from(up));
            match (was_up, &ping) {
                (Some(false) | None, Ok(_)) => tracing::info!("cluster: redis reachable"),
                (Some(true) | None, Err(error)) => {
                    tracing::warn!(%error, "cluster: redis unreachable; this node carries on alone")
                }
                _ => {}
            }
            was_up = Some(up);
            tokio::time::sleep(HEALTH_PERIOD).await;
        }
    }
}

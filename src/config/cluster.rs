//! `cluster:` checked and given its defaults: absent or empty means a single instance.

use std::time::Duration;

use super::issues::Issues;
use super::model::ClusterFile;
use super::runtime::ClusterConfig;

/// The shortest `lease` accepted: renewals come every third of it.
const MIN_LEASE: Duration = Duration::from_millis(500);

/// The validated block, or `None` for a single instance; problems go to `issues`.
pub(super) fn validate(file: Option<ClusterFile>, issues: &mut Issues) -> Option<ClusterConfig> {
    let file = file?;
    let Some(redis) = file.redis else {
        if file.prefix.is_some() || file.lease.is_some() {
            issues.add("cluster.redis", "required when cluster: sets anything");
        }
        return None;
    };
    if !redis.starts_with("redis://") {
        issues.add(
            "cluster.redis",
            "expected a redis:// URL (redis://host:port/db)",
        );
    }
    let lease = file.lease.unwrap_or(Duration::from_secs(5));
    if lease < MIN_LEASE {
        issues.add("cluster.lease", "must be at least 500ms");
    }
    Some(ClusterConfig {
        redis,
        prefix: file.prefix.unwrap_or_else(|| "sse-edge:".into()),
        lease,
    })
}

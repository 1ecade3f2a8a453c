//! The cluster's families (SPEC §5): whether Redis answers, the leases this node holds,
//! the events it relayed, and Redis failures by operation.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use super::registrar::Registrar;

/// Every `op` of `cluster_errors_total`: the cluster's errors (`ClusterError::reason`).
pub const CLUSTER_OPS: [&str; 5] = ["connect", "append", "read", "lease", "limits"];

/// The cluster's metric handles (exported in single-instance mode too, at 0).
#[derive(Clone)]
pub struct ClusterMetrics {
    /// 1 while Redis answers, 0 while the node carries on alone.
    pub up: IntGauge,
    /// Stream-key leases this node holds (it runs their sources).
    pub leases_held: IntGauge,
    /// Events this node appended to Redis or read from it and published.
    pub events_relayed: IntCounter,
    errors: IntCounterVec,
}

impl ClusterMetrics {
    pub(super) fn register(r: &Registrar) -> prometheus::Result<ClusterMetrics> {
        let up = r.plain_gauge("cluster_up", "1 while the cluster's Redis answers")?;
        let leases_held = r.plain_gauge("cluster_leases_held", "Stream-key leases held")?;
        let events_relayed = IntCounter::new(
            "sse_edge_cluster_events_relayed_total",
            "Events appended to or read from the cluster's Redis",
        )?;
        r.registry.register(Box::new(events_relayed.clone()))?;
        let errors = IntCounterVec::new(
            Opts::new(
                "sse_edge_cluster_errors_total",
                "Cluster Redis failures, by operation",
            ),
            &["op"],
        )?;
        r.registry.register(Box::new(errors.clone()))?;
        for op in CLUSTER_OPS {
            errors.with_label_values(&[op]);
        }
        Ok(ClusterMetrics {
            up,
            leases_held,
            events_relayed,
            errors,
        })
    }

    /// Counts a failed Redis operation by its `op` label.
    pub fn error(&self, op: &'static str) {
        self.errors.with_label_values(&[op]).inc();
    }
}

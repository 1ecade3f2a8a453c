//! The configuration reload families, named as Prometheus names its own reloads.

use prometheus::{Gauge, IntCounterVec, IntGauge};

use super::registrar::Registrar;

/// The configuration reload families (the names Prometheus uses for its own reloads).
pub(super) struct ReloadMetrics {
    pub(super) total: IntCounterVec,
    pub(super) last_successful: IntGauge,
    pub(super) last_success_timestamp: Gauge,
}

impl ReloadMetrics {
    /// Registers them in the state at start: the configuration just loaded counts as a
    /// successful load, and both results are exported at 0.
    pub(super) fn register(r: &Registrar) -> prometheus::Result<ReloadMetrics> {
        let metrics = ReloadMetrics {
            total: r.counter(
                "config_reloads_total",
                "Configuration reloads (SIGHUP), by result",
                &["result"],
            )?,
            last_successful: r.plain_gauge(
                "config_last_reload_successful",
                "Whether the last reload applied (1) or was refused (0)",
            )?,
            last_success_timestamp: r.timestamp(
                "config_last_reload_success_timestamp_seconds",
                "When the configuration serving now was loaded (Unix time)",
            )?,
        };
        for result in ["ok", "error"] {
            metrics.total.with_label_values(&[result]);
        }
        metrics.last_successful.set(1);
        metrics.last_success_timestamp.set(unix_now());
        Ok(metrics)
    }
}

pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

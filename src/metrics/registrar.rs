//! Creating metric families with the `sse_edge_` prefix in one registry.

use prometheus::{
    exponential_buckets, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Creates families with the `sse_edge_` prefix and registers them in one registry.
pub(super) struct Registrar {
    pub(super) registry: Registry,
}

impl Registrar {
    pub(super) fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let family = IntCounterVec::new(Opts::new(format!("sse_edge_{name}"), help), labels)?;
        self.registry.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// `requests_refused_total{reason}`, with every reason exported at 0 from the start.
    pub(super) fn refusals(&self) -> prometheus::Result<IntCounterVec> {
        let help = "Requests refused before routing, by reason";
        let family = self.counter("requests_refused_total", help, &["reason"])?;
        for reason in super::labels::REFUSAL_REASONS {
            family.with_label_values(&[reason]);
        }
        Ok(family)
    }

    /// A counter labelled by `route` only.
    pub(super) fn route_counter(
        &self,
        name: &str,
        help: &str,
    ) -> prometheus::Result<IntCounterVec> {
        self.counter(name, help, &["route"])
    }

    /// A gauge labelled by `route` only.
    pub(super) fn gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
        self.gauge_with(name, help, &["route"])
    }

    pub(super) fn gauge_with(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        let family = IntGaugeVec::new(Opts::new(format!("sse_edge_{name}"), help), labels)?;
        self.registry.register(Box::new(family.clone()))?;
        Ok(family)
    }

    /// A gauge without labels.
    pub(super) fn plain_gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        let gauge = IntGauge::new(format!("sse_edge_{name}"), help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    /// A gauge of seconds since the Unix epoch.
    pub(super) fn timestamp(&self, name: &str, help: &str) -> prometheus::Result<Gauge> {
        let gauge = Gauge::new(format!("sse_edge_{name}"), help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    /// A histogram of 18 exponential buckets from `start` seconds.
    pub(super) fn histogram(
        &self,
        name: &str,
        help: &str,
        start: f64,
    ) -> prometheus::Result<HistogramVec> {
        let opts = HistogramOpts::new(format!("sse_edge_{name}"), help)
            .buckets(exponential_buckets(start, 2.0, 18)?);
        let family = HistogramVec::new(opts, &["route"])?;
        self.registry.register(Box::new(family.clone()))?;
        Ok(family)
    }
}

//! Prometheus metrics of the operator.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a per-resource series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// Namespace of the ThanosReceiver.
    pub namespace: String,
    /// Name of the ThanosReceiver.
    pub name: String,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`crate::Error::metric_label`].
    pub error: String,
}

/// The operator's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    ring_changes: Family<ResourceLabels, Counter>,
    ring_endpoints: Family<ResourceLabels, Gauge>,
    ring_hash: Family<ResourceLabels, FloatGauge>,
    leader: Gauge,
}

/// A gauge of a float value.
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("thanos_receiver_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciliations started", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error",
            errors.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation",
            duration.clone(),
        );
        let ring_changes = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "ring_changes",
            "Hashring ConfigMap rewrites",
            ring_changes.clone(),
        );
        let ring_endpoints = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "ring_endpoints",
            "Endpoints in the hashring in force",
            ring_endpoints.clone(),
        );
        let ring_hash = Family::<ResourceLabels, FloatGauge>::default();
        registry.register(
            "ring_hash",
            "Config hash of the hashring the operator wrote, as receivers export it in thanos_receive_config_hash",
            ring_hash.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            ring_changes,
            ring_endpoints,
            ring_hash,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a reconciliation; its duration is observed when the guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: &self.duration,
        }
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_failed(&self, error: &crate::Error) {
        self.errors
            .get_or_create(&ErrorLabels {
                error: error.metric_label().into(),
            })
            .inc();
    }

    /// Counts a ring change and records the new ring size.
    pub fn ring_changed(&self, labels: &ResourceLabels) {
        self.ring_changes.get_or_create(labels).inc();
    }

    /// Records the size of the ring in force.
    pub fn set_ring_endpoints(&self, labels: &ResourceLabels, endpoints: usize) {
        self.ring_endpoints
            .get_or_create(labels)
            .set(i64::try_from(endpoints).unwrap_or(i64::MAX));
    }

    /// Records the config hash (hex) of the ring in force, as a number receivers' hashes match.
    pub fn set_ring_hash(&self, labels: &ResourceLabels, hex: &str) {
        if let Some(hash) = hashring::ConfigHash::from_hex(hex) {
            self.ring_hash.get_or_create(labels).set(hash.as_f64());
        }
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Observes a reconciliation's duration when dropped.
pub struct ReconcileTimer<'a> {
    start: Instant,
    histogram: &'a Histogram,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

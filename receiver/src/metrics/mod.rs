//! The receiver's own metrics, under the names Thanos and Prometheus use so dashboards keep
//! working: one struct per component, each with methods named for what happened
//! (`rejected`, `forwarded`, `ring_applied`...), all registered on one registry.

pub mod grpc;
pub mod http;
pub mod ingest;
pub mod process;
pub mod replication;
pub mod ring;
pub mod shipper;
pub mod tsdb;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use grpc::{GrpcCall, GrpcMetrics};
pub use http::HttpMetrics;
pub use ingest::IngestMetrics;
pub use replication::ReplicationMetrics;
pub use ring::RingMetrics;
pub use shipper::ShipperMetrics;
pub use tsdb::TsdbMetrics;

/// The registry and the names registered on it: an empty family is not on the page, so the
/// names are how tests tell "never incremented" from "renamed".
#[derive(Default)]
pub struct Registrar {
    registry: Registry,
    names: Vec<&'static str>,
}

impl Registrar {
    /// Registers `metric` as `name` (without the `_total` suffix of counters).
    pub fn register(
        &mut self,
        name: &'static str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.names.push(name);
        self.registry.register(name, help, metric);
    }
}

/// Every component's metrics and the registry `/metrics` encodes.
pub struct Metrics {
    registry: Registrar,
    /// Remote-write requests.
    pub http: HttpMetrics,
    /// gRPC calls served.
    pub grpc: GrpcMetrics,
    /// Validation and limits.
    pub ingest: IngestMetrics,
    /// Heads, WALs and replay.
    pub tsdb: TsdbMetrics,
    /// Routing and forwards.
    pub replication: ReplicationMetrics,
    /// The hashring in force.
    pub ring: RingMetrics,
    /// Block uploads.
    pub shipper: ShipperMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates every component's metrics on one registry.
    pub fn new() -> Self {
        let mut registry = Registrar::default();
        registry
            .registry
            .register_collector(Box::new(process::ProcessCollector));
        Metrics {
            http: HttpMetrics::register(&mut registry),
            grpc: GrpcMetrics::register(&mut registry),
            ingest: IngestMetrics::register(&mut registry),
            tsdb: TsdbMetrics::register(&mut registry),
            replication: ReplicationMetrics::register(&mut registry),
            ring: RingMetrics::register(&mut registry),
            shipper: ShipperMetrics::register(&mut registry),
            registry,
        }
    }

    /// The metrics in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Names of every registered metric family, as registered.
    pub fn family_names(&self) -> &[&'static str] {
        &self.registry.names
    }
}

/// A tenant label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// Tenant name.
    pub tenant: String,
}

impl TenantLabel {
    /// The label of `tenant`.
    pub fn of(tenant: &str) -> Self {
        TenantLabel {
            tenant: tenant.to_string(),
        }
    }
}

/// A float gauge.
pub type FloatGauge = prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>;

/// Thanos' request latency buckets: 1ms .. 5s.
fn request_duration_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

//! The receiver's own metrics, under the names Thanos and Prometheus use so dashboards keep working.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Handler name (`receive`).
    pub handler: &'static str,
    /// Status code.
    pub code: u16,
    /// HTTP method.
    pub method: &'static str,
    /// Tenant of the request.
    pub tenant: String,
}

/// A tenant label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// Tenant name.
    pub tenant: String,
}

/// A tenant and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantReason {
    /// Tenant name.
    pub tenant: String,
    /// Why samples were rejected.
    pub reason: &'static str,
}

/// A tenant and a limit name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLimit {
    /// Tenant name.
    pub tenant: String,
    /// Which limit was hit (`series`, `samples`, `body_size`, `head_series`, `tenants`).
    pub limit: &'static str,
}

/// A hashring name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RingName {
    /// The `hashring` field of the ring.
    pub name: String,
}

/// A result label (`success` or `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// Outcome.
    pub result: &'static str,
}

/// A peer endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    /// The endpoint address as written in the ring.
    pub endpoint: String,
}

/// A ring and one of its endpoints.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RingEndpoint {
    /// Ring name.
    pub hashring: String,
    /// Endpoint address.
    pub endpoint: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn request_duration_histogram() -> Histogram {
    // Thanos' remote-write buckets: 1ms .. 5s.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ])
}

/// Every metric the receiver exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// `http_requests_total`.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `http_request_duration_seconds`.
    pub http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    /// `prometheus_tsdb_head_series`.
    pub head_series: Family<TenantLabel, Gauge>,
    /// `prometheus_tsdb_head_series_created_total`.
    pub series_created: Family<TenantLabel, Counter>,
    /// `prometheus_tsdb_head_samples_appended_total`.
    pub samples_appended: Family<TenantLabel, Counter>,
    /// `thanos_receive_rejected_samples_total`.
    pub rejected_samples: Family<TenantReason, Counter>,
    /// `prometheus_tsdb_wal_storage_size_bytes`.
    pub wal_size: Family<TenantLabel, Gauge>,
    /// `prometheus_tsdb_wal_corruptions_total`.
    pub wal_corruptions: Family<TenantLabel, Counter>,
    /// `prometheus_tsdb_wal_fsync_failures_total`.
    pub wal_fsync_failures: Counter,
    /// `prometheus_tsdb_data_replay_duration_seconds`.
    pub replay_duration: Family<TenantLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// `thanos_receive_write_limits_hit_total`.
    pub limits_hit: Family<TenantLimit, Counter>,
    /// `thanos_receive_hashrings_file_refreshes_total`.
    pub ring_refreshes: Counter,
    /// `thanos_receive_hashrings_file_errors_total`.
    pub ring_errors: Counter,
    /// `thanos_receive_hashrings_file_changes_total`.
    pub ring_changes: Counter,
    /// `thanos_receive_hashring_nodes{name}`.
    pub ring_nodes: Family<RingName, Gauge>,
    /// `thanos_receive_config_hash`.
    pub ring_hash: FloatGauge,
    /// `thanos_receive_config_last_reload_successful`.
    pub ring_last_reload_ok: Gauge,
    /// `thanos_receive_config_last_reload_success_timestamp_seconds`.
    pub ring_last_reload_time: FloatGauge,
    /// `thanos_receive_replication_factor`.
    pub replication_factor: Gauge,
    /// `thanos_receive_replications_total{result}`.
    pub replications: Family<ResultLabel, Counter>,
    /// `thanos_receive_forward_requests_total{result}`.
    pub forward_requests: Family<ResultLabel, Counter>,
    /// `thanos_receive_forward_delay_seconds`.
    pub forward_delay: Histogram,
    /// `thanos_receive_forward_peer_errors_total{endpoint}`.
    pub peer_errors: Family<EndpointLabel, Counter>,
    /// `thanos_receive_hashring_series_routed_total{hashring,endpoint}`: series written per ring member.
    pub series_routed: Family<RingEndpoint, Counter>,
    /// `thanos_shipper_dir_syncs_total{tenant}`.
    pub shipper_syncs: Family<TenantLabel, Counter>,
    /// `thanos_shipper_dir_sync_failures_total{tenant}`.
    pub shipper_sync_failures: Family<TenantLabel, Counter>,
    /// `thanos_shipper_uploads_total{tenant}`.
    pub shipper_uploads: Family<TenantLabel, Counter>,
    /// `thanos_shipper_upload_failures_total{tenant}`.
    pub shipper_upload_failures: Family<TenantLabel, Counter>,
    /// `thanos_shipper_pending_blocks{tenant}`: blocks waiting for upload.
    pub shipper_pending: Family<TenantLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(request_duration_histogram),
            head_series: Family::default(),
            series_created: Family::default(),
            samples_appended: Family::default(),
            rejected_samples: Family::default(),
            wal_size: Family::default(),
            wal_corruptions: Family::default(),
            wal_fsync_failures: Counter::default(),
            replay_duration: Family::default(),
            limits_hit: Family::default(),
            ring_refreshes: Counter::default(),
            ring_errors: Counter::default(),
            ring_changes: Counter::default(),
            ring_nodes: Family::default(),
            ring_hash: FloatGauge::default(),
            ring_last_reload_ok: Gauge::default(),
            ring_last_reload_time: FloatGauge::default(),
            replication_factor: Gauge::default(),
            replications: Family::default(),
            forward_requests: Family::default(),
            forward_delay: request_duration_histogram(),
            peer_errors: Family::default(),
            series_routed: Family::default(),
            shipper_syncs: Family::default(),
            shipper_sync_failures: Family::default(),
            shipper_uploads: Family::default(),
            shipper_upload_failures: Family::default(),
            shipper_pending: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "Remote-write requests by handler, code, method and tenant",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Remote-write request latency",
            m.http_duration.clone(),
        );
        registry.register(
            "prometheus_tsdb_head_series",
            "Series in the head",
            m.head_series.clone(),
        );
        registry.register(
            "prometheus_tsdb_head_series_created",
            "Series created in the head",
            m.series_created.clone(),
        );
        registry.register(
            "prometheus_tsdb_head_samples_appended",
            "Samples appended to the head",
            m.samples_appended.clone(),
        );
        registry.register(
            "thanos_receive_rejected_samples",
            "Samples rejected, by reason",
            m.rejected_samples.clone(),
        );
        registry.register(
            "prometheus_tsdb_wal_storage_size_bytes",
            "Bytes in the WAL",
            m.wal_size.clone(),
        );
        registry.register(
            "prometheus_tsdb_wal_corruptions",
            "WAL corruptions repaired at start",
            m.wal_corruptions.clone(),
        );
        registry.register(
            "prometheus_tsdb_wal_fsync_failures",
            "Failed WAL fsyncs",
            m.wal_fsync_failures.clone(),
        );
        registry.register(
            "prometheus_tsdb_data_replay_duration_seconds",
            "Time the last WAL replay took",
            m.replay_duration.clone(),
        );
        registry.register(
            "thanos_receive_write_limits_hit",
            "Requests refused by a configured limit",
            m.limits_hit.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_refreshes",
            "Hashring file reads",
            m.ring_refreshes.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_errors",
            "Refused or unreadable hashring updates",
            m.ring_errors.clone(),
        );
        registry.register(
            "thanos_receive_hashrings_file_changes",
            "Hashring changes applied",
            m.ring_changes.clone(),
        );
        registry.register(
            "thanos_receive_hashring_nodes",
            "Endpoints per hashring",
            m.ring_nodes.clone(),
        );
        registry.register(
            "thanos_receive_config_hash",
            "Hash of the hashring config in force",
            m.ring_hash.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_successful",
            "Whether the last hashring update was valid",
            m.ring_last_reload_ok.clone(),
        );
        registry.register(
            "thanos_receive_config_last_reload_success_timestamp_seconds",
            "Time of the last applied hashring",
            m.ring_last_reload_time.clone(),
        );
        registry.register(
            "thanos_receive_replication_factor",
            "Replication factor",
            m.replication_factor.clone(),
        );
        registry.register(
            "thanos_receive_replications",
            "Replicated writes by result",
            m.replications.clone(),
        );
        registry.register(
            "thanos_receive_forward_requests",
            "Forward requests to peers by result",
            m.forward_requests.clone(),
        );
        registry.register(
            "thanos_receive_forward_delay_seconds",
            "Latency of forward requests to peers",
            m.forward_delay.clone(),
        );
        registry.register(
            "thanos_receive_forward_peer_errors",
            "Failed forward requests per peer",
            m.peer_errors.clone(),
        );
        registry.register(
            "thanos_receive_hashring_series_routed",
            "Series written per ring member (distribution across the ring)",
            m.series_routed.clone(),
        );
        registry.register(
            "thanos_shipper_dir_syncs",
            "Shipper syncs",
            m.shipper_syncs.clone(),
        );
        registry.register(
            "thanos_shipper_dir_sync_failures",
            "Failed shipper syncs",
            m.shipper_sync_failures.clone(),
        );
        registry.register(
            "thanos_shipper_uploads",
            "Blocks uploaded",
            m.shipper_uploads.clone(),
        );
        registry.register(
            "thanos_shipper_upload_failures",
            "Failed block uploads",
            m.shipper_upload_failures.clone(),
        );
        registry.register(
            "thanos_shipper_pending_blocks",
            "Blocks waiting for upload",
            m.shipper_pending.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Shorthand for a tenant label.
    pub fn tenant(tenant: &str) -> TenantLabel {
        TenantLabel {
            tenant: tenant.to_string(),
        }
    }
}

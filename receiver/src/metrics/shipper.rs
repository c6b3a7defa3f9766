//! Block upload metrics, with Thanos' shipper names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::TenantLabel;

/// How block uploads went, per tenant.
#[derive(Clone)]
pub struct ShipperMetrics {
    syncs: Family<TenantLabel, Counter>,
    sync_failures: Family<TenantLabel, Counter>,
    uploads: Family<TenantLabel, Counter>,
    upload_failures: Family<TenantLabel, Counter>,
    pending: Family<TenantLabel, Gauge>,
}

impl ShipperMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = ShipperMetrics {
            syncs: Family::default(),
            sync_failures: Family::default(),
            uploads: Family::default(),
            upload_failures: Family::default(),
            pending: Family::default(),
        };
        registry.register("thanos_shipper_dir_syncs", "Shipper syncs", m.syncs.clone());
        registry.register(
            "thanos_shipper_dir_sync_failures",
            "Failed shipper syncs",
            m.sync_failures.clone(),
        );
        registry.register(
            "thanos_shipper_uploads",
            "Blocks uploaded",
            m.uploads.clone(),
        );
        registry.register(
            "thanos_shipper_upload_failures",
            "Failed block uploads",
            m.upload_failures.clone(),
        );
        registry.register(
            "thanos_shipper_pending_blocks",
            "Blocks waiting for upload",
            m.pending.clone(),
        );
        m
    }

    /// A sync of `tenant` ended with `pending` blocks left, failed or not (`ok`).
    pub fn synced(&self, tenant: &str, pending: usize, ok: bool) {
        let t = TenantLabel::of(tenant);
        self.syncs.get_or_create(&t).inc();
        self.pending.get_or_create(&t).set(pending as i64);
        if !ok {
            self.sync_failures.get_or_create(&t).inc();
            self.upload_failures.get_or_create(&t).inc();
        }
    }

    /// A block of `tenant` was uploaded.
    pub fn uploaded(&self, tenant: &str) {
        self.uploads.get_or_create(&TenantLabel::of(tenant)).inc();
    }
}

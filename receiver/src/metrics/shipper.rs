//! Block upload metrics, with Thanos' shipper names.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{FloatGauge, TenantLabel};

/// The bucket a metric is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabel {
    bucket: String,
}

/// How block uploads went, per tenant.
#[derive(Clone)]
pub struct ShipperMetrics {
    syncs: Family<TenantLabel, Counter>,
    sync_failures: Family<TenantLabel, Counter>,
    uploads: Family<TenantLabel, Counter>,
    upload_failures: Family<TenantLabel, Counter>,
    pending: Family<TenantLabel, Gauge>,
    last_upload: Family<BucketLabel, FloatGauge>,
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
            last_upload: Family::default(),
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
        registry.register(
            "thanos_objstore_bucket_last_successful_upload_time",
            "Unix time of the last block uploaded to the bucket",
            m.last_upload.clone(),
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

    /// A block of `tenant` was uploaded to `bucket`.
    pub fn uploaded(&self, tenant: &str, bucket: &str) {
        self.uploads.get_or_create(&TenantLabel::of(tenant)).inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_upload
            .get_or_create(&BucketLabel {
                bucket: bucket.to_owned(),
            })
            .set(now);
    }
}

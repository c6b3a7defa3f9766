//! Validation and limit metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// A tenant and a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantReason {
    tenant: String,
    reason: &'static str,
}

/// A tenant and a limit name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLimit {
    tenant: String,
    limit: &'static str,
}

/// What ingestion refused, and why.
#[derive(Clone)]
pub struct IngestMetrics {
    rejected_samples: Family<TenantReason, Counter>,
    limits_hit: Family<TenantLimit, Counter>,
}

impl IngestMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = IngestMetrics {
            rejected_samples: Family::default(),
            limits_hit: Family::default(),
        };
        registry.register(
            "thanos_receive_rejected_samples",
            "Samples rejected, by reason",
            m.rejected_samples.clone(),
        );
        registry.register(
            "thanos_receive_write_limits_hit",
            "Requests refused by a configured limit",
            m.limits_hit.clone(),
        );
        m
    }

    /// `n` samples of `tenant` were refused for `reason`.
    pub fn rejected(&self, tenant: &str, reason: &'static str, n: u64) {
        if n > 0 {
            self.rejected_samples
                .get_or_create(&TenantReason {
                    tenant: tenant.to_string(),
                    reason,
                })
                .inc_by(n);
        }
    }

    /// A request of `tenant` was refused by `limit` (`series`, `samples`, `head_series`,
    /// `tenants`).
    pub fn limit_hit(&self, tenant: &str, limit: &'static str) {
        self.limits_hit
            .get_or_create(&TenantLimit {
                tenant: tenant.to_string(),
                limit,
            })
            .inc();
    }
}

//! Validation and limit metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

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

/// A tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Tenant {
    tenant: String,
}

/// What ingestion refused, and why; and the limits in force.
#[derive(Clone)]
pub struct IngestMetrics {
    rejected_samples: Family<TenantReason, Counter>,
    limits_hit: Family<TenantLimit, Counter>,
    tenant_head_series_limit: Family<Tenant, Gauge>,
    default_head_series_limit: Gauge,
    head_series_limited: Family<Tenant, Counter>,
    limits_reloads: Counter,
    limits_reload_errors: Counter,
}

impl IngestMetrics {
    /// Creates the metrics on `registry`.
    pub fn register(registry: &mut super::Registrar) -> Self {
        let m = IngestMetrics {
            rejected_samples: Family::default(),
            limits_hit: Family::default(),
            tenant_head_series_limit: Family::default(),
            default_head_series_limit: Gauge::default(),
            head_series_limited: Family::default(),
            limits_reloads: Counter::default(),
            limits_reload_errors: Counter::default(),
        };
        registry.register(
            "thanos_receive_head_series_limited_requests",
            "Write requests refused because the tenant's head holds head_series_limit series",
            m.head_series_limited.clone(),
        );
        registry.register(
            "thanos_receive_limits_config_reload",
            "Limits file reloads applied",
            m.limits_reloads.clone(),
        );
        registry.register(
            "thanos_receive_limits_config_reload_err",
            "Limits file reloads refused (the previous limits stay)",
            m.limits_reload_errors.clone(),
        );
        // Thanos' names, so an alert can compare a tenant's head series with its limit.
        registry.register(
            "thanos_receive_tenant_head_series_limit",
            "The configured limit for active (head) series of tenants",
            m.tenant_head_series_limit.clone(),
        );
        registry.register(
            "thanos_receive_default_head_series_limit",
            "The configured default limit for active (head) series of tenants",
            m.default_head_series_limit.clone(),
        );
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

    /// The limits file's head series limits: the default, and those of the tenants it lists (0: none).
    pub fn head_series_limits<'a>(
        &self,
        default: u64,
        tenants: impl Iterator<Item = (&'a str, u64)>,
    ) {
        self.default_head_series_limit.set(default as i64);
        for (tenant, limit) in tenants {
            self.tenant_head_series_limit
                .get_or_create(&Tenant {
                    tenant: tenant.to_owned(),
                })
                .set(limit as i64);
        }
    }

    /// A changed limits file was applied (`ok`) or refused.
    pub fn limits_reloaded(&self, ok: bool) {
        if ok {
            self.limits_reloads.inc();
        } else {
            self.limits_reload_errors.inc();
        }
    }

    /// A request of `tenant` was refused by `limit` (`series`, `samples`, `head_series`,
    /// `tenants`).
    pub fn limit_hit(&self, tenant: &str, limit: &'static str) {
        if limit == "head_series" {
            self.head_series_limited
                .get_or_create(&Tenant {
                    tenant: tenant.to_string(),
                })
                .inc();
        }
        self.limits_hit
            .get_or_create(&TenantLimit {
                tenant: tenant.to_string(),
                limit,
            })
            .inc();
    }
}

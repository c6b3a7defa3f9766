//! Local ingestion: validate a decoded batch ([`validate`]), apply the tenant's [`limits`], and
//! append it to the tenant's TSDB.

pub mod limits;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::metrics::{Metrics, TenantLimit, TenantReason};
use crate::tenant;
use crate::tsdb::MultiTsdb;
use crate::wire::{Protocol, WriteBatch};
use crate::write_error::WriteError;
use limits::{LimitsConfig, TenantLimits};
use validate::{Rejection, validate_series};

/// What was stored, for the remote write 2.0 `*-Written` headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Float samples stored (duplicates of stored samples included, as they are durable).
    pub samples: u64,
    /// Native histogram samples stored.
    pub histograms: u64,
    /// Exemplars stored.
    pub exemplars: u64,
}

/// The local write path shared by the HTTP handler and, later, replication.
pub struct Ingester {
    /// Every tenant's storage.
    pub tsdb: Arc<MultiTsdb>,
    /// Process metrics.
    pub metrics: Arc<Metrics>,
    /// Limits in force.
    pub limits: RwLock<LimitsConfig>,
    ready: AtomicBool,
}

impl Ingester {
    /// A not-yet-ready ingester over `tsdb`.
    pub fn new(tsdb: Arc<MultiTsdb>, metrics: Arc<Metrics>, limits: LimitsConfig) -> Self {
        Ingester {
            tsdb,
            metrics,
            limits: RwLock::new(limits),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether WAL replay has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks WAL replay as finished.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The limits of a tenant.
    pub fn tenant_limits(&self, tenant: &str) -> TenantLimits {
        self.limits.read().for_tenant(tenant)
    }

    fn limit_hit(&self, tenant: &str, limit: &'static str) {
        self.metrics
            .limits_hit
            .get_or_create(&TenantLimit {
                tenant: tenant.to_string(),
                limit,
            })
            .inc();
    }

    fn rejected(&self, tenant: &str, reason: &'static str, n: u64) {
        if n > 0 {
            self.metrics
                .rejected_samples
                .get_or_create(&TenantReason {
                    tenant: tenant.to_string(),
                    reason,
                })
                .inc_by(n);
        }
    }

    /// Request-level checks (tenant, request limits) and per-series validation, shared by every path.
    pub fn check(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        range: std::ops::Range<usize>,
        protocol: Protocol,
    ) -> Result<Checked, WriteError> {
        tenant::validate(tenant)?;
        let limits = self.tenant_limits(tenant);
        let series = range.len() as u64;
        if limits.series > 0 && series > limits.series {
            self.limit_hit(tenant, "series");
            return Err(WriteError::TooLarge(format!(
                "too many timeseries: {series} > limit {}",
                limits.series
            )));
        }
        let samples: u64 = range
            .clone()
            .map(|i| batch.series_samples(i).len() as u64)
            .sum();
        if limits.samples > 0 && samples > limits.samples {
            self.limit_hit(tenant, "samples");
            return Err(WriteError::TooLarge(format!(
                "too many samples: {samples} > limit {}",
                limits.samples
            )));
        }
        let mut checked = Checked::default();
        let mut first: Option<(usize, Rejection)> = None;
        let (mut invalid_series, mut invalid_samples) = (0u64, 0u64);
        let (mut histograms, mut exemplars) = (0u64, 0u64);
        for i in range {
            histograms += u64::from(batch.series[i].histograms);
            exemplars += u64::from(batch.series[i].exemplars);
            match validate_series(batch, i, protocol) {
                Ok(()) => {
                    checked.samples += batch.series_samples(i).len() as u64;
                    checked.valid.push(i);
                }
                Err(r) => {
                    invalid_series += 1;
                    let n = batch.series_samples(i).len() as u64;
                    invalid_samples += n;
                    self.rejected(tenant, r.reason(), n);
                    first.get_or_insert((i, r));
                }
            }
        }
        if let Some((i, r)) = first {
            checked.invalid = Some(format!(
                "{invalid_series} series ({invalid_samples} samples) rejected; first {}: {}",
                batch.series_string(i),
                r.describe()
            ));
        }
        self.rejected(tenant, "native_histograms_unsupported", histograms);
        self.rejected(tenant, "exemplars_unsupported", exemplars);
        if histograms > 0 || exemplars > 0 {
            checked.unsupported = Some(format!(
                "{histograms} native histogram samples and {exemplars} exemplars rejected: not supported by this receiver"
            ));
        }
        Ok(checked)
    }

    /// Appends validated series to the local TSDB through its WAL; returns the samples now stored.
    pub fn append_local(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        series: &[usize],
    ) -> Result<u64, WriteError> {
        if !self.is_ready() {
            return Err(WriteError::NotReady);
        }
        let limits = self.tenant_limits(tenant);
        let db = match self.tsdb.get(tenant) {
            Some(db) => db,
            None => {
                let max_tenants = self.limits.read().write.global.max_tenants;
                if max_tenants > 0 && self.tsdb.num_tenants() as u64 >= max_tenants {
                    self.limit_hit(tenant, "tenants");
                    return Err(WriteError::HeadSeriesLimit(format!(
                        "receiver stores as many tenants as allowed ({max_tenants}); tenant {tenant:?} is new"
                    )));
                }
                self.tsdb.tenant(tenant)?
            }
        };
        let resolved = db.resolve(batch, series, limits.head_series).map_err(|e| {
            self.limit_hit(tenant, "head_series");
            WriteError::HeadSeriesLimit(e.to_string())
        })?;
        let (refs, created) = (resolved.refs, resolved.created);
        let out = db.append(batch, series, &refs)?;

        let t = Metrics::tenant(tenant);
        self.metrics
            .samples_appended
            .get_or_create(&t)
            .inc_by(out.appended);
        self.metrics
            .series_created
            .get_or_create(&t)
            .inc_by(created);
        self.metrics
            .head_series
            .get_or_create(&t)
            .set(db.head.num_series() as i64);
        self.metrics
            .wal_size
            .get_or_create(&t)
            .set(db.wal_size() as i64);
        self.rejected(tenant, "out_of_order", out.out_of_order);
        self.rejected(
            tenant,
            "duplicate_sample_for_timestamp",
            out.duplicate_conflicts,
        );

        if let Some((i, c)) = out.first_conflict {
            return Err(WriteError::Conflict(format!(
                "{} samples rejected ({} out of order, {} duplicate timestamp); first {}: {}; {} samples stored",
                out.conflicts(),
                out.out_of_order,
                out.duplicate_conflicts,
                batch.series_string(i),
                c.describe(),
                out.appended
            )));
        }
        Ok(out.appended + out.duplicates)
    }
}

/// The outcome of [`Ingester::check`].
#[derive(Debug, Default)]
pub struct Checked {
    /// Batch indices of the valid series.
    pub valid: Vec<usize>,
    /// Samples in the valid series.
    pub samples: u64,
    /// Why some series were rejected (400), if any were.
    pub invalid: Option<String>,
    /// Native histograms or exemplars that were refused (400), if any.
    pub unsupported: Option<String>,
}

impl Checked {
    /// The 400 to answer once the valid series are stored, if any series or parts were refused.
    pub fn rejection(self) -> Result<(), WriteError> {
        match self.invalid.or(self.unsupported) {
            Some(msg) => Err(WriteError::Invalid(msg)),
            None => Ok(()),
        }
    }
}

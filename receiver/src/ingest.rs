//! Local ingestion: validate a decoded batch, apply the tenant's limits, append it to the tenant's TSDB,
//! and classify the outcome the way the remote-write spec and Thanos map it to status codes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::decode::{Protocol, Rejection, WriteBatch};
use crate::limits::{LimitsConfig, TenantLimits};
use crate::metrics::{Metrics, TenantLimit, TenantReason};
use crate::tenant::{self, TenantError};
use crate::tsdb::{MultiTsdb, TsdbError};

/// Why a write was not (fully) stored; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// 503: the WAL is still being replayed.
    #[error("receiver is not ready: WAL replay in progress")]
    NotReady,
    /// 400: the tenant name is unusable.
    #[error("invalid tenant: {0}")]
    InvalidTenant(#[from] TenantError),
    /// 413: a request limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// 429: the tenant's head holds as many series as allowed.
    #[error("{0}")]
    HeadSeriesLimit(String),
    /// 400: some series or samples can never be accepted.
    #[error("{0}")]
    Invalid(String),
    /// 409: some samples conflict with stored ones (out of order, duplicate timestamp).
    #[error("{0}")]
    Conflict(String),
    /// 500: storage failed; retrying may succeed.
    #[error("storage: {0}")]
    Storage(#[from] TsdbError),
}

impl WriteError {
    /// The HTTP status code of the error.
    pub fn status(&self) -> u16 {
        match self {
            WriteError::NotReady => 503,
            WriteError::InvalidTenant(_) | WriteError::Invalid(_) => 400,
            WriteError::TooLarge(_) => 413,
            WriteError::HeadSeriesLimit(_) => 429,
            WriteError::Conflict(_) => 409,
            WriteError::Storage(_) => 500,
        }
    }
}

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

    /// Stores a decoded batch for `tenant`: every valid sample is appended and made durable in the WAL;
    /// the error says what was rejected, and `Written` counts what was stored either way.
    pub fn write(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        protocol: Protocol,
    ) -> (Written, Result<(), WriteError>) {
        match self.write_inner(tenant, batch, protocol) {
            Ok((written, result)) => (written, result),
            Err(e) => (Written::default(), Err(e)),
        }
    }

    fn write_inner(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        protocol: Protocol,
    ) -> Result<(Written, Result<(), WriteError>), WriteError> {
        if !self.is_ready() {
            return Err(WriteError::NotReady);
        }
        tenant::validate(tenant)?;
        let limits = self.tenant_limits(tenant);
        if limits.series > 0 && batch.series.len() as u64 > limits.series {
            self.limit_hit(tenant, "series");
            return Err(WriteError::TooLarge(format!(
                "too many timeseries: {} > limit {}",
                batch.series.len(),
                limits.series
            )));
        }
        if limits.samples > 0 && batch.samples.len() as u64 > limits.samples {
            self.limit_hit(tenant, "samples");
            return Err(WriteError::TooLarge(format!(
                "too many samples: {} > limit {}",
                batch.samples.len(),
                limits.samples
            )));
        }

        let mut valid = Vec::with_capacity(batch.series.len());
        let mut invalid: Option<(usize, Rejection)> = None;
        let (mut invalid_series, mut invalid_samples) = (0u64, 0u64);
        for i in 0..batch.series.len() {
            match batch.validate_series(i, protocol) {
                Ok(()) => valid.push(i),
                Err(r) => {
                    invalid_series += 1;
                    let n = batch.series_samples(i).len() as u64;
                    invalid_samples += n;
                    self.rejected(tenant, r.reason(), n);
                    invalid.get_or_insert((i, r));
                }
            }
        }

        let db = self.tsdb.tenant(tenant)?;
        if limits.head_series > 0 {
            let new = db.count_new_series(batch, &valid);
            if new > 0 && db.head.num_series() + new > limits.head_series {
                self.limit_hit(tenant, "head_series");
                return Err(WriteError::HeadSeriesLimit(format!(
                    "tenant is above active series limit: {} series in the head, {} new, limit {}",
                    db.head.num_series(),
                    new,
                    limits.head_series
                )));
            }
        }
        let (refs, created) = db.resolve(batch, &valid);
        let out = db.append(batch, &valid, &refs)?;

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

        let histograms = batch.histogram_count();
        let exemplars = batch.exemplar_count();
        self.rejected(tenant, "native_histograms_unsupported", histograms);
        self.rejected(tenant, "exemplars_unsupported", exemplars);

        let written = Written {
            samples: out.appended + out.duplicates,
            histograms: 0,
            exemplars: 0,
        };
        if let Some((i, r)) = invalid {
            return Ok((
                written,
                Err(WriteError::Invalid(format!(
                    "{invalid_series} series ({invalid_samples} samples) rejected; first {}: {}; {} samples stored",
                    batch.series_string(i),
                    r.describe(),
                    out.appended
                ))),
            ));
        }
        if histograms > 0 || exemplars > 0 {
            return Ok((
                written,
                Err(WriteError::Invalid(format!(
                    "{histograms} native histogram samples and {exemplars} exemplars rejected: not supported by this receiver; {} float samples stored",
                    out.appended
                ))),
            ));
        }
        if let Some((i, c)) = out.first_conflict {
            return Ok((
                written,
                Err(WriteError::Conflict(format!(
                    "{} samples rejected ({} out of order, {} duplicate timestamp); first {}: {}; {} samples stored",
                    out.conflicts(),
                    out.out_of_order,
                    out.duplicate_conflicts,
                    batch.series_string(i),
                    c.describe(),
                    out.appended
                ))),
            ));
        }
        Ok((written, Ok(())))
    }
}

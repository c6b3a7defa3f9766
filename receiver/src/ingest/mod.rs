//! Local ingestion: validate a decoded batch ([`validate`]), apply the tenant's [`limits`], and
//! append it to the tenant's TSDB.

pub mod limits;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::metrics::{IngestMetrics, TsdbMetrics};
use crate::tenant;
use crate::tsdb::{Conflict, MultiTsdb, Unresolved};
use crate::wire::WriteBatch;
use crate::write_error::WriteError;
use limits::{LimitsConfig, TenantLimits};
use validate::{Rejection, Rules, validate_labels, validate_samples, validate_series};

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
    tsdb: Arc<MultiTsdb>,
    metrics: IngestMetrics,
    tsdb_metrics: TsdbMetrics,
    limits: RwLock<LimitsConfig>,
    ready: AtomicBool,
}

impl Ingester {
    /// A not-yet-ready ingester over `tsdb`.
    pub fn new(
        tsdb: Arc<MultiTsdb>,
        metrics: IngestMetrics,
        tsdb_metrics: TsdbMetrics,
        limits: LimitsConfig,
    ) -> Self {
        publish_limits(&metrics, &limits);
        Ingester {
            tsdb,
            metrics,
            tsdb_metrics,
            limits: RwLock::new(limits),
            ready: AtomicBool::new(false),
        }
    }

    /// Puts a reloaded limits file in force (the write concurrency bound keeps its start value).
    pub fn set_limits(&self, limits: LimitsConfig) {
        publish_limits(&self.metrics, &limits);
        *self.limits.write() = limits;
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

    /// Request-level checks (tenant, request limits) and per-series validation, shared by every path.
    pub fn check(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        range: std::ops::Range<usize>,
        rules: Rules,
    ) -> Result<Checked, WriteError> {
        tenant::validate(tenant)?;
        let limits = self.tenant_limits(tenant);
        let series = range.len() as u64;
        if limits.series > 0 && series > limits.series {
            self.metrics.limit_hit(tenant, "series");
            return Err(WriteError::TooLarge(format!(
                "too many timeseries: {series} > limit {}",
                limits.series
            )));
        }
        // A histogram counts as one sample, as in Thanos.
        let samples: u64 = range
            .clone()
            .map(|i| (batch.series_samples(i).len() + batch.series_histograms(i).len()) as u64)
            .sum();
        if limits.samples > 0 && samples > limits.samples {
            self.metrics.limit_hit(tenant, "samples");
            return Err(WriteError::TooLarge(format!(
                "too many samples: {samples} > limit {}",
                limits.samples
            )));
        }
        let mut checked = Checked {
            labels_unchecked: rules.labels_of_new_series_only.then_some(rules),
            ..Checked::default()
        };
        let mut first: Option<(usize, Rejection)> = None;
        let (mut invalid_series, mut invalid_samples) = (0u64, 0u64);
        let mut exemplars = 0u64;
        for i in range {
            let series_exemplars = batch.series_exemplars(i).len() as u64;
            exemplars += series_exemplars;
            let verdict = if rules.labels_of_new_series_only {
                validate_samples(batch, i, rules)
            } else {
                validate_series(batch, i, rules)
            };
            match verdict {
                Ok(()) => {
                    checked.samples += batch.series_samples(i).len() as u64;
                    checked.histograms += batch.series_histograms(i).len() as u64;
                    checked.exemplars += series_exemplars;
                    checked.valid.push(i);
                }
                Err(r) => {
                    invalid_series += 1;
                    let n =
                        (batch.series_samples(i).len() + batch.series_histograms(i).len()) as u64;
                    invalid_samples += n;
                    self.metrics.rejected(tenant, r.reason(), n);
                    first.get_or_insert((i, r));
                }
            }
        }
        if let Some((i, r)) = first {
            checked.invalid = Some(format!(
                "{invalid_series} series ({invalid_samples} samples) rejected; first {}: {r}",
                batch.series_string(i),
            ));
        }
        // Without exemplar storage they are dropped and the write accepted, as Thanos does with
        // its default --tsdb.max-exemplars=0: a sender with `send_exemplars: true` must not fail
        // every batch.
        if !self.tsdb.stores_exemplars() {
            self.metrics
                .rejected(tenant, "exemplars_dropped", exemplars);
            checked.exemplars = 0;
        }
        Ok(checked)
    }

    /// Appends validated series to the local TSDB through its WAL; returns the samples now stored.
    /// With `labels_unchecked`, the labels of series the head lacks are checked first, and one
    /// that fails refuses the whole write.
    pub fn append_local(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        series: &[usize],
        labels_unchecked: Option<Rules>,
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
                    self.metrics.limit_hit(tenant, "tenants");
                    return Err(WriteError::HeadSeriesLimit(format!(
                        "receiver stores as many tenants as allowed ({max_tenants}); tenant {tenant:?} is new"
                    )));
                }
                self.tsdb.tenant(tenant)?
            }
        };
        let resolved = match labels_unchecked {
            None => db
                .resolve(batch, series, limits.head_series)
                .map_err(Unresolved::Limit),
            Some(rules) => db.resolve_admitting(batch, series, limits.head_series, &mut |i| {
                validate_labels(batch, i, rules)
            }),
        };
        let resolved = resolved.map_err(|e| match e {
            Unresolved::Limit(e) => {
                self.metrics.limit_hit(tenant, "head_series");
                WriteError::HeadSeriesLimit(e.to_string())
            }
            Unresolved::Refused(i, r) => {
                let samples: usize = series
                    .iter()
                    .map(|&i| batch.series_samples(i).len() + batch.series_histograms(i).len())
                    .sum();
                self.metrics.rejected(tenant, r.reason(), samples as u64);
                WriteError::Invalid(format!(
                    "{} series ({samples} samples) rejected; first {}: {r}",
                    series.len(),
                    batch.series_string(i)
                ))
            }
        })?;
        let out = db.append(batch, series, &resolved.refs)?;

        self.tsdb_metrics.appended(
            tenant,
            (
                out.appended - out.histograms_appended,
                out.histograms_appended,
            ),
            out.out_of_order_appended,
            resolved.created,
            db.head.num_series(),
            db.wal_size(),
        );
        for (reason, n) in [
            ("exemplar_out_of_order", out.exemplars_out_of_order),
            ("exemplar_labels_too_long", out.exemplars_too_long),
        ] {
            self.metrics.rejected(tenant, reason, n);
        }
        if out.exemplars_added > 0 {
            self.tsdb_metrics
                .exemplars(tenant, out.exemplars_added, db.exemplar_count());
        }
        for (conflict, n) in [
            (Conflict::OutOfOrder, out.out_of_order),
            (Conflict::TooOld, out.too_old),
            (Conflict::DuplicateTimestamp, out.duplicate_conflicts),
            (Conflict::OutOfBounds, out.out_of_bounds),
            (Conflict::TooFarInFuture, out.too_far_in_future),
        ] {
            self.metrics.rejected(tenant, conflict.reason(), n);
        }

        if let Some((i, c)) = out.first_conflict {
            return Err(WriteError::Conflict(format!(
                "{} samples rejected ({} out of order, {} too old, {} duplicate timestamp); first {}: {}; {} samples stored",
                out.conflicts(),
                out.out_of_order,
                out.too_old,
                out.duplicate_conflicts,
                batch.series_string(i),
                c.describe(),
                out.appended
            )));
        }
        Ok(out.appended + out.duplicates)
    }
}

/// Exposes the head series limits of `limits` under Thanos' metric names.
fn publish_limits(metrics: &IngestMetrics, limits: &LimitsConfig) {
    metrics.head_series_limits(
        limits.for_tenant_defaults().head_series,
        limits
            .write
            .tenants
            .keys()
            .map(|t| (t.as_str(), limits.for_tenant(t).head_series)),
    );
}

/// The outcome of [`Ingester::check`].
#[derive(Debug, Default)]
pub struct Checked {
    /// Batch indices of the valid series.
    pub valid: Vec<usize>,
    /// Samples in the valid series.
    pub samples: u64,
    /// Native histograms in the valid series.
    pub histograms: u64,
    /// Exemplars in the valid series, when exemplars are stored.
    pub exemplars: u64,
    /// Why some series were rejected (400), if any were.
    pub invalid: Option<String>,
    /// The rules the labels of series new to the head still have to pass (forwarded writes).
    pub labels_unchecked: Option<Rules>,
}

impl Checked {
    /// The 400 to answer once the valid series are stored, if any series or parts were refused.
    pub fn rejection(self) -> Result<(), WriteError> {
        match self.invalid {
            Some(msg) => Err(WriteError::Invalid(msg)),
            None => Ok(()),
        }
    }
}

//! Local ingestion: validate a decoded batch ([`validate`]), apply the tenant's [`limits`], and
//! append it to the tenant's TSDB.

pub mod limits;
pub mod validate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;

use crate::metrics::{IngestMetrics, TsdbMetrics};
use crate::tenant;
use crate::tsdb::{Admitted, Conflict, MultiTsdb, SeriesLimitExceeded, TenantDb};
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
            labels_unchecked: rules.defers_labels().then_some(rules),
            exemplars_stored: self.tsdb.stores_exemplars(),
            ..Checked::default()
        };
        let mut exemplars = 0u64;
        for i in range {
            let series_exemplars = batch.series_exemplars(i).len() as u64;
            exemplars += series_exemplars;
            let verdict = if rules.defers_labels() {
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
                    let n = checked.note_invalid(batch, i, r);
                    self.metrics.rejected(tenant, r.reason(), n);
                }
            }
        }
        // Without exemplar storage they are dropped and the write accepted, as Thanos does with
        // its default --tsdb.max-exemplars=0: a sender with `send_exemplars: true` must not fail
        // every batch.
        if !checked.exemplars_stored {
            self.metrics
                .rejected(tenant, "exemplars_dropped", exemplars);
            checked.exemplars = 0;
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
        self.append_checked(tenant, batch, series, None)
            .map(|(appended, _)| appended)
    }

    /// Appends the series of `checked` locally, checking the labels it left unchecked for the
    /// series that need it (those the head lacks, and under remote write 1.0 those not yet
    /// held to its name rules): a series that fails is refused (400), the others are stored.
    /// Returns the samples now stored.
    pub fn append_checked_locally(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        checked: &mut Checked,
    ) -> Result<u64, WriteError> {
        let (appended, refused) =
            self.append_checked(tenant, batch, &checked.valid, checked.labels_unchecked)?;
        for (i, r) in refused {
            let n = checked.note_refused(batch, i, r);
            self.metrics.rejected(tenant, r.reason(), n);
        }
        Ok(appended)
    }

    fn append_checked(
        &self,
        tenant: &str,
        batch: &WriteBatch,
        series: &[usize],
        labels_unchecked: Option<Rules>,
    ) -> Result<(u64, Vec<(usize, Rejection)>), WriteError> {
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
        let limit_hit = |e: SeriesLimitExceeded| {
            self.metrics.limit_hit(tenant, "head_series");
            WriteError::HeadSeriesLimit(e.to_string())
        };
        let mut refused = Vec::new();
        let kept: Vec<usize>;
        let (series, resolved) = match labels_unchecked {
            None => (
                series,
                db.resolve(batch, series, limits.head_series)
                    .map_err(limit_hit)?,
            ),
            Some(rules) => {
                let admitted =
                    resolve_checking_labels(&db, batch, series, limits.head_series, rules)
                        .map_err(limit_hit)?;
                kept = admitted.series;
                refused = admitted.refused;
                (&kept[..], admitted.resolved)
            }
        };
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
        Ok((out.appended + out.duplicates, refused))
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

/// Resolves `series`, checking labels under `rules` only where needed: for series the head
/// lacks (before creating them), and under remote write 1.0 for known series not yet held to
/// its name rules (created under 2.0, by a forward, or by the WAL replay).
fn resolve_checking_labels(
    db: &TenantDb,
    batch: &WriteBatch,
    series: &[usize],
    head_series_limit: u64,
    rules: Rules,
) -> Result<Admitted<Rejection>, SeriesLimitExceeded> {
    let mut admitted = db.resolve_admitting(batch, series, head_series_limit, &mut |i| {
        validate_labels(batch, i, rules)
    })?;
    if rules.classic_names() {
        let Admitted {
            series: ids,
            resolved,
            refused,
        } = &mut admitted;
        // Positions of the series that fail; nothing is allocated when none does.
        let mut failed = Vec::new();
        for (pos, (&i, s)) in ids.iter().zip(&resolved.refs).enumerate() {
            if s.classic_names.load(Ordering::Relaxed) {
                continue;
            }
            match validate_labels(batch, i, rules) {
                Ok(()) => s.classic_names.store(true, Ordering::Relaxed),
                Err(r) => {
                    refused.push((i, r));
                    failed.push(pos);
                }
            }
        }
        if !failed.is_empty() {
            remove_positions(ids, &failed);
            remove_positions(&mut resolved.refs, &failed);
        }
    }
    Ok(admitted)
}

/// Removes the elements at `positions` (ascending) from `v`, keeping the order of the rest.
fn remove_positions<T>(v: &mut Vec<T>, positions: &[usize]) {
    let mut pos = 0;
    let mut gone = positions.iter().peekable();
    v.retain(|_| {
        let keep = gone.next_if_eq(&&pos).is_none();
        pos += 1;
        keep
    });
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
    /// Series rejected (400), their samples and histograms, and the first of them.
    invalid_series: u64,
    invalid_samples: u64,
    first_invalid: Option<(usize, Rejection)>,
    /// The rules labels were not checked against yet (see [`Ingester::append_checked_locally`]).
    pub labels_unchecked: Option<Rules>,
    /// Whether the exemplars counted are stored.
    exemplars_stored: bool,
}

impl Checked {
    /// Counts series `i` as invalid; returns its samples and histograms.
    fn note_invalid(&mut self, batch: &WriteBatch, i: usize, r: Rejection) -> u64 {
        let n = (batch.series_samples(i).len() + batch.series_histograms(i).len()) as u64;
        self.invalid_series += 1;
        self.invalid_samples += n;
        if self.first_invalid.is_none_or(|(first, _)| i < first) {
            self.first_invalid = Some((i, r));
        }
        n
    }

    /// Takes series `i`, counted as valid, back out as invalid; returns its samples and
    /// histograms.
    fn note_refused(&mut self, batch: &WriteBatch, i: usize, r: Rejection) -> u64 {
        self.samples -= batch.series_samples(i).len() as u64;
        self.histograms -= batch.series_histograms(i).len() as u64;
        if self.exemplars_stored {
            self.exemplars -= batch.series_exemplars(i).len() as u64;
        }
        self.note_invalid(batch, i, r)
    }

    /// The 400 to answer once the valid series are stored, if any series or parts were refused.
    pub fn rejection(&self, batch: &WriteBatch) -> Result<(), WriteError> {
        match self.first_invalid {
            Some((i, r)) => Err(WriteError::Invalid(format!(
                "{} series ({} samples) rejected; first {}: {r}",
                self.invalid_series,
                self.invalid_samples,
                batch.series_string(i),
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::remove_positions;

    #[test]
    fn positions_are_removed_in_order() {
        let mut v: Vec<u32> = (0..8).collect();
        remove_positions(&mut v, &[0, 3, 7]);
        assert_eq!(v, vec![1, 2, 4, 5, 6]);
        remove_positions(&mut v, &[]);
        assert_eq!(v, vec![1, 2, 4, 5, 6]);
    }
}

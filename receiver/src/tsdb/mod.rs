//! Per-tenant time-series storage: a WAL-backed in-memory head per tenant under `--tsdb.path/<tenant>/`.
//!
//! Appends are ordered by the tenant's WAL lock: a request checks its samples against each
//! series' newest sample, writes the accepted ones to the WAL, then adds them to the head, all
//! under that lock, so the WAL order is the head order and a replay rebuilds exactly what was
//! acknowledged. Decoding, hashing and series lookup happen before the lock, in parallel.

pub mod chunks_head;
pub mod compact;
pub mod exemplars;
pub mod head;
pub mod histogram_chunks;
pub mod histogram_record;
pub mod index_cache;
pub mod input;
pub mod labels;
pub mod matcher;
pub mod postings;
pub mod query;
pub mod replay;
pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use chunks_head::RecoveryStats;
use exemplars::{Exemplar, ExemplarStore, Verdict};
use replay::Replayer;

pub use compact::Retention;
pub use head::{Head, MemSeries};
pub use index_cache::IndexCache;
pub use input::{HistogramSample, HistogramValue, InputExemplar, Sample, SeriesSource, SeriesVec};
pub use labels::Labels;
pub use matcher::Matcher;
pub use query::{Budget, ChunkSeries, LocalBlock, QueryError, ReadView, SeriesData, StoredChunk};
use wal::{RecordEncoder, ReplayStats, Wal, WalError};

/// Storage settings shared by every tenant.
#[derive(Debug, Clone)]
pub struct TsdbOptions {
    /// Width of a block in milliseconds; chunks never straddle a multiple of it.
    pub block_duration_ms: i64,
    /// Fsync the WAL before acknowledging every write.
    pub fsync_every_write: bool,
    /// Samples further than this ahead of the wall clock are refused (`None`: no limit).
    pub too_far_in_future_ms: Option<i64>,
    /// External labels (`--label`) written into every block's meta.json.
    pub external_labels: BTreeMap<String, String>,
    /// Name of the external label that carries the tenant.
    pub tenant_label_name: String,
    /// Block indexes kept for queries, shared by every tenant.
    pub index_cache: Arc<IndexCache>,
    /// External labels the hashrings in force give tenants (`external_labels` of a ring that
    /// lists the tenant), kept current by the ring holder.
    pub ring_labels: Arc<RingLabels>,
    /// Exemplars kept per tenant (`--tsdb.max-exemplars`); 0 keeps none.
    pub max_exemplars: usize,
    /// How far behind the head's newest sample a float sample older than its series' newest
    /// is still accepted (`--tsdb.out-of-order.time-window`); 0 refuses them.
    pub out_of_order_window_ms: i64,
}

/// Per-tenant external labels from the hashrings in force.
pub type RingLabels = arc_swap::ArcSwap<HashMap<String, BTreeMap<String, String>>>;

impl TsdbOptions {
    /// The external labels of `tenant`'s data, as Thanos computes them: its ring's
    /// `external_labels`, overridden by `--label` pairs, and the tenant label.
    pub fn tenant_labels(&self, tenant: &str) -> BTreeMap<String, String> {
        let mut labels = self
            .ring_labels
            .load()
            .get(tenant)
            .cloned()
            .unwrap_or_default();
        labels.extend(self.external_labels.clone());
        labels.insert(self.tenant_label_name.clone(), tenant.to_string());
        labels
    }
}

impl Default for TsdbOptions {
    fn default() -> Self {
        TsdbOptions {
            block_duration_ms: 2 * 3600 * 1000,
            fsync_every_write: false,
            too_far_in_future_ms: None,
            external_labels: BTreeMap::new(),
            tenant_label_name: "tenant_id".into(),
            index_cache: Arc::default(),
            ring_labels: Arc::default(),
            max_exemplars: 0,
            out_of_order_window_ms: 0,
        }
    }
}

/// Storage failures; each one means the write may be retried (5xx).
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// The WAL could not be written or read.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The tenant directory could not be created or listed.
    #[error("tenant directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A closed head chunk could not be read back from its file.
    #[error(transparent)]
    HeadChunk(#[from] chunks_head::ReadError),
    /// A block could not be written or read.
    #[error("block in {path}: {message}")]
    Block {
        /// The block directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Why a sample conflicts with what the head already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// Older than the series' newest sample.
    OutOfOrder,
    /// Same timestamp as the newest sample, different value.
    DuplicateTimestamp,
    /// Older than the head's lower bound: a block already covers that time.
    OutOfBounds,
    /// Further ahead of the wall clock than `--tsdb.too-far-in-future.time-window`.
    TooFarInFuture,
    /// Older than its series' newest sample and further behind the head's newest sample than
    /// `--tsdb.out-of-order.time-window`.
    TooOld,
}

impl Conflict {
    /// Metric label value.
    pub fn reason(self) -> &'static str {
        match self {
            Conflict::OutOfOrder => "out_of_order",
            Conflict::DuplicateTimestamp => "duplicate_sample_for_timestamp",
            Conflict::OutOfBounds => "out_of_bounds",
            Conflict::TooFarInFuture => "too_far_in_future",
            Conflict::TooOld => "too_old",
        }
    }

    /// Human-readable description.
    pub fn describe(self) -> &'static str {
        match self {
            Conflict::OutOfOrder => "out of order sample",
            Conflict::DuplicateTimestamp => "duplicate sample for timestamp with a different value",
            Conflict::OutOfBounds => "out of bounds: older than the head (already in a block)",
            Conflict::TooFarInFuture => "too far in the future",
            Conflict::TooOld => {
                "too old sample: older than its series' newest and outside the out-of-order time window"
            }
        }
    }
}

/// What a request's samples must fall within, read once under the WAL lock.
struct Bounds {
    /// The head's lower bound: older samples are in blocks already.
    min_valid: i64,
    /// Start of the first block cut ahead of the clock.
    ceiling: i64,
    /// The end of `--tsdb.too-far-in-future.time-window`.
    max_valid: i64,
    /// The oldest time an out-of-order sample may have (`i64::MAX`: none is accepted).
    out_of_order_floor: i64,
}

/// The head series of a request's series, in request order.
pub struct Resolved {
    /// One head series per listed series.
    pub refs: Vec<Arc<MemSeries>>,
    /// How many of them the lookup created.
    pub created: u64,
}

/// The new series of a request would take the head past its series limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant is above active series limit: {in_head} series in the head, {new} new, limit {limit}"
)]
pub struct SeriesLimitExceeded {
    /// Series in the head.
    pub in_head: u64,
    /// Series of the request the head does not hold.
    pub new: u64,
    /// The limit.
    pub limit: u64,
}

/// The head series of the series [`TenantDb::resolve_admitting`] kept.
pub struct Admitted<E> {
    /// One head series per kept series.
    pub resolved: Resolved,
    /// The kept series (indices into the source), in the order listed.
    pub series: Vec<usize>,
    /// The series refused, with why.
    pub refused: Vec<(usize, E)>,
}

/// What one append did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Samples written to the WAL and the head.
    pub appended: u64,
    /// Samples identical to stored ones, ignored as Prometheus does.
    pub duplicates: u64,
    /// Samples rejected as out of order.
    pub out_of_order: u64,
    /// Samples rejected as older than the out-of-order window.
    pub too_old: u64,
    /// Out-of-order samples accepted inside the window (also counted in `appended`).
    pub out_of_order_appended: u64,
    /// Samples rejected for a conflicting value at a stored timestamp.
    pub duplicate_conflicts: u64,
    /// Samples older than the head's lower bound.
    pub out_of_bounds: u64,
    /// Samples too far in the future.
    pub too_far_in_future: u64,
    /// Series created by this append.
    pub new_series: u64,
    /// Native histograms written (also counted in `appended`).
    pub histograms_appended: u64,
    /// Exemplars stored.
    pub exemplars_added: u64,
    /// Exemplars identical to a series' newest, ignored.
    pub exemplars_duplicate: u64,
    /// Exemplars not newer than their series' newest, refused.
    pub exemplars_out_of_order: u64,
    /// Exemplars with labels over 128 characters, refused.
    pub exemplars_too_long: u64,
    /// The first conflicting series (index into the batch) and why.
    pub first_conflict: Option<(usize, Conflict)>,
}

impl AppendOutcome {
    /// Samples rejected for conflicting with stored data.
    pub fn conflicts(&self) -> u64 {
        self.out_of_order
            + self.too_old
            + self.duplicate_conflicts
            + self.out_of_bounds
            + self.too_far_in_future
    }
}

struct WalState {
    wal: Wal,
    enc: RecordEncoder,
}

/// One tenant's head and WAL.
pub struct TenantDb {
    /// Tenant name (also its directory name).
    pub name: String,
    /// The tenant directory: `wal/` and one directory per block.
    pub dir: PathBuf,
    /// The in-memory head.
    pub head: Head,
    wal: Mutex<WalState>,
    cutting: Mutex<()>,
    /// Ranges `[min, max)` of blocks at or above the head's lower bound, oldest first: blocks a
    /// shutdown flush cut ahead of the clock. The head refuses samples from the first one on.
    future_blocks: Mutex<Vec<(i64, i64)>>,
    /// The blocks queries read and where the head takes over; see [`query`].
    view: RwLock<ReadView>,
    /// The newest exemplars; changed under the WAL lock, like the head.
    exemplars: Mutex<ExemplarStore>,
    opts: TsdbOptions,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Splits block ranges into the head's lower bound (the end of the newest block that is not
/// ahead of `now_ms` by more than a block width) and the ranges of the blocks beyond it.
///
/// A block far ahead of the clock (one far-future sample flushed on shutdown) must not become
/// the lower bound: every normal write after the restart would be out of bounds.
fn split_bounds(ranges: &[(i64, i64)], now_ms: i64, block_ms: i64) -> (i64, Vec<(i64, i64)>) {
    let horizon = now_ms.saturating_add(block_ms);
    let min_valid = ranges
        .iter()
        .filter(|(min, _)| *min <= horizon)
        .map(|&(_, max)| max)
        .max()
        .unwrap_or(i64::MIN);
    let mut future: Vec<(i64, i64)> = ranges
        .iter()
        .copied()
        .filter(|&(min, _)| min > horizon && min >= min_valid)
        .collect();
    future.sort_unstable();
    (min_valid, future)
}

/// What opening a tenant found in its WAL.
#[derive(Debug, Clone, Default)]
pub struct OpenStats {
    /// WAL replay details.
    pub replay: ReplayStats,
    /// What the head chunk files held.
    pub chunk_files: RecoveryStats,
    /// Closed chunks taken back from those files rather than rebuilt from the WAL.
    pub attached_chunks: u64,
    /// Samples restored into the head.
    pub samples: u64,
    /// Time spent replaying.
    pub duration: Duration,
}

/// An exemplar's labels as Prometheus accepts them: valid UTF-8, no empty or repeated name, at
/// most [`exemplars::MAX_LABEL_SET_CHARS`] characters in all (counted on the bytes given, before
/// anything is copied), sorted by name; `None` when they are not.
fn exemplar_labels(pairs: &[(&[u8], &[u8])]) -> Option<Labels> {
    let mut bytes = 0usize;
    let mut sorted: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
    for (n, v) in pairs {
        // Cheap bound first: a character takes at most four bytes.
        bytes = bytes.checked_add(n.len() + v.len())?;
        if bytes > exemplars::MAX_LABEL_SET_CHARS * 4 {
            return None;
        }
        let (n, v) = (std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?);
        if n.is_empty() {
            return None;
        }
        sorted.push((n, v));
    }
    let chars: usize = sorted
        .iter()
        .map(|(n, v)| n.chars().count() + v.chars().count())
        .sum();
    if chars > exemplars::MAX_LABEL_SET_CHARS {
        return None;
    }
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    Some(Labels::from_pairs(
        sorted.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    ))
}

/// Whether `t` is at `i64::MAX` or inside one of the `future` blocks (cut ahead of the clock),
/// where the head takes no sample.
fn beyond_head(future: &[(i64, i64)], t: i64) -> bool {
    t == i64::MAX || future.iter().any(|&(min, max)| t >= min && t < max)
}

/// Hash of a label key (see [`labels::write_key`]) used to find its series in the head.
pub fn labels_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

impl TenantDb {
    /// Opens (creating if needed) the tenant directory and replays its WAL into a new head.
    pub fn open(
        dir: &Path,
        name: &str,
        opts: TsdbOptions,
    ) -> Result<(TenantDb, OpenStats), TsdbError> {
        let start = Instant::now();
        fs::create_dir_all(dir).map_err(|source| TsdbError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        compact::remove_partial_blocks(dir);
        let chunks_dir = dir.join("chunks_head");
        // Chunk files name series by their WAL reference: without that WAL they mean nothing.
        let keep_chunks = wal::has_records(&dir.join("wal"));
        let (head, recovered) = Head::open(opts.block_duration_ms, &chunks_dir, keep_chunks)
            .map_err(|source| TsdbError::Dir {
                path: chunks_dir,
                source,
            })?;
        let blocks = compact::list_blocks(dir);
        let ranges: Vec<(i64, i64)> = blocks
            .iter()
            .map(|(_, m)| (m.min_time, m.max_time))
            .collect();
        let opened_at = now_ms();
        let (min_valid, future) = split_bounds(&ranges, opened_at, opts.block_duration_ms);
        head.set_min_valid_time(min_valid);
        head.set_ceiling(future.first().map_or(i64::MAX, |r| r.0));
        let mut replayer = Replayer::new(
            &head,
            (min_valid, &future),
            opened_at,
            recovered,
            ExemplarStore::new(opts.max_exemplars),
        );
        let (wal, replay) = Wal::open(&dir.join("wal"), |record| replayer.record(record))?;
        let replayed = replayer.finish();
        // Series whose samples all went to blocks carry nothing; drop them as a cut would.
        if head.min_valid_time() > i64::MIN {
            head.truncate(head.min_valid_time());
        }
        head.index_all();
        let db = TenantDb {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cutting: Mutex::new(()),
            future_blocks: Mutex::new(future),
            view: RwLock::new(ReadView {
                blocks: blocks
                    .into_iter()
                    .map(|(dir, meta)| Arc::new(LocalBlock { dir, meta }))
                    .collect(),
                // The replay kept no sample below the lower bound.
                head_floor: head.min_valid_time(),
            }),
            head,
            wal: Mutex::new(WalState {
                wal,
                enc: RecordEncoder::default(),
            }),
            exemplars: Mutex::new(replayed.exemplars),
            opts,
        };
        Ok((
            db,
            OpenStats {
                replay,
                chunk_files: replayed.chunk_files,
                attached_chunks: replayed.attached_chunks,
                samples: replayed.samples,
                duration: start.elapsed(),
            },
        ))
    }

    /// Looks up (or creates) the head series of every listed series, building and hashing each
    /// label key once. With a `head_series_limit` (0: none), nothing is created when the new
    /// series would take the head past it.
    pub fn resolve<S: SeriesSource + ?Sized>(
        &self,
        src: &S,
        series: &[usize],
        head_series_limit: u64,
    ) -> Result<Resolved, SeriesLimitExceeded> {
        self.lookup(src, series, head_series_limit, None)
            .map(|(resolved, _)| resolved)
    }

    /// As [`TenantDb::resolve`], but a series the head lacks is created only if `admit`
    /// accepts it (by its index in `src`); refused series are left out.
    pub fn resolve_admitting<S: SeriesSource + ?Sized, E>(
        &self,
        src: &S,
        series: &[usize],
        head_series_limit: u64,
        admit: &mut dyn FnMut(usize) -> Result<(), E>,
    ) -> Result<Admitted<E>, SeriesLimitExceeded> {
        let mut refused = Vec::new();
        let mut check = |i: usize| match admit(i) {
            Ok(()) => true,
            Err(e) => {
                refused.push((i, e));
                false
            }
        };
        let (resolved, kept) = self.lookup(src, series, head_series_limit, Some(&mut check))?;
        let series = match kept {
            Some(kept) => kept,
            None => series.to_vec(),
        };
        Ok(Admitted {
            resolved,
            series,
            refused,
        })
    }

    /// Resolves as [`TenantDb::resolve`]; with `admit`, a series the head lacks is created only
    /// if `admit` says so, and the listed series that were kept come back too.
    fn lookup<S: SeriesSource + ?Sized>(
        &self,
        src: &S,
        series: &[usize],
        head_series_limit: u64,
        admit: Option<&mut dyn FnMut(usize) -> bool>,
    ) -> Result<(Resolved, Option<Vec<usize>>), SeriesLimitExceeded> {
        // Every key first, then one probe of the head for all of them.
        // Every write builds all its series' keys in one buffer; one the source kept spares a
        // request a fresh multi-megabyte allocation (page faults, a regrow midway).
        let mut key = src.take_key_buffer();
        key.clear();
        let spans: Vec<(u64, Range<usize>)> = series
            .iter()
            .map(|&i| {
                let start = key.len();
                src.append_key(i, &mut key);
                (labels_hash(&key[start..]), start..key.len())
            })
            .collect();
        let found = self.head.get_many(&key, &spans);
        let mut missing: Vec<usize> = (0..found.len()).filter(|&p| found[p].is_none()).collect();
        let mut refused_any = false;
        if let Some(admit) = admit {
            let before = missing.len();
            missing.retain(|&pos| admit(series[pos]));
            refused_any = missing.len() < before;
        }
        let new = missing.len() as u64;
        let in_head = self.head.num_series();
        if head_series_limit > 0 && new > 0 && in_head + new > head_series_limit {
            return Err(SeriesLimitExceeded {
                in_head,
                new,
                limit: head_series_limit,
            });
        }
        let mut created = 0;
        let mut refs = found;
        for pos in missing {
            let (hash, range) = &spans[pos];
            let (s, new) = self.head.create(*hash, &key[range.clone()]);
            created += u64::from(new);
            refs[pos] = Some(s);
        }
        // Only refused series are left without one.
        let kept = refused_any.then(|| {
            series
                .iter()
                .zip(&refs)
                .filter(|(_, s)| s.is_some())
                .map(|(&i, _)| i)
                .collect()
        });
        let refs = refs.into_iter().flatten().collect();
        src.keep_key_buffer(key);
        Ok((Resolved { refs, created }, kept))
    }

    /// Appends the samples of `series` (batch indices, resolved to `refs`) through the WAL into the head.
    pub fn append<S: SeriesSource + ?Sized>(
        &self,
        batch: &S,
        series: &[usize],
        refs: &[Arc<MemSeries>],
    ) -> Result<AppendOutcome, TsdbError> {
        let mut out = AppendOutcome::default();
        let mut state = self.wal.lock();
        let WalState { wal, enc } = &mut *state;
        enc.clear();
        let refs = self.refresh_removed(batch, series, refs);
        let now = now_ms();
        let bounds = Bounds {
            // NO_SAMPLE stands for "no sample yet" in a series, so no sample may have it.
            min_valid: self.head.min_valid_time().max(head::NO_SAMPLE + 1),
            // Samples from the ceiling on may fall into a block cut ahead of the clock.
            ceiling: self.head.ceiling(),
            max_valid: self
                .opts
                .too_far_in_future_ms
                .map_or(i64::MAX, |w| now.saturating_add(w)),
            out_of_order_floor: self.out_of_order_floor(),
        };

        let unlogged: Vec<&Arc<MemSeries>> = refs
            .iter()
            .filter(|s| !s.logged.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        if !unlogged.is_empty() {
            enc.series(unlogged.iter().map(|s| (s.id, &s.labels)));
        }

        // The range of samples to append per series; samples are sorted within a series.
        let mut ranges = Vec::with_capacity(series.len());
        // Out-of-order samples to merge, by position in `series`: logged before the series'
        // in-order samples, so a replay sees them behind the same newest sample.
        let mut late: Vec<(usize, Vec<(i64, f64)>)> = Vec::new();
        enc.begin_samples();
        for (pos, (&i, s)) in series.iter().zip(refs.iter()).enumerate() {
            let samples = batch.series_samples(i);
            let (range, ooo) = self.accepted_range(samples, s, &bounds, i, &mut out);
            if !ooo.is_empty() {
                for &(t, v) in &ooo {
                    enc.sample(s.id, t, v);
                }
                late.push((pos, ooo));
            }
            let mut prev_t = None;
            for sample in &samples[range.clone()] {
                if prev_t == Some(sample.t) {
                    continue;
                }
                prev_t = Some(sample.t);
                enc.sample(s.id, sample.t, sample.v);
            }
            ranges.push(range);
        }
        enc.end_samples();
        let histograms = self.accepted_histograms(batch, series, &refs, &ranges, &bounds, &mut out);
        if !histograms.is_empty() {
            enc.histograms(histograms.iter().map(|(s, h)| (s.id, h.t, &h.h)));
        }
        let exemplars = self.log_exemplars(batch, series, &refs, enc, &mut out);

        let logged = wal.write(enc.bytes()).and_then(|()| {
            if self.opts.fsync_every_write {
                wal.sync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = logged {
            // Series this failed write created hold nothing: drop them, or they would count
            // toward the head-series limit for a write that never happened.
            for s in &unlogged {
                self.head.remove_if_empty(s);
            }
            return Err(e.into());
        }
        for s in unlogged {
            s.logged.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        for (pos, samples) in &late {
            let s = &refs[*pos];
            // Logged already: a replay merges them if this fails.
            if let Err(e) = self
                .head
                .insert_out_of_order(s, &mut s.data.lock(), samples)
            {
                tracing::error!(tenant = self.name, error = %e, "merging late samples failed");
            }
            out.appended += samples.len() as u64;
            out.out_of_order_appended += samples.len() as u64;
        }
        self.apply(batch, series, &refs, ranges, now, &mut out);
        self.apply_histograms(&histograms, now, &mut out);
        if !exemplars.is_empty() {
            let mut store = self.exemplars.lock();
            for (s, e) in exemplars {
                store.add(s.id, &s.labels, e);
            }
        }
        Ok(out)
    }

    /// Checks the exemplars of the appended series against the store and adds a WAL record of
    /// the accepted ones; returns them, to be stored once the WAL write succeeded. Callers hold
    /// the WAL lock, so the store cannot change in between.
    fn log_exemplars<'a, S: SeriesSource + ?Sized>(
        &self,
        batch: &S,
        series: &[usize],
        refs: &'a [Arc<MemSeries>],
        enc: &mut RecordEncoder,
        out: &mut AppendOutcome,
    ) -> Vec<(&'a Arc<MemSeries>, Exemplar)> {
        let mut accepted: Vec<(&Arc<MemSeries>, Exemplar)> = Vec::new();
        if self.opts.max_exemplars == 0 {
            return accepted;
        }
        let mut labels_buf = Vec::new();
        // The newest exemplar accepted so far per series of this batch, by index into `accepted`.
        let mut newest: HashMap<u64, usize> = HashMap::new();
        // Held for the whole batch: only appends (under the WAL lock, held here) change it.
        let store = self.exemplars.lock();
        for (&i, s) in series.iter().zip(refs.iter()) {
            for e in batch.series_exemplars(i) {
                let Some(labels) = exemplar_labels(&e.labels).filter(|_| !e.too_many_labels) else {
                    out.exemplars_too_long += 1;
                    continue;
                };
                let e = Exemplar {
                    labels,
                    value: e.value,
                    t: e.t,
                };
                let verdict = match newest.get(&s.id) {
                    Some(&k) => exemplars::after(&accepted[k].1, &e),
                    None => store.check(s.id, &e),
                };
                match verdict {
                    Verdict::Added => {
                        newest.insert(s.id, accepted.len());
                        accepted.push((s, e));
                    }
                    Verdict::Duplicate => out.exemplars_duplicate += 1,
                    Verdict::OutOfOrder => out.exemplars_out_of_order += 1,
                    Verdict::LabelsTooLong => out.exemplars_too_long += 1,
                }
            }
        }
        drop(store);
        if !accepted.is_empty() {
            enc.begin_exemplars();
            for (s, e) in &accepted {
                labels_buf.clear();
                e.labels.write_wal(&mut labels_buf);
                enc.exemplar(s.id, e.t, e.value, &labels_buf);
            }
            enc.end_samples();
        }
        out.exemplars_added = accepted.len() as u64;
        accepted
    }

    /// The exemplars in `[mint, maxt]` of series matching any of `selectors`.
    // The scan holds the exemplar lock, which appends with exemplars wait for: a store of
    // `--tsdb.max-exemplars` entries is scanned in milliseconds.
    pub fn select_exemplars(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        self.exemplars.lock().select(selectors, mint, maxt)
    }

    /// Exemplars stored now.
    pub fn exemplar_count(&self) -> usize {
        self.exemplars.lock().len()
    }

    /// Oldest and newest stored exemplar times (a scan of the store).
    pub fn exemplar_time_range(&self) -> Option<(i64, i64)> {
        self.exemplars.lock().time_range()
    }

    /// The series of `refs` with any that a cut dropped between lookup and the WAL lock looked
    /// up again. Callers hold the WAL lock.
    fn refresh_removed<'a, S: SeriesSource + ?Sized>(
        &self,
        batch: &S,
        series: &[usize],
        refs: &'a [Arc<MemSeries>],
    ) -> std::borrow::Cow<'a, [Arc<MemSeries>]> {
        let removed = |s: &Arc<MemSeries>| s.removed.load(std::sync::atomic::Ordering::Relaxed);
        if !refs.iter().any(removed) {
            return std::borrow::Cow::Borrowed(refs);
        }
        let fresh = series
            .iter()
            .zip(refs)
            .map(|(&i, s)| {
                if removed(s) {
                    let mut key = Vec::new();
                    labels::write_key(batch.series_labels(i), &mut key);
                    self.head.get_or_create(labels_hash(&key), &key).0
                } else {
                    Arc::clone(s)
                }
            })
            .collect();
        std::borrow::Cow::Owned(fresh)
    }

    /// The samples of series `i` that may be appended to `s`, counting the others in `out`:
    /// out of bounds (below the head, at or past a future block), too far in the future, out of
    /// order, or at the series' newest timestamp (a duplicate, or a conflict with another value).
    #[inline]
    fn accepted_range(
        &self,
        samples: &[Sample],
        s: &MemSeries,
        bounds: &Bounds,
        i: usize,
        out: &mut AppendOutcome,
    ) -> (Range<usize>, Vec<(i64, f64)>) {
        let mut late = Vec::new();
        let last = s.data.lock().last();
        let mut start = samples.partition_point(|x| x.t < bounds.min_valid);
        let below_ceiling = match samples.last() {
            Some(last) if last.t >= bounds.ceiling => {
                self.first_out_of_bounds(samples, bounds.ceiling)
            }
            _ => samples.len(),
        }
        .max(start);
        let end = samples[..below_ceiling]
            .partition_point(|x| x.t <= bounds.max_valid)
            .max(start);
        let out_of_bounds = start + (samples.len() - below_ceiling);
        if out_of_bounds > 0 {
            out.out_of_bounds += out_of_bounds as u64;
            out.first_conflict.get_or_insert((i, Conflict::OutOfBounds));
        }
        if end < below_ceiling {
            out.too_far_in_future += (below_ceiling - end) as u64;
            out.first_conflict
                .get_or_insert((i, Conflict::TooFarInFuture));
        }
        if let Some((last_t, last_bits)) = last {
            for sample in &samples[start..end] {
                if sample.t > last_t {
                    break;
                }
                let conflict = if sample.t < last_t && sample.t >= bounds.out_of_order_floor {
                    // Inside the window: merged once checked against what is stored.
                    late.push((sample.t, sample.v));
                    start += 1;
                    continue;
                } else if sample.t < last_t && bounds.out_of_order_floor != i64::MAX {
                    out.too_old += 1;
                    Conflict::TooOld
                } else if sample.t < last_t {
                    out.out_of_order += 1;
                    Conflict::OutOfOrder
                } else if sample.v.to_bits() == last_bits {
                    out.duplicates += 1;
                    start += 1;
                    continue;
                } else {
                    out.duplicate_conflicts += 1;
                    Conflict::DuplicateTimestamp
                };
                out.first_conflict.get_or_insert((i, conflict));
                start += 1;
            }
        }
        if !late.is_empty() {
            late = self.check_out_of_order(late, s, i, out);
        }
        (start..end, late)
    }

    /// The out-of-order samples of series `i` that may be merged into `s`: a repeat of a stored
    /// sample is a duplicate, another value at a stored time a conflict, and a series that
    /// holds native histograms takes none (its chunks could not stay disjoint).
    #[cold]
    fn check_out_of_order(
        &self,
        late: Vec<(i64, f64)>,
        s: &MemSeries,
        i: usize,
        out: &mut AppendOutcome,
    ) -> Vec<(i64, f64)> {
        let data = s.data.lock();
        let mut kept: Vec<(i64, f64)> = Vec::with_capacity(late.len());
        for (t, v) in late {
            if kept.last().is_some_and(|&(prev, _)| prev == t) {
                out.duplicates += 1;
                continue;
            }
            let conflict = if data.histograms.is_some() {
                out.out_of_order += 1;
                Conflict::OutOfOrder
            } else {
                match self.head.float_at(s, &data, t) {
                    Err(e) => {
                        // Without the stored chunk there is no telling a repeat from a
                        // conflict: refuse it as out of order.
                        tracing::error!(tenant = self.name, error = %e, "reading a head chunk failed");
                        out.out_of_order += 1;
                        Conflict::OutOfOrder
                    }
                    Ok(None) => {
                        kept.push((t, v));
                        continue;
                    }
                    Ok(Some(bits)) if bits == v.to_bits() => {
                        out.duplicates += 1;
                        continue;
                    }
                    Ok(Some(_)) => {
                        out.duplicate_conflicts += 1;
                        Conflict::DuplicateTimestamp
                    }
                }
            };
            out.first_conflict.get_or_insert((i, conflict));
        }
        kept
    }

    /// The oldest time an out-of-order sample may have now: the window behind the head's
    /// newest sample (`i64::MAX` without a window, or before the first sample).
    fn out_of_order_floor(&self) -> i64 {
        match (self.opts.out_of_order_window_ms, self.head.time_range()) {
            (w, Some((_, max))) if w > 0 => max.saturating_sub(w),
            _ => i64::MAX,
        }
    }

    /// Adds the logged samples to the head; within a request, repeats of a timestamp count as
    /// duplicates. Callers hold the WAL lock.
    fn apply<S: SeriesSource + ?Sized>(
        &self,
        batch: &S,
        series: &[usize],
        refs: &[Arc<MemSeries>],
        ranges: Vec<Range<usize>>,
        now: i64,
        out: &mut AppendOutcome,
    ) {
        let mut newest_present = i64::MIN;
        for ((&i, s), range) in series.iter().zip(refs).zip(ranges) {
            let mut data = s.data.lock();
            let mut prev_t = None;
            for sample in &batch.series_samples(i)[range] {
                if prev_t == Some(sample.t) {
                    out.duplicates += 1;
                    continue;
                }
                prev_t = Some(sample.t);
                self.head.append(s, &mut data, sample.t, sample.v);
                if sample.t <= now {
                    newest_present = newest_present.max(sample.t);
                }
                out.appended += 1;
            }
        }
        self.head.note_present(newest_present);
    }

    /// The histograms of the appended series that may be stored, counting the others in `out`
    /// as [`Self::accepted_range`] counts samples. A series' histograms must be newer than its
    /// stored samples and the samples of this request. Callers hold the WAL lock.
    fn accepted_histograms<'a, S: SeriesSource + ?Sized>(
        &self,
        batch: &'a S,
        series: &[usize],
        refs: &'a [Arc<MemSeries>],
        ranges: &[Range<usize>],
        bounds: &Bounds,
        out: &mut AppendOutcome,
    ) -> Vec<(&'a Arc<MemSeries>, &'a HistogramSample)> {
        let mut accepted = Vec::new();
        // The newest accepted so far per series: a request may name one series twice.
        let mut newest: HashMap<u64, (i64, u64)> = HashMap::new();
        for ((&i, s), range) in series.iter().zip(refs).zip(ranges) {
            let histograms = batch.series_histograms(i);
            if histograms.is_empty() {
                continue;
            }
            let newest_sample = batch.series_samples(i)[range.clone()].last().map(|x| x.t);
            let mut last = match newest.get(&s.id) {
                Some(&n) => Some(n),
                None => s.data.lock().last(),
            };
            if let Some(t) = newest_sample
                && last.is_none_or(|(l, _)| t > l)
            {
                last = Some((t, 0));
            }
            for h in histograms {
                let conflict = if h.t < bounds.min_valid
                    || (h.t >= bounds.ceiling && beyond_head(&self.future_blocks.lock(), h.t))
                {
                    out.out_of_bounds += 1;
                    Some(Conflict::OutOfBounds)
                } else if h.t > bounds.max_valid {
                    out.too_far_in_future += 1;
                    Some(Conflict::TooFarInFuture)
                } else {
                    match last {
                        Some((l, _)) if h.t < l => {
                            out.out_of_order += 1;
                            Some(Conflict::OutOfOrder)
                        }
                        Some((l, print)) if h.t == l => {
                            if print == histogram_record::fingerprint(&h.h) {
                                out.duplicates += 1;
                                None
                            } else {
                                out.duplicate_conflicts += 1;
                                Some(Conflict::DuplicateTimestamp)
                            }
                        }
                        _ => {
                            let newest_here = (h.t, histogram_record::fingerprint(&h.h));
                            last = Some(newest_here);
                            newest.insert(s.id, newest_here);
                            accepted.push((s, h));
                            None
                        }
                    }
                };
                if let Some(c) = conflict {
                    out.first_conflict.get_or_insert((i, c));
                }
            }
        }
        accepted
    }

    /// Adds logged histograms to the head. Callers hold the WAL lock.
    fn apply_histograms(
        &self,
        histograms: &[(&Arc<MemSeries>, &HistogramSample)],
        now: i64,
        out: &mut AppendOutcome,
    ) {
        let mut newest_present = i64::MIN;
        for (s, h) in histograms {
            let mut data = s.data.lock();
            self.head.append_histogram(s, &mut data, h.t, &h.h);
            if h.t <= now {
                newest_present = newest_present.max(h.t);
            }
            out.appended += 1;
            out.histograms_appended += 1;
        }
        self.head.note_present(newest_present);
    }

    /// Index of the first sample at `i64::MAX` or inside a block cut ahead of the clock; the
    /// series' samples from there on are out of bounds. Callers hold the WAL lock.
    fn first_out_of_bounds(&self, samples: &[Sample], ceiling: i64) -> usize {
        let future = self.future_blocks.lock();
        let from = samples.partition_point(|x| x.t < ceiling);
        samples[from..]
            .iter()
            .position(|x| beyond_head(&future, x.t))
            .map_or(samples.len(), |i| from + i)
    }

    /// Bytes in the WAL.
    pub fn wal_size(&self) -> u64 {
        self.wal.lock().wal.size_bytes()
    }

    /// Fsyncs the WAL without blocking appends for the duration of the sync.
    pub fn sync_wal(&self) -> Result<(), TsdbError> {
        let Some(handle) = self.wal.lock().wal.sync_handle() else {
            return Ok(());
        };
        handle.sync_data().map_err(|source| TsdbError::Dir {
            path: PathBuf::from(&self.name),
            source,
        })
    }

    /// Closes the WAL segment if the tenant wrote nothing since the last call, freeing its
    /// descriptor; the next write reopens it. The fsync runs without the WAL lock.
    pub fn close_wal_if_idle(&self) -> Result<(), TsdbError> {
        let Some(handle) = self.wal.lock().wal.take_if_idle() else {
            return Ok(());
        };
        handle.sync_data().map_err(|source| TsdbError::Dir {
            path: PathBuf::from(&self.name),
            source,
        })
    }
}

/// Every tenant's database under one root directory.
pub struct MultiTsdb {
    root: PathBuf,
    opts: TsdbOptions,
    tenants: RwLock<HashMap<String, Arc<TenantDb>>>,
    opening: Mutex<()>,
}

impl MultiTsdb {
    /// The external labels of `tenant`'s data, as its blocks carry them: its ring's labels,
    /// `--label` pairs and the tenant label.
    pub fn external_labels(&self, tenant: &str) -> BTreeMap<String, String> {
        self.opts.tenant_labels(tenant)
    }

    /// Whether exemplars are stored (`--tsdb.max-exemplars` above 0).
    pub fn stores_exemplars(&self) -> bool {
        self.opts.max_exemplars > 0
    }

    /// Name of the external label that carries the tenant (`--receive.tenant-label-name`).
    pub fn tenant_label_name(&self) -> &str {
        &self.opts.tenant_label_name
    }

    /// A store rooted at `root`; nothing is opened yet.
    pub fn new(root: &Path, opts: TsdbOptions) -> Self {
        MultiTsdb {
            root: root.to_path_buf(),
            opts,
            tenants: RwLock::new(HashMap::new()),
            opening: Mutex::new(()),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Opens every tenant directory found under the root, replaying WALs; returns per-tenant stats.
    pub fn open_existing(&self) -> Result<Vec<(String, OpenStats)>, TsdbError> {
        fs::create_dir_all(&self.root).map_err(|source| TsdbError::Dir {
            path: self.root.clone(),
            source,
        })?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(|source| TsdbError::Dir {
            path: self.root.clone(),
            source,
        })? {
            let entry = entry.map_err(|source| TsdbError::Dir {
                path: self.root.clone(),
                source,
            })?;
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = entry.file_name().to_str()
                && crate::tenant::validate(name).is_ok()
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        let mut stats = Vec::new();
        for name in names {
            let (_, s) = self.open_tenant(&name)?;
            stats.push((name, s));
        }
        Ok(stats)
    }

    /// The tenant's database, if it is open.
    pub fn get(&self, tenant: &str) -> Option<Arc<TenantDb>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// The tenant's database, opened (and its WAL replayed) on first use.
    pub fn tenant(&self, tenant: &str) -> Result<Arc<TenantDb>, TsdbError> {
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        self.open_tenant(tenant).map(|(db, _)| db)
    }

    fn open_tenant(&self, tenant: &str) -> Result<(Arc<TenantDb>, OpenStats), TsdbError> {
        let _opening = self.opening.lock();
        if let Some(db) = self.get(tenant) {
            return Ok((db, OpenStats::default()));
        }
        let (db, stats) = TenantDb::open(&self.root.join(tenant), tenant, self.opts.clone())?;
        let db = Arc::new(db);
        self.tenants
            .write()
            .insert(tenant.to_string(), Arc::clone(&db));
        Ok((db, stats))
    }

    /// Number of open tenants.
    pub fn num_tenants(&self) -> usize {
        self.tenants.read().len()
    }

    /// Every open tenant, sorted by name.
    pub fn tenants(&self) -> Vec<Arc<TenantDb>> {
        let mut all: Vec<_> = self.tenants.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Cuts due blocks of every tenant and applies local retention to blocks `may_delete` allows;
    /// failures are logged and retried next time.
    pub fn compact_all(
        &self,
        retention: Retention,
        may_delete: &dyn Fn(&TenantDb, &tsdb_format::meta::BlockMeta) -> bool,
    ) {
        let now = now_ms();
        for db in self.tenants() {
            if let Err(e) = db.compact() {
                tracing::error!(tenant = db.name, error = %e, "head compaction failed; will retry");
            }
            for ulid in db.apply_retention(now, retention, |m| may_delete(&db, m)) {
                tracing::info!(tenant = db.name, %ulid, "deleted block past retention");
            }
        }
    }

    /// Cuts every tenant's whole head into blocks; returns how many blocks were written and the
    /// tenants whose flush failed (their WAL keeps the data). One failing tenant does not stop
    /// the others from being flushed.
    pub fn flush_all(&self) -> (usize, Vec<(String, TsdbError)>) {
        let mut n = 0;
        let mut failed = Vec::new();
        for db in self.tenants() {
            match db.flush() {
                Ok(blocks) => n += blocks.len(),
                Err(e) => failed.push((db.name.clone(), e)),
            }
        }
        (n, failed)
    }

    /// Closes the WAL segments of tenants that wrote nothing since the last call.
    pub fn close_idle_wals(&self) {
        for db in self.tenants() {
            if let Err(e) = db.close_wal_if_idle() {
                tracing::error!(tenant = db.name, error = %e, "closing an idle WAL segment failed");
            }
        }
    }

    /// Fsyncs every tenant's WAL.
    pub fn sync_all(&self) -> Result<(), TsdbError> {
        for db in self.tenants() {
            db.sync_wal()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exemplar_labels_are_checked_on_their_bytes_and_sorted() {
        let ok = exemplar_labels(&[(b"z", b"1"), (b"trace_id", b"abc")]).unwrap();
        assert_eq!(ok, Labels::from_strs(&[("trace_id", "abc"), ("z", "1")]));
        // Invalid UTF-8 is refused, not rendered as one replacement character.
        let mut long = vec![b'x'; 30 << 20];
        long[0] = 0x80;
        assert!(exemplar_labels(&[(b"trace_id", &long)]).is_none());
        assert!(exemplar_labels(&[(b"trace_id", &[0xff, 0xfe][..])]).is_none());
        assert!(exemplar_labels(&[(b"", b"v")]).is_none());
        assert!(exemplar_labels(&[(b"a", b"1"), (b"a", b"2")]).is_none());
        let at_limit = "é".repeat(exemplars::MAX_LABEL_SET_CHARS - 1);
        assert!(exemplar_labels(&[(b"a", at_limit.as_bytes())]).is_some());
        let over = "é".repeat(exemplars::MAX_LABEL_SET_CHARS);
        assert!(exemplar_labels(&[(b"a", over.as_bytes())]).is_none());
    }

    type Spec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

    fn batch(series: &[Spec<'_>]) -> SeriesVec {
        series
            .iter()
            .fold(SeriesVec::new(), |b, (labels, samples)| {
                b.with(labels, samples)
            })
    }

    fn append(db: &TenantDb, b: &SeriesVec) -> AppendOutcome {
        let idx = b.all();
        let resolved = db.resolve(b, &idx, 0).unwrap();
        db.append(b, &idx, &resolved.refs).unwrap()
    }

    #[test]
    fn appends_survive_reopen_and_conflicts_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        let up = [("__name__", "up"), ("job", "a")];
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let out = append(&db, &batch(&[(&up, &[(1, 1.0), (2, stale), (2, stale)])]));
        assert_eq!((out.appended, out.duplicates), (2, 1));

        let out = append(
            &db,
            &batch(&[
                (&up, &[(1, 5.0), (2, stale), (2, 9.0), (3, 3.0)]),
                (&[("__name__", "other")], &[(10, 1.0)]),
            ]),
        );
        assert_eq!(out.out_of_order, 1);
        assert_eq!(out.duplicates, 1);
        assert_eq!(out.duplicate_conflicts, 1);
        assert_eq!(out.appended, 2);
        assert_eq!(out.first_conflict, Some((0, Conflict::OutOfOrder)));
        drop(db);

        let (db, stats) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        assert_eq!(stats.samples, 4);
        assert_eq!(db.head.num_series(), 2);
        let s = db.head.select(&[Matcher::Equal("job".into(), "a".into())]);
        let samples = db
            .head
            .samples(&s[0], &s[0].data.lock(), i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[1].1.to_bits(), 0x7ff0_0000_0000_0002);
        // New series after a reopen get fresh references.
        let out = append(&db, &batch(&[(&[("__name__", "new")], &[(1, 1.0)])]));
        assert_eq!(out.appended, 1);
        drop(db);
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        assert_eq!(db.head.num_series(), 3);
    }

    #[test]
    fn histograms_are_appended_replayed_and_cut_into_blocks() {
        use tsdb_format::histogram::{FloatHistogram, Histogram, Span};
        let counter = |t: i64, n: u64| HistogramSample {
            t,
            h: HistogramValue::Int(Histogram {
                count: n,
                sum: n as f64,
                positive_spans: vec![Span {
                    offset: (n % 3) as i32,
                    length: 1,
                }],
                positive_buckets: vec![n as i64],
                ..Histogram::default()
            }),
        };
        let gauge = |t: i64, x: f64| HistogramSample {
            t,
            h: HistogramValue::Float(FloatHistogram {
                hint: tsdb_format::histogram::CounterResetHint::Gauge,
                count: x,
                zero_count: x,
                ..FloatHistogram::default()
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        let h = [("__name__", "h")];
        let g = [("__name__", "g")];
        let hs: Vec<_> = (0..300)
            .map(|i| counter(i * 15_000, i as u64 + 1))
            .collect();
        let b = SeriesVec::new()
            .with_histograms(&h, hs.clone())
            .with_histograms(&g, vec![gauge(1000, 2.0), gauge(2000, 1.0)]);
        let out = append(&db, &b);
        assert_eq!((out.appended, out.histograms_appended), (302, 302));

        // A resent histogram is a duplicate; another value at a stored time, or an older one, a conflict.
        let again = SeriesVec::new().with_histograms(
            &h,
            vec![
                counter(299 * 15_000, 300),
                counter(100, 1),
                counter(299 * 15_000 - 1, 5),
            ],
        );
        let out = append(&db, &again);
        assert_eq!((out.duplicates, out.out_of_order, out.appended), (1, 2, 0));
        let conflict = SeriesVec::new().with_histograms(&h, vec![counter(299 * 15_000, 7)]);
        assert_eq!(append(&db, &conflict).duplicate_conflicts, 1);
        // A float sample older than the newest histogram is out of order.
        let float = SeriesVec::new().with(&h, &[(100, 1.0)]);
        assert_eq!(append(&db, &float).out_of_order, 1);
        drop(db);

        // The WAL brings every histogram back, and a block holds them as Prometheus reads them.
        let (db, stats) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        assert_eq!(stats.samples, 302);
        let meta = db.cut_block(0, 7_200_000).unwrap().expect("a block");
        assert_eq!(meta.stats.num_histogram_samples, 302);
        assert_eq!(meta.stats.num_float_samples, 0);
        let block = tsdb_format::Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
        let series: Vec<_> = block.series().unwrap().map(Result::unwrap).collect();
        assert_eq!(
            series[0].labels,
            vec![("__name__".to_string(), "g".to_string())]
        );
        assert_eq!(series[0].histograms.len(), 2);
        assert_eq!(series[0].histograms[1].1.count, 1.0);
        let got: Vec<_> = series[1]
            .histograms
            .iter()
            .map(|(t, h)| (*t, h.count))
            .collect();
        let want: Vec<_> = hs
            .iter()
            .map(|s| match &s.h {
                HistogramValue::Int(h) => (s.t, h.count as f64),
                HistogramValue::Float(_) => unreachable!(),
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_float_stale_marker_ends_a_histogram_series_as_a_histogram() {
        use tsdb_format::histogram::{Histogram, STALE_NAN_BITS};
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        let h = [("__name__", "h")];
        let one = HistogramSample {
            t: 1000,
            h: HistogramValue::Int(Histogram {
                count: 1,
                zero_count: 1,
                ..Histogram::default()
            }),
        };
        append(&db, &SeriesVec::new().with_histograms(&h, vec![one]));
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert_eq!(append(&db, &batch(&[(&h, &[(2000, stale)])])).appended, 1);
        // Resent as a float or as a histogram stale marker, it is the same sample.
        assert_eq!(append(&db, &batch(&[(&h, &[(2000, stale)])])).duplicates, 1);
        let hist_stale = HistogramSample {
            t: 2000,
            h: HistogramValue::Int(Histogram::stale()),
        };
        let out = append(&db, &SeriesVec::new().with_histograms(&h, vec![hist_stale]));
        assert_eq!((out.duplicates, out.conflicts()), (1, 0));
        let series = db
            .head
            .select(&[Matcher::Equal("__name__".into(), "h".into())]);
        let data = series[0].data.lock();
        let chunks = db.head.series_chunks(&series[0], &data).unwrap();
        assert_eq!(chunks.len(), 1, "no float chunk: {chunks:?}");
        let got: Vec<_> = tsdb_format::chunkenc::iter_histogram(&chunks[0].3).collect();
        assert_eq!(got.len(), 2);
        assert!(got[1].1.is_stale());
    }

    /// Every series' labels with its chunks' ranges and encodings and its samples (floats as
    /// bits), for comparing a head before and after a restart.
    #[allow(clippy::type_complexity)]
    fn head_contents(db: &TenantDb) -> Vec<(Labels, Vec<(i64, i64, u8)>, Vec<(i64, u64)>)> {
        let mut out: Vec<_> = db
            .head
            .all_series()
            .iter()
            .map(|s| {
                let data = s.data.lock();
                let chunks = db.head.series_chunks(s, &data).unwrap();
                let ranges = chunks.iter().map(|c| (c.0, c.1, c.2)).collect();
                let samples = db
                    .head
                    .samples(s, &data, i64::MIN, i64::MAX)
                    .unwrap()
                    .into_iter()
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect();
                (s.labels.clone(), ranges, samples)
            })
            .collect();
        out.sort_by(|a, b| a.0.key().cmp(b.0.key()));
        out
    }

    #[test]
    fn a_restart_takes_closed_chunks_back_and_replays_only_the_rest() {
        use tsdb_format::histogram::FloatHistogram;
        let opts = || TsdbOptions {
            out_of_order_window_ms: 3_600_000,
            ..TsdbOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let step = |k: i64| k * 15_000;
        // 400 samples a series, every 13th left out and sent late: chunks are rewritten.
        for k in (0..400).filter(|k| k % 13 != 5) {
            let b = names.iter().fold(SeriesVec::new(), |b, n| {
                b.with(&[("__name__", n)], &[(step(k), (k * 7 % 11) as f64)])
            });
            append(&db, &b);
        }
        for k in (0..400).filter(|k| k % 13 == 5 && *k > 250) {
            let out = append(&db, &batch(&[(&[("__name__", "s3")], &[(step(k), 0.5)])]));
            assert_eq!(out.out_of_order_appended, 1);
        }
        // One series switches between floats and native histograms, ending on a stale marker.
        let h = [("__name__", "mixed")];
        let hist = |t| HistogramSample {
            t,
            h: HistogramValue::Float(FloatHistogram {
                count: 2.0,
                zero_count: 2.0,
                ..FloatHistogram::default()
            }),
        };
        for round in 0..3 {
            let floats: Vec<_> = (0..130).map(|k| (step(round * 300 + k), 1.0)).collect();
            append(&db, &batch(&[(&h, &floats)]));
            let hs = (130..300).map(|k| hist(step(round * 300 + k))).collect();
            append(&db, &SeriesVec::new().with_histograms(&h, hs));
        }
        let stale = f64::from_bits(tsdb_format::histogram::STALE_NAN_BITS);
        append(&db, &batch(&[(&h, &[(step(900), stale)])]));
        let want = head_contents(&db);
        assert!(want.iter().all(|s| s.1.len() > 2));
        let closed: u64 = db
            .head
            .all_series()
            .iter()
            .map(|s| s.data.lock().closed().len() as u64)
            .sum();
        let chunks_file = dir.path().join("chunks_head/000001");
        drop(db);

        // A clean close: every closed chunk comes back from the files.
        let (db, stats) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert_eq!(stats.attached_chunks, closed);
        assert_eq!(head_contents(&db), want);
        // Appends continue where the chunks end.
        let out = append(&db, &batch(&[(&[("__name__", "s0")], &[(step(400), 1.0)])]));
        assert_eq!(out.appended, 1);
        drop(db);
        let mut want_now = want.clone();
        let s0 = want_now
            .iter_mut()
            .find(|s| s.0.get("__name__") == Some("s0"))
            .unwrap();
        s0.2.push((step(400), 1f64.to_bits()));
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        let got = head_contents(&db);
        assert_eq!(
            got.iter().map(|s| &s.2).collect::<Vec<_>>(),
            want_now.iter().map(|s| &s.2).collect::<Vec<_>>()
        );
        drop(db);

        // A crash that tore the files: chunks up to the tear come back, the WAL the rest.
        let len = fs::metadata(&chunks_file).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&chunks_file)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
        for f in fs::read_dir(dir.path().join("chunks_head")).unwrap() {
            let f = f.unwrap().path();
            if f != chunks_file {
                fs::remove_file(f).unwrap();
            }
        }
        let (db, stats) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert!(stats.attached_chunks > 0 && stats.attached_chunks < closed);
        assert!(stats.chunk_files.dropped_bytes > 0);
        let got = head_contents(&db);
        assert_eq!(
            got.iter().map(|s| &s.2).collect::<Vec<_>>(),
            want_now.iter().map(|s| &s.2).collect::<Vec<_>>()
        );

        // Without the WAL the files are not trusted.
        drop(db);
        fs::remove_dir_all(dir.path().join("wal")).unwrap();
        let (db, stats) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert_eq!((stats.attached_chunks, db.head.num_series()), (0, 0));
    }

    #[test]
    fn a_series_whose_wal_record_was_lost_leaves_its_reference_unused() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        append(&db, &batch(&[(&[("__name__", "kept")], &[(0, 1.0)])]));
        let wal_before = db.wal_size();
        let lost: Vec<_> = (0..130).map(|k| (k * 15_000, k as f64)).collect();
        append(&db, &batch(&[(&[("__name__", "lost")], &lost)]));
        drop(db);
        // The WAL loses everything after the first series; the chunk files keep the second's.
        let segment = dir.path().join("wal/00000000");
        fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(wal_before)
            .unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        assert_eq!(db.head.num_series(), 1);
        append(&db, &batch(&[(&[("__name__", "new")], &[(10, 2.0)])]));
        drop(db);
        // Had "new" taken the lost series' reference, it would now get that series' chunk.
        let (db, stats) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        assert_eq!(stats.attached_chunks, 0);
        let new = db
            .head
            .select(&[Matcher::Equal("__name__".into(), "new".into())]);
        let data = new[0].data.lock();
        assert_eq!(
            db.head.samples(&new[0], &data, i64::MIN, i64::MAX).unwrap(),
            [(10, 2.0)]
        );
    }

    #[test]
    fn late_samples_inside_the_window_are_merged_once_and_survive_replay() {
        const MIN: i64 = 60_000;
        let opts = || TsdbOptions {
            out_of_order_window_ms: 15 * MIN,
            ..TsdbOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        let s = [("__name__", "late")];
        let every_15s = |from: i64, to: i64| -> Vec<(i64, f64)> {
            (from * 4..to * 4).map(|k| (k * 15_000, k as f64)).collect()
        };
        // Minutes 0-40 with a hole at 25-35 (a network split), then the hole arrives late,
        // together with a resend of the last ten minutes.
        let mut first = every_15s(0, 25);
        first.extend(every_15s(35, 40));
        assert_eq!(
            append(&db, &batch(&[(&s, &first)])).appended,
            first.len() as u64
        );
        let replay = every_15s(25, 40);
        let out = append(&db, &batch(&[(&s, &replay)]));
        assert_eq!((out.appended, out.out_of_order_appended), (40, 40));
        assert_eq!((out.duplicates, out.conflicts()), (20, 0));
        // Again: all duplicates. Another value at a stored time conflicts; older than the
        // window is too old.
        let out = append(&db, &batch(&[(&s, &replay)]));
        assert_eq!((out.appended, out.duplicates), (0, 60));
        let out = append(&db, &batch(&[(&s, &[(30 * MIN, -1.0)])]));
        assert_eq!(out.first_conflict, Some((0, Conflict::DuplicateTimestamp)));
        let out = append(&db, &batch(&[(&s, &[(24 * MIN + 1, 1.0)])]));
        assert_eq!((out.too_old, out.appended), (1, 0));
        assert_eq!(out.first_conflict, Some((0, Conflict::TooOld)));

        let want = every_15s(0, 40);
        let stored = |db: &TenantDb| {
            let series = db
                .head
                .select(&[Matcher::Equal("__name__".into(), "late".into())]);
            let data = series[0].data.lock();
            // Chunks stay disjoint and sorted.
            let chunks = db.head.series_chunks(&series[0], &data).unwrap();
            assert!(chunks.windows(2).all(|w| w[0].1 < w[1].0), "{chunks:?}");
            db.head
                .samples(&series[0], &data, i64::MIN, i64::MAX)
                .unwrap()
        };
        assert_eq!(stored(&db), want);
        drop(db);
        // The WAL gives back every late sample once, whatever the window is after the restart.
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        assert_eq!(stored(&db), want);
        let meta = db.cut_block(0, 7_200_000).unwrap().unwrap();
        let block = tsdb_format::Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
        let series: Vec<_> = block.series().unwrap().map(Result::unwrap).collect();
        assert_eq!(series[0].samples, want);
    }

    #[test]
    fn a_series_limit_creates_nothing_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", TsdbOptions::default()).unwrap();
        let two = batch(&[(&[("a", "1")], &[(1, 1.0)]), (&[("a", "2")], &[(1, 1.0)])]);
        let r = db.resolve(&two, &two.all(), 2).unwrap();
        assert_eq!((r.refs.len(), r.created), (2, 2));
        // One known series and two new ones would make 4 > 3: nothing is created.
        let three = batch(&[
            (&[("a", "2")], &[(2, 1.0)]),
            (&[("a", "3")], &[(2, 1.0)]),
            (&[("a", "4")], &[(2, 1.0)]),
        ]);
        let Err(err) = db.resolve(&three, &three.all(), 3) else {
            panic!("the limit must refuse the new series");
        };
        assert_eq!((err.in_head, err.new, err.limit), (2, 2, 3));
        assert_eq!(db.head.num_series(), 2);
        // Known series resolve to the same head series; within the limit new ones are created.
        let r = db.resolve(&three, &three.all(), 4).unwrap();
        assert_eq!(r.created, 2);
        assert!(Arc::ptr_eq(
            &r.refs[0],
            &db.resolve(&two, &[1], 4).unwrap().refs[0]
        ));
        assert_eq!(db.head.num_series(), 4);
    }

    #[test]
    fn multi_tsdb_finds_tenant_directories() {
        let dir = tempfile::tempdir().unwrap();
        let m = MultiTsdb::new(dir.path(), TsdbOptions::default());
        let db = m.tenant("a").unwrap();
        append(&db, &batch(&[(&[("x", "y")], &[(1, 1.0)])]));
        m.tenant("b").unwrap();
        fs::create_dir_all(dir.path().join("..bad")).unwrap();
        drop(m);
        let m = MultiTsdb::new(dir.path(), TsdbOptions::default());
        let opened = m.open_existing().unwrap();
        let names: Vec<_> = opened.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(opened[0].1.samples, 1);
    }
}

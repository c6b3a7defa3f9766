//! Head compaction: cut time ranges of the head into Prometheus blocks, then drop them from memory
//! and from the WAL; and local retention.
//!
//! A cut raises the head's lower bound first (under the WAL lock), so no sample can land in the
//! range being written; then it writes the block (temp dir, fsync, rename: a crash leaves either
//! no block or a whole one). Only once the block is durable does it publish the block to queries,
//! truncate the head, roll the WAL and fold the older segments into a checkpoint. A failed write leaves the range in the head
//! and the WAL, and the next cut retries it: cuts start at the head's oldest sample, not at its
//! lower bound. On restart the lower bound is set from the blocks, so nothing is cut twice.
//!
//! Compaction follows the wall clock, not the newest sample: one sample far in the future neither
//! cuts the present into blocks early (which would refuse every later normal write) nor stalls
//! compaction. Such samples wait in the head until the clock reaches them or a shutdown flushes them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tsdb_format::chunkenc::{ENCODING_XOR, XorAppender, iter_xor};
use tsdb_format::meta::{BlockMeta, read_meta};
use tsdb_format::{BlockWriter, Error as FormatError};
use ulid::Ulid;

use super::chunks_head::ReadError;
use super::head::{Head, boundary_after};
use super::{LocalBlock, MemSeries, TenantDb, TsdbError, histogram_chunks, now_ms, wal};

/// Suffix of a block directory being written.
pub const TMP_SUFFIX: &str = ".tmp-for-creation";

/// One chunk of a series inside a block range: `(min_time, max_time, encoding, bytes)`.
pub(super) type RangeChunk = (i64, i64, u8, Box<[u8]>);

/// The chunks of `series` that fall in `[mint, maxt)`; a chunk crossing an edge is re-encoded
/// to fit.
pub(super) fn chunks_in_range(
    head: &Head,
    series: &MemSeries,
    mint: i64,
    maxt: i64,
) -> Result<Vec<RangeChunk>, ReadError> {
    let data = series.data.lock();
    let mut out = Vec::new();
    for (cmin, cmax, encoding, bytes) in head.series_chunks(series, &data)? {
        if cmax < mint || cmin >= maxt {
            continue;
        }
        if cmin >= mint && cmax < maxt {
            out.push((cmin, cmax, encoding, bytes.into_owned().into_boxed_slice()));
            continue;
        }
        if encoding != ENCODING_XOR {
            out.extend(
                histogram_chunks::subset(encoding, &bytes, |t| t >= mint && t < maxt)
                    .map(|c| (c.min_time, c.max_time, c.encoding, c.data)),
            );
            continue;
        }
        let mut app = XorAppender::new();
        for (t, v) in iter_xor(&bytes).filter(|&(t, _)| t >= mint && t < maxt) {
            app.append(t, v);
        }
        if app.num_samples() > 0 {
            out.push((
                app.min_time(),
                app.max_time(),
                ENCODING_XOR,
                app.into_bytes(),
            ));
        }
    }
    Ok(out)
}

fn format_err(dir: &Path) -> impl FnOnce(FormatError) -> TsdbError + '_ {
    move |e| TsdbError::Block {
        path: dir.to_path_buf(),
        message: e.to_string(),
    }
}

impl TenantDb {
    /// External labels of this tenant's blocks: its ring's labels, `--label` flags, the tenant label.
    pub fn external_labels(&self) -> BTreeMap<String, String> {
        self.opts.tenant_labels(&self.name)
    }

    /// Writes the head's samples in `[mint, maxt)` as a block and, once it is durable, drops them
    /// from memory and the WAL. Returns `None` when the range held no sample. On error the range
    /// stays in the head and the WAL.
    pub fn cut_block(&self, mint: i64, maxt: i64) -> Result<Option<BlockMeta>, TsdbError> {
        let _cutting = self.cutting.lock();
        // From here on no append can add a sample below `maxt`.
        {
            let _appends = self.wal.lock();
            self.head.set_min_valid_time(maxt);
            self.pass_future_blocks();
        }
        let meta = self.write_block(mint, maxt)?;
        // The block is durable: queries read it from now on, then its range leaves the head and
        // the WAL (the truncation waits for queries that still read the range from the head).
        self.publish_block(
            meta.clone().map(|meta| LocalBlock {
                dir: self.dir.join(meta.ulid.to_string()),
                meta,
            }),
            maxt,
        );
        self.drop_cut_range(maxt)?;
        Ok(meta)
    }

    /// Writes the head's samples in `[mint, maxt)` as a durable block; `None` when there are none.
    fn write_block(&self, mint: i64, maxt: i64) -> Result<Option<BlockMeta>, TsdbError> {
        let mut series: Vec<Arc<MemSeries>> = self
            .head
            .all_series()
            .into_iter()
            .filter(|s| {
                let d = s.data.lock();
                d.time_ranges().any(|(min, max)| min < maxt && max >= mint)
            })
            .collect();
        let meta = if series.is_empty() {
            None
        } else {
            series.sort_by(|a, b| a.labels.compare(&b.labels));
            let mut symbols = std::collections::BTreeSet::new();
            for s in &series {
                for (n, v) in s.labels.iter() {
                    symbols.insert(n);
                    symbols.insert(v);
                }
            }
            let mut writer = BlockWriter::create(&self.dir, Ulid::generate(), mint, maxt)
                .map_err(format_err(&self.dir))?;
            writer.add_symbols(symbols).map_err(format_err(&self.dir))?;
            for s in &series {
                let chunks = chunks_in_range(&self.head, s, mint, maxt)?;
                let refs: Vec<(i64, i64, u8, &[u8])> = chunks
                    .iter()
                    .map(|(a, b, e, d)| (*a, *b, *e, &d[..]))
                    .collect();
                let labels: Vec<(&str, &str)> = s.labels.iter().collect();
                writer
                    .add_series_encoded(&labels, &refs)
                    .map_err(format_err(&self.dir))?;
            }
            let meta = writer
                .finish(self.external_labels())
                .map_err(format_err(&self.dir))?;
            tracing::info!(
                tenant = self.name,
                ulid = %meta.ulid,
                min_time = mint,
                max_time = maxt,
                series = meta.stats.num_series,
                samples = meta.stats.num_samples,
                "block written"
            );
            Some(meta)
        };
        Ok(meta)
    }

    /// Drops what is older than `maxt` from the head, then folds the WAL into a checkpoint.
    fn drop_cut_range(&self, maxt: i64) -> Result<(), TsdbError> {
        let (live, upto, wal_dir) = self.exclusive(|| {
            let mut state = self.wal.lock();
            let live = self.head.truncate(maxt);
            let upto = state.wal.roll()?;
            Ok::<_, TsdbError>((live, upto, state.wal.dir().to_path_buf()))
        })?;
        let stats = wal::checkpoint(&wal_dir, upto, maxt, |id| live.contains(&id))?;
        self.wal.lock().wal.refresh_size();
        tracing::debug!(tenant = self.name, ?stats, "WAL checkpointed");
        Ok(())
    }

    /// Cuts the oldest block-aligned ranges while the head spans more than 1.5 block widths up
    /// to its newest sample that is not in the future, as Prometheus does, so queries of the last hour or so stay in memory.
    pub fn compact(&self) -> Result<Vec<BlockMeta>, TsdbError> {
        self.compact_at(now_ms())
    }

    /// [`TenantDb::compact`] with the wall clock at `now`.
    pub fn compact_at(&self, now: i64) -> Result<Vec<BlockMeta>, TsdbError> {
        // New series wait for their postings until a query or this periodic pass indexes them.
        self.head.index_pending();
        let range = self.head.chunk_range();
        let mut out = Vec::new();
        while let Some((min, _)) = self.head.time_range() {
            // Measured from the start of the oldest range, so the cut block ends at least half a
            // range (and the out-of-order window) before the newest sample: it never refuses
            // writes of the last half hour, nor late samples inside the window.
            let newest = i128::from(self.head.max_present_time().min(now))
                - i128::from(self.opts.out_of_order_window_ms);
            let range_start = i128::from(min).div_euclid(i128::from(range)) * i128::from(range);
            if newest - range_start <= i128::from(range / 2 * 3) {
                break;
            }
            // Prometheus starts a head block at the head's first sample and ends it on a boundary.
            let end = self.cut_end(min, boundary_after(min, range));
            out.extend(self.cut_block(min, end)?);
            self.check_progress(min)?;
        }
        Ok(out)
    }

    /// Cuts the whole head into blocks (one per block-aligned range), as on shutdown.
    pub fn flush(&self) -> Result<Vec<BlockMeta>, TsdbError> {
        let range = self.head.chunk_range();
        let mut out = Vec::new();
        while let Some((min, _)) = self.head.time_range() {
            // The block ends right after its newest sample, so a restart does not refuse writes
            // up to the end of a range the sender has not reached yet.
            let boundary = self.cut_end(min, boundary_after(min, range));
            let end = self
                .head
                .max_time_before(boundary)
                .map_or(boundary, |t| t.saturating_add(1));
            out.extend(self.cut_block(min, end)?);
            self.check_progress(min)?;
        }
        Ok(out)
    }

    /// `end`, or the start of the first block above `start` if that comes first: cuts never
    /// overlap a block cut ahead of the clock.
    fn cut_end(&self, start: i64, end: i64) -> i64 {
        self.future_blocks
            .lock()
            .iter()
            .map(|&(min, _)| min)
            .find(|&min| min > start)
            .map_or(end, |min| end.min(min))
    }

    /// Fails when the head still starts at `min` after a cut, instead of cutting it forever.
    fn check_progress(&self, min: i64) -> Result<(), TsdbError> {
        match self.head.time_range() {
            Some((now_min, _)) if now_min <= min => Err(TsdbError::Block {
                path: self.dir.clone(),
                message: format!("cutting the head at {min} made no progress"),
            }),
            _ => Ok(()),
        }
    }

    /// Moves the head's lower bound past every future block it reached, and the ceiling to the
    /// next one. Callers hold the WAL lock.
    fn pass_future_blocks(&self) {
        let mut future = self.future_blocks.lock();
        while let Some(&(min, max)) = future.first() {
            if min > self.head.min_valid_time() {
                break;
            }
            self.head.set_min_valid_time(max);
            future.remove(0);
        }
        self.head
            .set_ceiling(future.first().map_or(i64::MAX, |&(min, _)| min));
    }

    /// Blocks in the tenant directory, oldest first.
    pub fn blocks(&self) -> Vec<(PathBuf, BlockMeta)> {
        list_blocks(&self.dir)
    }

    /// Deletes the blocks `retention` no longer keeps among those `may_delete` allows (e.g. only
    /// uploaded ones): blocks that ended more than its time before `now_ms`, then the oldest
    /// until the rest fit its size; returns what was deleted.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        retention: Retention,
        may_delete: impl Fn(&BlockMeta) -> bool,
    ) -> Vec<Ulid> {
        // Block sizes are read from disk only when a size limit asks for them: this runs every
        // compaction interval for every tenant.
        let blocks: Vec<(PathBuf, BlockMeta, u64)> = self
            .blocks()
            .into_iter()
            .map(|(dir, meta)| {
                let size = if retention.max_bytes > 0 {
                    dir_size(&dir)
                } else {
                    0
                };
                (dir, meta, size)
            })
            .collect();
        let mut total: u64 = blocks.iter().map(|b| b.2).sum();
        let mut deleted = Vec::new();
        for (dir, meta, size) in blocks {
            let expired = retention
                .time_ms
                .is_some_and(|keep| meta.max_time < now_ms.saturating_sub(keep));
            let over_size = retention.max_bytes > 0 && total > retention.max_bytes;
            if !(expired || over_size) || !may_delete(&meta) {
                continue;
            }
            self.unpublish_block(meta.ulid);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    total = total.saturating_sub(size);
                    deleted.push(meta.ulid);
                }
                Err(e) => {
                    tracing::error!(block = %dir.display(), error = %e, "cannot delete block past retention")
                }
            }
        }
        deleted
    }
}

/// What local blocks are kept: `--tsdb.retention` and `--tsdb.max-retention-bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// How long after its end a block is kept; `None` keeps blocks forever (`0d`, as Thanos).
    pub time_ms: Option<i64>,
    /// Most bytes of blocks per tenant; 0 means no limit.
    pub max_bytes: u64,
}

impl Retention {
    /// The retention of the flags: a zero duration keeps blocks forever, as in Thanos.
    pub fn new(time: std::time::Duration, max_bytes: u64) -> Self {
        Retention {
            time_ms: (!time.is_zero()).then(|| i64::try_from(time.as_millis()).unwrap_or(i64::MAX)),
            max_bytes,
        }
    }
}

/// Bytes of the files under `dir` (a block: meta.json, index, chunks/, tombstones).
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Block directories (named as ULIDs, with a readable meta.json) under `dir`, oldest first.
pub fn list_blocks(dir: &Path) -> Vec<(PathBuf, BlockMeta)> {
    let mut out: Vec<(PathBuf, BlockMeta)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| Ulid::from_string(n).is_ok())
        })
        .filter_map(|e| {
            let meta = read_meta(&e.path()).ok()?;
            Some((e.path(), meta))
        })
        .collect();
    out.sort_by_key(|(_, m)| (m.min_time, m.ulid));
    out
}

/// Removes half-written block directories left by a crash during a cut.
pub fn remove_partial_blocks(dir: &Path) {
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TMP_SUFFIX))
        {
            tracing::warn!(dir = %entry.path().display(), "removing a partial block left by a crash");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::{Budget, Conflict, Matcher, SeriesVec, TsdbOptions};
    use tsdb_format::Block;

    const H: i64 = 3_600_000;

    fn write(db: &TenantDb, series: usize, from: i64, to: i64, step: i64) {
        let mut t = from;
        while t < to {
            let b = (0..series).fold(SeriesVec::new(), |b, s| {
                b.with(
                    &[("__name__", "m"), ("s", &s.to_string())],
                    &[(t, t as f64)],
                )
            });
            let idx = b.all();
            let resolved = db.resolve(&b, &idx, 0).unwrap();
            let out = db.append(&b, &idx, &resolved.refs).unwrap();
            assert_eq!(out.appended, series as u64);
            t += step;
        }
    }

    fn opts() -> TsdbOptions {
        TsdbOptions {
            external_labels: [("replica".to_string(), "r0".to_string())].into(),
            ..TsdbOptions::default()
        }
    }

    #[test]
    fn compaction_cuts_aligned_blocks_and_truncates_head_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        // 5 hours of 30 s samples starting at 01:00: the head spans more than 3 h.
        write(&db, 10, H, 6 * H, 30_000);
        let wal_before = db.wal_size();
        let blocks = db.compact().unwrap();
        let ranges: Vec<_> = blocks.iter().map(|m| (m.min_time, m.max_time)).collect();
        assert_eq!(ranges, vec![(H, 2 * H), (2 * H, 4 * H)]);
        assert_eq!(blocks[0].stats.num_samples, 10 * 120);
        assert_eq!(blocks[1].stats.num_samples, 10 * 240);
        let thanos = blocks[0].thanos.as_ref().unwrap();
        assert_eq!(
            thanos.labels.get("tenant_id").map(String::as_str),
            Some("t")
        );
        assert_eq!(thanos.labels.get("replica").map(String::as_str), Some("r0"));
        assert_eq!(db.head.time_range(), Some((4 * H, 6 * H - 30_000)));
        assert!(
            db.wal_size() < wal_before,
            "WAL shrank after the checkpoint"
        );

        // Blocks read back sample for sample.
        let block = Block::open(&dir.path().join(blocks[0].ulid.to_string())).unwrap();
        let series: Vec<_> = block.series().unwrap().map(|s| s.unwrap()).collect();
        assert_eq!(series.len(), 10);
        assert_eq!(series[0].samples.first().unwrap().0, H);
        assert_eq!(series[0].samples.len(), 120);

        // A sample the blocks cover is out of bounds now.
        let b = SeriesVec::new().with(&[("__name__", "m"), ("s", "new")], &[(3 * H, 1.0)]);
        let resolved = db.resolve(&b, &[0], 0).unwrap();
        let out = db.append(&b, &[0], &resolved.refs).unwrap();
        assert_eq!(out.first_conflict, Some((0, Conflict::OutOfBounds)));
        drop(db);

        // Reopening replays only what the blocks do not hold.
        let (db, stats) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert_eq!(stats.samples, 10 * 240);
        assert_eq!(db.head.min_valid_time(), 4 * H);
        assert_eq!(db.blocks().len(), 2);

        // A flush cuts everything left; afterwards the head and WAL are empty.
        let flushed = db.flush().unwrap();
        assert_eq!(flushed.len(), 1);
        assert_eq!(
            (flushed[0].min_time, flushed[0].max_time),
            (4 * H, 6 * H - 30_000 + 1)
        );
        assert_eq!(db.head.num_series(), 0);
        drop(db);
        let (db, stats) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert_eq!((stats.samples, db.head.num_series()), (0, 0));
        assert_eq!(db.blocks().len(), 3);
        let all = db
            .head
            .select(&[Matcher::Equal("__name__".into(), "m".into())]);
        assert!(all.is_empty());
        // The query reads the blocks: every sample is still there, once.
        let read = db
            .query(
                &[Matcher::Equal("s".into(), "3".into())],
                i64::MIN,
                i64::MAX,
                Budget::default(),
            )
            .unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].samples.len(), 600);
        assert!(
            read[0]
                .samples
                .windows(2)
                .all(|w| w[1].0 - w[0].0 == 30_000)
        );
    }

    #[test]
    fn queries_read_each_sample_once_at_every_step_of_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        write(&db, 3, 0, 3 * H, 60_000);
        let matcher = [Matcher::Equal("s".into(), "1".into())];
        let read = |step: &str| {
            let found = db
                .select(&matcher, i64::MIN, i64::MAX, false, Budget::default())
                .unwrap();
            assert_eq!(found.len(), 1, "{step}");
            let samples: Vec<i64> = found[0]
                .chunks
                .iter()
                .flat_map(|c| iter_xor(&c.data).map(|(t, _)| t))
                .collect();
            let want: Vec<i64> = (0..3 * H).step_by(60_000).collect();
            assert_eq!(samples, want, "{step}: every sample once, in order");
        };
        read("before the cut");
        db.head.set_min_valid_time(2 * H);
        let meta = db.write_block(0, 2 * H).unwrap().unwrap();
        read("block written, not yet published");
        db.publish_block(
            Some(LocalBlock {
                dir: dir.path().join(meta.ulid.to_string()),
                meta,
            }),
            2 * H,
        );
        read("block published, head not yet truncated");
        db.drop_cut_range(2 * H).unwrap();
        read("head truncated");
        assert!(
            db.apply_retention(
                10 * H,
                Retention {
                    time_ms: Some(0),
                    max_bytes: 0
                },
                |_| true
            )
            .len()
                == 1
        );
        let left = db
            .select(&matcher, i64::MIN, i64::MAX, false, Budget::default())
            .unwrap();
        assert_eq!(
            left[0].chunks[0].min_time,
            2 * H,
            "the deleted block is not read"
        );
    }

    #[test]
    fn retention_deletes_old_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        write(&db, 2, 0, 4 * H, 60_000);
        db.flush().unwrap();
        assert_eq!(db.blocks().len(), 2);
        let hours = |h: i64| Retention {
            time_ms: Some(h * H),
            max_bytes: 0,
        };
        // `0d`: kept forever, however old.
        let forever = Retention::new(std::time::Duration::ZERO, 0);
        assert!(db.apply_retention(1000 * H, forever, |_| true).is_empty());
        let deleted = db.apply_retention(
            4 * H,
            Retention {
                time_ms: Some(2 * H - 1),
                max_bytes: 0,
            },
            |_| true,
        );
        assert_eq!(deleted.len(), 1);
        assert_eq!(db.blocks()[0].1.min_time, 2 * H);
        assert!(
            db.apply_retention(100 * H, hours(1), |_| false).is_empty(),
            "the hook may keep blocks"
        );
    }

    #[test]
    fn size_retention_deletes_the_oldest_blocks_until_the_rest_fit() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        write(&db, 2, 0, 6 * H, 60_000);
        db.flush().unwrap();
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 3);
        let sizes: Vec<u64> = blocks.iter().map(|(d, _)| dir_size(d)).collect();
        assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
        // Room for the two newest blocks only.
        let room = Retention {
            time_ms: None,
            max_bytes: sizes[1] + sizes[2],
        };
        // Blocks not yet uploaded are kept whatever the size.
        assert!(db.apply_retention(6 * H, room, |_| false).is_empty());
        let deleted = db.apply_retention(6 * H, room, |_| true);
        assert_eq!(deleted, vec![blocks[0].1.ulid]);
        assert_eq!(db.blocks().len(), 2);
        assert!(db.apply_retention(6 * H, room, |_| true).is_empty());
    }

    fn write_one(db: &TenantDb, name: &str, samples: &[(i64, f64)]) -> crate::tsdb::AppendOutcome {
        let b = SeriesVec::new().with(&[("__name__", name)], samples);
        let resolved = db.resolve(&b, &[0], 0).unwrap();
        db.append(&b, &[0], &resolved.refs).unwrap()
    }

    fn all_samples(db: &TenantDb, name: &str) -> Vec<(i64, f64)> {
        db.query(
            &[Matcher::Equal("__name__".into(), name.into())],
            i64::MIN,
            i64::MAX,
            Budget::default(),
        )
        .unwrap()
        .into_iter()
        .flat_map(|s| s.samples)
        .collect()
    }

    #[test]
    fn extreme_timestamps_are_cut_and_flushed_without_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        let out = write_one(&db, "lo", &[(i64::MIN, 1.0), (i64::MIN + 1, 2.0)]);
        assert_eq!(
            (out.appended, out.out_of_bounds),
            (1, 1),
            "i64::MIN stands for a series without samples"
        );
        let out = write_one(&db, "hi", &[(i64::MAX - 1, 3.0), (i64::MAX, 4.0)]);
        assert_eq!(
            (out.appended, out.out_of_bounds),
            (1, 1),
            "no block can end after i64::MAX"
        );
        write(&db, 2, H, 5 * H, 60_000);
        // The head spans the whole i64 range: compaction cuts the past, never the far future.
        let cut = db.compact_at(10 * H).unwrap();
        assert_eq!(cut.len(), 2);
        assert_eq!(db.head.time_range(), Some((2 * H, i64::MAX - 1)));
        let flushed = db.flush().unwrap();
        assert_eq!(
            flushed
                .iter()
                .map(|m| (m.min_time, m.max_time))
                .collect::<Vec<_>>(),
            vec![
                (2 * H, 4 * H - 60_000 + 1),
                (4 * H, 5 * H - 60_000 + 1),
                (i64::MAX - 1, i64::MAX)
            ]
        );
        assert_eq!(db.head.num_series(), 0);
        drop(db);
        let (db, stats) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert_eq!(stats.samples, 0);
        assert_eq!(all_samples(&db, "lo"), vec![(i64::MIN + 1, 2.0)]);
        assert_eq!(all_samples(&db, "hi"), vec![(i64::MAX - 1, 3.0)]);
        assert_eq!(all_samples(&db, "m").len(), 2 * 240);
    }

    #[test]
    fn a_far_future_sample_does_not_poison_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        let now = crate::tsdb::now_ms() / 60_000 * 60_000;
        let year = 365 * 24 * H;
        // Four hours, so the head spans more than 1.5 ranges whatever the clock's phase.
        write(&db, 3, now - 4 * H, now, 60_000);
        assert_eq!(write_one(&db, "future", &[(now + year, 1.0)]).appended, 1);
        // Compaction cuts only what the clock has passed.
        let cut = db.compact_at(now).unwrap();
        assert!(!cut.is_empty());
        assert!(cut.iter().all(|m| m.max_time <= now));
        assert_eq!(write_one(&db, "m", &[(now + 60_000, 1.0)]).appended, 1);
        // The shutdown flush writes the future sample in a block of its own...
        db.flush().unwrap();
        drop(db);
        // ...which after a restart neither refuses today's writes nor gets overlapped.
        let (db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        let out = write_one(&db, "m", &[(now + 120_000, 2.0)]);
        assert_eq!(out.appended, 1, "{out:?}");
        let out = write_one(&db, "future", &[(now + year, 5.0), (now + year + 1, 6.0)]);
        assert_eq!(out.out_of_bounds, 2);
        write(&db, 1, now + 180_000, now + 3 * H, 60_000);
        db.compact_at(now + 3 * H).unwrap();
        db.flush().unwrap();
        let mut ranges: Vec<_> = db
            .blocks()
            .iter()
            .map(|(_, m)| (m.min_time, m.max_time))
            .collect();
        ranges.sort();
        assert!(
            ranges.windows(2).all(|w| w[0].1 <= w[1].0),
            "overlap: {ranges:?}"
        );
        assert_eq!(all_samples(&db, "future"), vec![(now + year, 1.0)]);
    }

    #[test]
    fn partial_blocks_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(
            dir.path()
                .join(format!("01ARZ3NDEKTSV4RRFFQ69G5FAV{TMP_SUFFIX}")),
        )
        .unwrap();
        let (_db, _) = TenantDb::open(dir.path(), "t", opts()).unwrap();
        assert!(
            !dir.path()
                .join(format!("01ARZ3NDEKTSV4RRFFQ69G5FAV{TMP_SUFFIX}"))
                .exists()
        );
    }
}

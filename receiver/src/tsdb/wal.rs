//! Write-ahead log: numbered segment files of CRC-framed records.
//!
//! Layout: `wal/00000000`, `wal/00000001`, ... (8 digits, as Prometheus), each at most
//! [`SEGMENT_SIZE`] bytes; a record never spans two segments. A record is
//! `len u32 BE | CRC32C(payload) u32 BE | payload`, and the payload's first byte is its type.
//! Series and samples payloads use Prometheus' record encoding (`tsdb/record`):
//!
//! - series (1): `(ref u64 BE | n uvarint | (uvarint len, bytes) * 2n)*`
//! - samples (2): `first_ref u64 BE | first_t i64 BE | (ref - first_ref varint | t - first_t varint | value u64 BE)*`
//! - exemplars (4): sample rows each followed by the exemplar's label set
//! - histograms (7, 8; 9, 10 with custom buckets): rows of `ref` and `t` deltas as in samples,
//!   each followed by the histogram ([`super::histogram_record`])
//!
//! Durability: a request is acknowledged after its records are written to the segment file with
//! one `write(2)`, so a killed process loses nothing acknowledged; `fsync` runs every
//! `--tsdb.wal-fsync-interval` (or before every acknowledgement when that is `0s`) and whenever a
//! segment is closed, which bounds what a power loss can take.
//!
//! Repair: replay stops at the first record that is short or fails its CRC (a torn write from a
//! crash), truncates the segment there and removes any later segment, so a crash is never a
//! reason not to start.
//!
//! Checkpoints: once a block holds everything before time T, [`checkpoint`] rewrites every segment
//! up to a rolled-over one into `wal/checkpoint.NNNNNNNN/00000000`, keeping only the series still
//! in the head and samples at or after T, then deletes those segments, so the WAL stays bounded.
//! Replay reads the newest checkpoint first, then the segments after it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tsdb_format::encoding::{put_uvarint, put_varint, uvarint, varint};

use super::HistogramValue;
use super::histogram_record::{
    self, RECORD_CUSTOM_FLOAT_HISTOGRAMS, RECORD_CUSTOM_HISTOGRAMS, RECORD_FLOAT_HISTOGRAMS,
    RECORD_HISTOGRAMS,
};

/// Largest segment file before a new one is started.
pub const SEGMENT_SIZE: u64 = 128 << 20;
/// Record type of a series record.
pub const RECORD_SERIES: u8 = 1;
/// Record type of a float samples record.
pub const RECORD_SAMPLES: u8 = 2;
/// Record type of an exemplars record (Prometheus' `record.Exemplars`).
pub const RECORD_EXEMPLARS: u8 = 4;
const HEADER_LEN: usize = 8;

/// A WAL open for appending.
///
/// The current segment is opened on first write and closed again by [`Wal::close_if_idle`], so
/// thousands of idle tenants do not hold thousands of descriptors.
pub struct Wal {
    dir: PathBuf,
    segment: u64,
    file: Option<Arc<File>>,
    segment_len: u64,
    closed_bytes: u64,
    written: bool,
}

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records read.
    pub records: u64,
    /// Segments read.
    pub segments: u64,
    /// Bytes dropped by tail repair.
    pub truncated_bytes: u64,
    /// Whether a corrupt or torn record was repaired.
    pub repaired: bool,
}

/// One decoded record handed to a replay callback.
#[derive(Debug)]
pub enum Record<'a> {
    /// Series definitions: `(ref, encoded labels)`.
    Series(Vec<(u64, &'a [u8])>),
    /// Float samples: `(ref, t, value)`.
    Samples(Vec<(u64, i64, f64)>),
    /// Exemplars: `(ref, t, value, encoded labels)`.
    Exemplars(Vec<(u64, i64, f64, &'a [u8])>),
    /// Native histograms of one of the histogram record types: `(ref, t, histogram)`.
    Histograms(Vec<(u64, i64, HistogramValue)>),
}

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A segment could not be written, synced or read.
    #[error("wal {path}: {source}")]
    Io {
        /// The segment or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A record is malformed.
    #[error("wal record: {0}")]
    Record(&'static str),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

const CHECKPOINT_PREFIX: &str = "checkpoint.";

/// The newest complete checkpoint: its number and directory.
fn latest_checkpoint(dir: &Path) -> Result<Option<(u64, PathBuf)>, WalError> {
    let mut best = None;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix(CHECKPOINT_PREFIX))
            .filter(|s| s.len() == 8)
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best)
}

/// Reads a whole segment file and hands its valid records to `on_record`; returns (valid, total) bytes.
fn read_segment(
    path: &Path,
    buf: &mut Vec<u8>,
    stats: &mut ReplayStats,
    on_record: &mut impl FnMut(Record<'_>) -> Result<(), WalError>,
) -> Result<(usize, usize), WalError> {
    buf.clear();
    File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .map_err(io_err(path))?;
    stats.segments += 1;
    let good = replay_segment(buf, stats, on_record)?;
    Ok((good, buf.len()))
}

/// Lists segment numbers in a WAL directory, ascending.
fn segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .filter(|s| s.len() == 8)
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Whether the WAL in `dir` holds anything: a checkpoint or a segment that is not empty.
pub fn has_records(dir: &Path) -> bool {
    matches!(latest_checkpoint(dir), Ok(Some(_)))
        || segments(dir).is_ok_and(|segs| {
            segs.iter()
                .any(|&n| fs::metadata(segment_path(dir, n)).is_ok_and(|m| m.len() > 0))
        })
}

impl Wal {
    /// Replays every record in `dir` (created if missing), repairs a torn tail, and opens the WAL for appending.
    pub fn open(
        dir: &Path,
        mut on_record: impl FnMut(Record<'_>) -> Result<(), WalError>,
    ) -> Result<(Wal, ReplayStats), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut stats = ReplayStats::default();
        let mut buf = Vec::new();
        let mut closed_bytes = 0;
        let checkpoint = latest_checkpoint(dir)?;
        if let Some((_, cp)) = &checkpoint {
            // A checkpoint is renamed into place only when complete, so it is read as a whole.
            for n in segments(cp)? {
                let (_, len) =
                    read_segment(&segment_path(cp, n), &mut buf, &mut stats, &mut on_record)?;
                closed_bytes += len as u64;
            }
        }
        let after = checkpoint.as_ref().map(|(n, _)| n + 1).unwrap_or(0);
        let segs: Vec<u64> = segments(dir)?.into_iter().filter(|&n| n >= after).collect();
        let mut last = None;
        for (i, &n) in segs.iter().enumerate() {
            let path = segment_path(dir, n);
            let (good, len) = read_segment(&path, &mut buf, &mut stats, &mut on_record)?;
            if good < len {
                // A torn or corrupt record: keep what precedes it, drop everything after it.
                stats.repaired = true;
                stats.truncated_bytes += (len - good) as u64;
                OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| {
                        f.set_len(good as u64)?;
                        f.sync_all()
                    })
                    .map_err(io_err(&path))?;
                for &later in &segs[i + 1..] {
                    let p = segment_path(dir, later);
                    stats.truncated_bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(&p).map_err(io_err(&p))?;
                }
                last = Some((n, good as u64));
                break;
            }
            if i + 1 < segs.len() {
                closed_bytes += len as u64;
            }
            last = Some((n, len as u64));
        }
        let (segment, segment_len) = last.unwrap_or((after, 0));
        let path = segment_path(dir, segment);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                segment,
                file: None,
                segment_len,
                closed_bytes,
                written: false,
            },
            stats,
        ))
    }

    /// Writes already-framed records (see [`RecordEncoder`]) with one write; starts a new segment when full.
    pub fn write(&mut self, framed: &[u8]) -> Result<(), WalError> {
        if framed.is_empty() {
            return Ok(());
        }
        if self.segment_len > 0 && self.segment_len + framed.len() as u64 > SEGMENT_SIZE {
            self.next_segment()?;
        }
        let path = segment_path(&self.dir, self.segment);
        let file = self.current()?;
        if let Err(e) = (&*file).write_all(framed) {
            // Cut a partial write back off so the next record starts on a record boundary.
            let _ = file.set_len(self.segment_len);
            return Err(io_err(&path)(e));
        }
        self.segment_len += framed.len() as u64;
        self.written = true;
        Ok(())
    }

    /// The current segment, opened for appending if it is closed.
    fn current(&mut self) -> Result<Arc<File>, WalError> {
        if let Some(f) = &self.file {
            return Ok(Arc::clone(f));
        }
        let path = segment_path(&self.dir, self.segment);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let file = Arc::new(file);
        self.file = Some(Arc::clone(&file));
        Ok(file)
    }

    /// A handle to the current segment, to fsync without holding the WAL lock; `None` when it is
    /// closed (and so already synced).
    pub fn sync_handle(&self) -> Option<Arc<File>> {
        self.file.clone()
    }

    /// Flushes the current segment to stable storage.
    pub fn sync(&self) -> Result<(), WalError> {
        match &self.file {
            Some(f) => f
                .sync_data()
                .map_err(io_err(&segment_path(&self.dir, self.segment))),
            None => Ok(()),
        }
    }

    /// Detaches the current segment if nothing was written since the last call and returns it,
    /// so the caller can fsync it outside the WAL lock; dropping the handle closes it, and the
    /// next write reopens the segment.
    pub fn take_if_idle(&mut self) -> Option<Arc<File>> {
        if std::mem::take(&mut self.written) {
            return None;
        }
        self.file.take()
    }

    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.closed_bytes + self.segment_len
    }

    /// Closes the current segment and starts the next; returns the closed segment's number.
    pub fn roll(&mut self) -> Result<u64, WalError> {
        let closed = self.segment;
        self.next_segment()?;
        Ok(closed)
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Recomputes the size after a checkpoint replaced older segments.
    pub fn refresh_size(&mut self) {
        let mut total = 0;
        if let Ok(Some((_, cp))) = latest_checkpoint(&self.dir) {
            total += dir_size(&cp);
        }
        for n in segments(&self.dir).unwrap_or_default() {
            if n < self.segment {
                total += fs::metadata(segment_path(&self.dir, n))
                    .map(|m| m.len())
                    .unwrap_or(0);
            }
        }
        self.closed_bytes = total;
    }

    fn next_segment(&mut self) -> Result<(), WalError> {
        self.sync()?;
        self.closed_bytes += self.segment_len;
        self.segment += 1;
        let path = segment_path(&self.dir, self.segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        self.file = Some(Arc::new(file));
        self.segment_len = 0;
        Ok(())
    }
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// What a checkpoint kept and dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Segments folded into the checkpoint and deleted.
    pub segments: u64,
    /// Series records kept.
    pub series_kept: u64,
    /// Samples kept.
    pub samples_kept: u64,
    /// Samples dropped (older than the cut, or of series gone from the head).
    pub samples_dropped: u64,
}

/// Folds every segment up to and including `upto` (and the previous checkpoint) into
/// `checkpoint.<upto>`, keeping series for which `keep` is true and their samples at or after
/// `min_time`, then deletes what it folded. `upto` must be a closed segment (see [`Wal::roll`]).
pub fn checkpoint(
    dir: &Path,
    upto: u64,
    min_time: i64,
    keep: impl Fn(u64) -> bool,
) -> Result<CheckpointStats, WalError> {
    let mut stats = CheckpointStats::default();
    let previous = latest_checkpoint(dir)?;
    let folded: Vec<u64> = segments(dir)?.into_iter().filter(|&n| n <= upto).collect();
    let final_dir = dir.join(format!("{CHECKPOINT_PREFIX}{upto:08}"));
    let tmp = dir.join(format!("{CHECKPOINT_PREFIX}{upto:08}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let out_path = segment_path(&tmp, 0);
    let mut out = std::io::BufWriter::new(File::create(&out_path).map_err(io_err(&out_path))?);
    let mut enc = RecordEncoder::default();
    let mut replay = ReplayStats::default();
    let mut buf = Vec::new();
    let mut sources: Vec<PathBuf> = Vec::new();
    if let Some((_, cp)) = &previous {
        sources.extend(segments(cp)?.into_iter().map(|n| segment_path(cp, n)));
    }
    sources.extend(folded.iter().map(|&n| segment_path(dir, n)));
    for path in &sources {
        let mut write_err = None;
        read_segment(path, &mut buf, &mut replay, &mut |record| {
            enc.clear();
            match record {
                Record::Series(series) => {
                    let kept: Vec<(u64, &[u8])> =
                        series.into_iter().filter(|(id, _)| keep(*id)).collect();
                    if kept.is_empty() {
                        return Ok(());
                    }
                    stats.series_kept += kept.len() as u64;
                    enc.series_raw(&kept);
                }
                Record::Samples(rows) => {
                    enc.begin_samples();
                    for (id, t, v) in rows {
                        if t >= min_time && keep(id) {
                            enc.sample(id, t, v);
                            stats.samples_kept += 1;
                        } else {
                            stats.samples_dropped += 1;
                        }
                    }
                    enc.end_samples();
                }
                Record::Exemplars(rows) => {
                    enc.begin_exemplars();
                    for (id, t, v, labels) in rows {
                        if t >= min_time && keep(id) {
                            enc.exemplar(id, t, v, labels);
                        }
                    }
                    enc.end_samples();
                }
                Record::Histograms(rows) => {
                    let kept: Vec<_> = rows
                        .iter()
                        .filter(|(id, t, _)| *t >= min_time && keep(*id))
                        .map(|(id, t, h)| (*id, *t, h))
                        .collect();
                    stats.samples_kept += kept.len() as u64;
                    stats.samples_dropped += (rows.len() - kept.len()) as u64;
                    enc.histograms(kept);
                }
            }
            if let Err(e) = out.write_all(enc.bytes()) {
                write_err = Some(e);
            }
            Ok(())
        })?;
        if let Some(e) = write_err {
            return Err(io_err(&out_path)(e));
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| io_err(&out_path)(e.into_error()))?;
    file.sync_all().map_err(io_err(&out_path))?;
    sync_dir(&tmp)?;
    fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
    sync_dir(dir)?;
    // The new checkpoint is durable; what it replaces can go.
    for n in &folded {
        let p = segment_path(dir, *n);
        fs::remove_file(&p).map_err(io_err(&p))?;
    }
    if let Some((_, cp)) = previous {
        fs::remove_dir_all(&cp).map_err(io_err(&cp))?;
    }
    stats.segments = folded.len() as u64;
    Ok(stats)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Decodes records from a segment (or checkpoint segment); returns the length of the valid
/// prefix. Public so the fuzz harness drives it with hostile bytes.
pub fn replay_segment(
    buf: &[u8],
    stats: &mut ReplayStats,
    on_record: &mut impl FnMut(Record<'_>) -> Result<(), WalError>,
) -> Result<usize, WalError> {
    let mut pos = 0;
    while buf.len() - pos >= HEADER_LEN {
        let len = u32::from_be_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let start = pos + HEADER_LEN;
        if len == 0 || buf.len() - start < len {
            break;
        }
        let payload = &buf[start..start + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match decode_record(payload) {
            Ok(record) => on_record(record)?,
            // A record that passes its CRC but does not parse was written by a newer or broken
            // writer; treat it like corruption rather than guess.
            Err(_) => break,
        }
        stats.records += 1;
        pos = start + len;
    }
    Ok(pos)
}

fn decode_record(payload: &[u8]) -> Result<Record<'_>, WalError> {
    let bad = |what| WalError::Record(what);
    let (&kind, mut rest) = payload.split_first().ok_or(bad("empty record"))?;
    match kind {
        RECORD_SERIES => {
            let mut out = Vec::new();
            while !rest.is_empty() {
                let id = u64::from_be_bytes(
                    rest.get(..8)
                        .ok_or(bad("short series ref"))?
                        .try_into()
                        .expect("8 bytes"),
                );
                rest = &rest[8..];
                out.push((id, label_pairs(&mut rest)?));
            }
            Ok(Record::Series(out))
        }
        RECORD_SAMPLES => {
            let base = row_base(&mut rest)?;
            let mut out = Vec::new();
            while !rest.is_empty() {
                out.push(row(&mut rest, base)?);
            }
            Ok(Record::Samples(out))
        }
        RECORD_EXEMPLARS => {
            let base = row_base(&mut rest)?;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let (id, t, v) = row(&mut rest, base)?;
                out.push((id, t, v, label_pairs(&mut rest)?));
            }
            Ok(Record::Exemplars(out))
        }
        RECORD_HISTOGRAMS
        | RECORD_FLOAT_HISTOGRAMS
        | RECORD_CUSTOM_HISTOGRAMS
        | RECORD_CUSTOM_FLOAT_HISTOGRAMS => {
            let base = row_base(&mut rest)?;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let (id, t) = row_key(&mut rest, base)?;
                let h = histogram_record::decode(kind, &mut rest).ok_or(bad("bad histogram"))?;
                out.push((id, t, h));
            }
            Ok(Record::Histograms(out))
        }
        _ => Err(bad("unknown record type")),
    }
}

/// The first series ref and time of a samples or exemplars record (big-endian), which its
/// rows are deltas from.
#[inline]
fn row_base(rest: &mut &[u8]) -> Result<(u64, i64), WalError> {
    if rest.len() < 16 {
        return Err(WalError::Record("short record header"));
    }
    let first_ref = u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
    let first_t = i64::from_be_bytes(rest[8..16].try_into().expect("8 bytes"));
    *rest = &rest[16..];
    Ok((first_ref, first_t))
}

/// The `(ref, t)` of a row: varint deltas from `base`.
#[inline]
fn row_key(rest: &mut &[u8], (first_ref, first_t): (u64, i64)) -> Result<(u64, i64), WalError> {
    let bad = WalError::Record;
    let (dref, u) = varint(rest).ok_or(bad("bad ref delta"))?;
    *rest = &rest[u..];
    let (dt, u) = varint(rest).ok_or(bad("bad time delta"))?;
    *rest = &rest[u..];
    Ok((
        first_ref.wrapping_add(dref as u64),
        first_t.wrapping_add(dt),
    ))
}

/// One `(ref, t, value)` row: varint deltas from `base`, then the value's bits (big-endian).
#[inline]
fn row(rest: &mut &[u8], base: (u64, i64)) -> Result<(u64, i64, f64), WalError> {
    let (id, t) = row_key(rest, base)?;
    let v = rest.get(..8).ok_or(WalError::Record("short value"))?;
    let v = f64::from_bits(u64::from_be_bytes(v.try_into().expect("8 bytes")));
    *rest = &rest[8..];
    Ok((id, t, v))
}

/// A label set: `uvarint count`, then `count` pairs of uvarint-length strings; returns the
/// pairs' bytes.
#[inline]
fn label_pairs<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], WalError> {
    let bad = WalError::Record;
    let (n, used) = uvarint(rest).ok_or(bad("bad label count"))?;
    *rest = &rest[used..];
    let mut len = 0;
    for _ in 0..n * 2 {
        let (l, u) = uvarint(&rest[len..]).ok_or(bad("bad label length"))?;
        len += u + l as usize;
        if len > rest.len() {
            return Err(bad("short label"));
        }
    }
    let pairs = &rest[..len];
    *rest = &rest[len..];
    Ok(pairs)
}

/// Builds framed records in a reusable buffer.
#[derive(Default)]
pub struct RecordEncoder {
    buf: Vec<u8>,
    record_start: usize,
    first: Option<(u64, i64)>,
}

impl RecordEncoder {
    /// Most of its allocation the buffer keeps after a request that used no more: ample for the
    /// samples of one, while the series records of requests that create 10,000 series each
    /// (megabytes) are not kept for the life of the process.
    const KEEP_BYTES: usize = 256 << 10;

    /// Empties the buffer. Its allocation is kept while requests are large (a burst of new
    /// series does not regrow it under the WAL lock each time) and cut to
    /// [`Self::KEEP_BYTES`] after the first small one.
    pub fn clear(&mut self) {
        if self.buf.len() <= Self::KEEP_BYTES {
            self.buf.shrink_to(Self::KEEP_BYTES);
        }
        self.buf.clear();
        self.first = None;
    }

    /// The framed records built so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    fn begin(&mut self, kind: u8) {
        self.record_start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        self.buf.push(kind);
    }

    fn end(&mut self) {
        let payload = &self.buf[self.record_start + HEADER_LEN..];
        let len = (payload.len() as u32).to_be_bytes();
        let crc = crc32c::crc32c(payload).to_be_bytes();
        self.buf[self.record_start..self.record_start + 4].copy_from_slice(&len);
        self.buf[self.record_start + 4..self.record_start + 8].copy_from_slice(&crc);
    }

    /// Appends one series record holding every `(ref, labels)` given.
    pub fn series<'a>(&mut self, series: impl IntoIterator<Item = (u64, &'a super::Labels)>) {
        self.begin(RECORD_SERIES);
        for (id, labels) in series {
            self.buf.extend_from_slice(&id.to_be_bytes());
            put_uvarint(&mut self.buf, labels.len() as u64);
            labels.write_wal(&mut self.buf);
        }
        self.end();
    }

    /// Appends one series record from already-encoded label sets.
    pub fn series_raw(&mut self, series: &[(u64, &[u8])]) {
        self.begin(RECORD_SERIES);
        for (id, labels) in series {
            self.buf.extend_from_slice(&id.to_be_bytes());
            let pairs = super::Labels::from_wal(labels)
                .map(|l| l.len())
                .unwrap_or(0);
            put_uvarint(&mut self.buf, pairs as u64);
            self.buf.extend_from_slice(labels);
        }
        self.end();
    }

    /// Starts a samples record; add rows with [`RecordEncoder::sample`], then [`RecordEncoder::end_samples`].
    pub fn begin_samples(&mut self) {
        self.begin(RECORD_SAMPLES);
        self.first = None;
    }

    /// Adds a sample row to the open samples record.
    pub fn sample(&mut self, id: u64, t: i64, v: f64) {
        self.row_head(id, t);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    /// Starts a row of the open record: the record's base on its first row, then the deltas.
    #[inline]
    fn row_head(&mut self, id: u64, t: i64) {
        let (first_ref, first_t) = match self.first {
            Some(f) => f,
            None => {
                self.buf.extend_from_slice(&id.to_be_bytes());
                self.buf.extend_from_slice(&t.to_be_bytes());
                self.first = Some((id, t));
                (id, t)
            }
        };
        put_varint(&mut self.buf, id.wrapping_sub(first_ref) as i64);
        put_varint(&mut self.buf, t.wrapping_sub(first_t));
    }

    /// Starts an exemplars record; add rows with [`RecordEncoder::exemplar`], then
    /// [`RecordEncoder::end_samples`].
    pub fn begin_exemplars(&mut self) {
        self.begin(RECORD_EXEMPLARS);
        self.first = None;
    }

    /// Adds an exemplar row (labels already encoded as WAL label pairs) to the open record.
    pub fn exemplar(&mut self, id: u64, t: i64, v: f64, labels: &[u8]) {
        self.sample(id, t, v);
        let pairs = super::Labels::from_wal(labels)
            .map(|l| l.len())
            .unwrap_or(0);
        put_uvarint(&mut self.buf, pairs as u64);
        self.buf.extend_from_slice(labels);
    }

    /// Appends histogram records holding `(ref, t, histogram)` rows in the order given: a new
    /// record starts whenever the record type (integer, float, or their custom-bucket kinds)
    /// changes, so a replay applies them in the order they were appended.
    pub fn histograms<'h>(
        &mut self,
        rows: impl IntoIterator<Item = (u64, i64, &'h HistogramValue)>,
    ) {
        let mut kind = None;
        for (id, t, h) in rows {
            let k = histogram_record::record_type(h);
            if kind != Some(k) {
                if kind.is_some() {
                    self.end_samples();
                }
                self.begin(k);
                self.first = None;
                kind = Some(k);
            }
            self.row_head(id, t);
            histogram_record::encode(&mut self.buf, h);
        }
        if kind.is_some() {
            self.end_samples();
        }
    }

    /// Closes the open samples (or exemplars) record; an empty one is dropped.
    pub fn end_samples(&mut self) {
        if self.first.is_none() {
            self.buf.truncate(self.record_start);
            return;
        }
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::Labels;

    fn collect(dir: &Path) -> (Vec<String>, ReplayStats) {
        let mut seen = Vec::new();
        let (_, stats) = Wal::open(dir, |r| {
            match r {
                Record::Series(s) => {
                    for (id, l) in s {
                        seen.push(format!("series {id} {}", Labels::from_wal(l).unwrap()));
                    }
                }
                Record::Samples(s) => {
                    for (id, t, v) in s {
                        seen.push(format!("sample {id} {t} {:x}", v.to_bits()));
                    }
                }
                Record::Exemplars(e) => {
                    for (id, t, v, l) in e {
                        let l = Labels::from_wal(l).unwrap();
                        seen.push(format!("exemplar {id} {t} {v} {l}"));
                    }
                }
                Record::Histograms(h) => {
                    for (id, t, h) in h {
                        seen.push(format!("histogram {id} {t} {h:?}"));
                    }
                }
            }
            Ok(())
        })
        .unwrap();
        (seen, stats)
    }

    #[test]
    fn the_encoder_keeps_a_large_buffer_only_while_requests_stay_large() {
        let big = Labels::from_strs(&[("__name__", &"x".repeat(1 << 20))]);
        let mut enc = RecordEncoder::default();
        enc.series([(1, &big)]);
        enc.clear();
        enc.series([(1, &big)]);
        let grown = enc.buf.capacity();
        assert!(grown > 1 << 20);
        // A burst of large requests reuses the allocation.
        enc.clear();
        assert_eq!(enc.buf.capacity(), grown);
        // The first small request after it lets it go.
        enc.series([(2, &Labels::from_strs(&[("__name__", "up")]))]);
        enc.clear();
        assert!(enc.buf.capacity() <= RecordEncoder::KEEP_BYTES);
        assert!(enc.bytes().is_empty());
    }

    #[test]
    fn histogram_records_round_trip_and_survive_checkpoints() {
        use tsdb_format::histogram::{FloatHistogram, Histogram, Span};
        let dir = tempfile::tempdir().unwrap();
        let int = HistogramValue::Int(Histogram {
            count: 3,
            sum: 1.5,
            positive_spans: vec![Span {
                offset: 1,
                length: 2,
            }],
            positive_buckets: vec![1, 1],
            ..Histogram::default()
        });
        let float = HistogramValue::Float(FloatHistogram {
            count: 0.5,
            schema: -53,
            custom_values: vec![1.0],
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![0.5],
            ..FloatHistogram::default()
        });
        {
            let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
            let mut enc = RecordEncoder::default();
            enc.series([(7, &Labels::from_strs(&[("__name__", "h")]))]);
            enc.histograms([(7, 1000, &int), (7, 2000, &float), (7, 3000, &int)]);
            wal.write(enc.bytes()).unwrap();
            wal.roll().unwrap();
        }
        let (seen, _) = collect(dir.path());
        assert_eq!(
            seen[1..],
            [
                format!("histogram 7 1000 {int:?}"),
                format!("histogram 7 2000 {float:?}"),
                format!("histogram 7 3000 {int:?}"),
            ],
            "rows come back in the order they were appended, across record types"
        );
        let stats = checkpoint(dir.path(), 0, 2000, |_| true).unwrap();
        assert_eq!((stats.samples_kept, stats.samples_dropped), (2, 1));
        let (seen, _) = collect(dir.path());
        assert_eq!(
            seen[1..],
            [
                format!("histogram 7 2000 {float:?}"),
                format!("histogram 7 3000 {int:?}"),
            ]
        );
    }

    fn write_some(wal: &mut Wal) {
        let mut enc = RecordEncoder::default();
        let l = Labels::from_strs(&[("__name__", "up")]);
        enc.series([(7, &l)]);
        enc.begin_samples();
        enc.sample(7, 1000, 1.5);
        enc.sample(3, 900, f64::from_bits(0x7ff0_0000_0000_0002));
        enc.end_samples();
        enc.begin_samples();
        enc.end_samples();
        wal.write(enc.bytes()).unwrap();
    }

    #[test]
    fn exemplar_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        let mut enc = RecordEncoder::default();
        enc.begin_exemplars();
        let mut labels = Vec::new();
        Labels::from_strs(&[("trace_id", "abc")]).write_wal(&mut labels);
        enc.exemplar(7, 1001, 0.5, &labels);
        enc.exemplar(3, 990, 2.0, &labels);
        enc.end_samples();
        // An empty exemplars record is not written.
        enc.begin_exemplars();
        enc.end_samples();
        wal.write(enc.bytes()).unwrap();
        drop(wal);
        let (seen, stats) = collect(dir.path());
        assert_eq!(
            seen,
            [
                r#"exemplar 7 1001 0.5 {trace_id="abc"}"#,
                r#"exemplar 3 990 2 {trace_id="abc"}"#,
            ]
        );
        assert_eq!(stats.records, 1);
    }

    #[test]
    fn records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        write_some(&mut wal);
        drop(wal);
        let (seen, stats) = collect(dir.path());
        assert_eq!(
            seen,
            vec![
                r#"series 7 {__name__="up"}"#.to_string(),
                "sample 7 1000 3ff8000000000000".into(),
                "sample 3 900 7ff0000000000002".into(),
            ]
        );
        assert_eq!(stats.records, 2);
        assert!(!stats.repaired);
    }

    #[test]
    fn torn_tail_is_truncated_and_wal_stays_appendable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        write_some(&mut wal);
        let good_len = wal.size_bytes();
        write_some(&mut wal);
        drop(wal);
        let seg = segment_path(dir.path(), 0);
        let full = fs::metadata(&seg).unwrap().len();
        // Tear the second write in the middle of its samples record.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        let (seen, stats) = collect(dir.path());
        assert!(stats.repaired);
        assert_eq!(
            seen.len(),
            4,
            "first write plus the intact series record: {seen:?}"
        );
        assert!(fs::metadata(&seg).unwrap().len() > good_len);
        // Appending after repair produces a WAL that replays cleanly.
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        write_some(&mut wal);
        drop(wal);
        let (seen, stats) = collect(dir.path());
        assert!(!stats.repaired);
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn corrupt_crc_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        write_some(&mut wal);
        write_some(&mut wal);
        drop(wal);
        let seg = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let (seen, stats) = collect(dir.path());
        assert!(stats.repaired);
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn checkpoint_keeps_live_series_and_recent_samples() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        let (a, b) = (
            Labels::from_strs(&[("s", "a")]),
            Labels::from_strs(&[("s", "b")]),
        );
        let mut enc = RecordEncoder::default();
        enc.series([(1, &a), (2, &b)]);
        enc.begin_samples();
        for t in [10, 20, 30] {
            enc.sample(1, t, t as f64);
            enc.sample(2, t, t as f64);
        }
        enc.end_samples();
        wal.write(enc.bytes()).unwrap();
        let upto = wal.roll().unwrap();
        enc.clear();
        enc.begin_samples();
        enc.sample(1, 40, 40.0);
        enc.end_samples();
        wal.write(enc.bytes()).unwrap();

        // Series 2 left the head; everything before t=20 is in a block.
        let stats = checkpoint(dir.path(), upto, 20, |id| id == 1).unwrap();
        assert_eq!(
            (stats.segments, stats.series_kept, stats.samples_kept),
            (1, 1, 2)
        );
        assert!(!segment_path(dir.path(), 0).exists());
        drop(wal);
        let (seen, _) = collect(dir.path());
        assert_eq!(
            seen,
            vec![
                r#"series 1 {s="a"}"#.to_string(),
                "sample 1 20 4034000000000000".into(),
                "sample 1 30 403e000000000000".into(),
                "sample 1 40 4044000000000000".into(),
            ]
        );
        // A second checkpoint folds the first one in.
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        let upto = wal.roll().unwrap();
        checkpoint(dir.path(), upto, 35, |_| true).unwrap();
        drop(wal);
        let (seen, _) = collect(dir.path());
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(latest_checkpoint(dir.path()).unwrap().unwrap().0, upto);
    }

    #[test]
    fn segments_roll_and_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        write_some(&mut wal);
        wal.next_segment().unwrap();
        write_some(&mut wal);
        let size = wal.size_bytes();
        drop(wal);
        assert_eq!(segments(dir.path()).unwrap(), vec![0, 1]);
        let (seen, stats) = collect(dir.path());
        assert_eq!((seen.len(), stats.segments), (6, 2));
        let (wal, _) = Wal::open(dir.path(), |_| Ok(())).unwrap();
        assert_eq!(wal.size_bytes(), size);
    }
}

//! The in-memory head: active series and their recent samples in XOR chunks.
//!
//! Series live in a striped hash table keyed by a precomputed label hash, so lookups from
//! concurrent requests rarely contend (the hash is not kept per series: a resize or a removal
//! hashes the key again); [`MemPostings`] indexes them by label pair for queries.
//! Each series keeps one open [`XorAppender`] in memory; a chunk is closed as soon as it holds
//! 120 samples or ~1 KiB, or when a sample crosses a chunk-range boundary (so no chunk straddles
//! a 2-hour block), and closed chunks live in the head chunk files ([`HeadChunks`]), the series
//! keeping only their time range and position.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tsdb_format::chunkenc::{ENCODING_XOR, XorAppender, iter_xor};

use super::chunks_head::{ChunkPos, HeadChunks, ReadError, Recovered, RecoveredChunk};
use super::histogram_chunks::{self, HistogramChunks};
use super::histogram_record::fingerprint;
use super::postings::{self, MemPostings};
use super::{HistogramValue, Labels, Matcher};
use tsdb_format::histogram::STALE_NAN_BITS;

const STRIPES: usize = 64;
/// Samples per chunk, as Prometheus' `DefaultSamplesPerChunk`.
pub const SAMPLES_PER_CHUNK: u16 = 120;
/// A chunk is closed before it grows past this many bytes (Prometheus' `MaxBytesPerXORChunk` margin).
pub const MAX_CHUNK_BYTES: usize = 1005;

/// A closed float chunk, its bytes in the head chunk files. A head holds a few per series, so it
/// takes 20 bytes: the last sample's time is kept as its distance from the first, which no chunk
/// lets pass [`ClosedChunk::MAX_SPAN`].
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
pub struct ClosedChunk {
    min_time: i64,
    pos: ChunkPos,
    span: u32,
}

impl ClosedChunk {
    /// The most milliseconds between a chunk's first and last sample.
    pub const MAX_SPAN: i64 = u32::MAX as i64;

    /// A chunk of samples from `min_time` to `max_time`, at most [`Self::MAX_SPAN`] apart.
    fn new(min_time: i64, max_time: i64, pos: ChunkPos) -> Self {
        let span = u32::try_from(max_time - min_time).expect("chunks are cut within MAX_SPAN");
        Self {
            min_time,
            pos,
            span,
        }
    }

    /// First sample's timestamp.
    pub fn min_time(&self) -> i64 {
        self.min_time
    }

    /// Last sample's timestamp.
    pub fn max_time(&self) -> i64 {
        self.min_time + i64::from(self.span)
    }

    /// Where its record is.
    pub fn pos(&self) -> ChunkPos {
        self.pos
    }
}

/// A chunk of a series as `(min_time, max_time, encoding, bytes)`.
pub type ChunkRef<'a> = (i64, i64, u8, Cow<'a, [u8]>);

/// What appending to a series needs besides its data: where closed chunks go, under which
/// series reference, and the range no chunk may straddle.
#[derive(Clone, Copy)]
pub struct ChunkSink<'a> {
    disk: &'a HeadChunks,
    series: u64,
    range: i64,
}

impl ChunkSink<'_> {
    fn close(&self, open: XorAppender) -> ClosedChunk {
        let (min_time, max_time) = (open.min_time(), open.max_time());
        let pos = self
            .disk
            .write(self.series, min_time, max_time, ENCODING_XOR, open.bytes());
        ClosedChunk::new(min_time, max_time, pos)
    }

    fn read(&self, c: &ClosedChunk) -> Result<Vec<u8>, ReadError> {
        read_xor(self.disk, self.series, c)
    }
}

fn read_xor(disk: &HeadChunks, series: u64, c: &ClosedChunk) -> Result<Vec<u8>, ReadError> {
    let pos = c.pos();
    let (encoding, data) = disk.read(pos, series)?;
    if encoding != ENCODING_XOR {
        return Err(ReadError::Corrupt {
            seq: pos.seq(),
            offset: pos.offset(),
            what: "not an XOR chunk",
        });
    }
    Ok(data)
}

/// `last`'s time while a series has no sample (appends reject it as out of bounds).
pub const NO_SAMPLE: i64 = i64::MIN;

/// Samples of one series. A head holds one per series, so it is kept small: closed chunks in an
/// exactly sized slice (a few per series, added once per 120 samples), the newest sample without
/// an `Option`'s tag.
pub struct SeriesData {
    /// Closed float chunks, oldest first.
    closed: Box<[ClosedChunk]>,
    /// The float chunk being appended to.
    pub open: XorAppender,
    /// Newest sample: time ([`NO_SAMPLE`] if none) and value bits (a fingerprint for a
    /// histogram).
    last: (i64, u64),
    /// Native histogram chunks, for the few series that carry histograms; chunks of the two
    /// kinds never overlap in time (appending one kind closes the other's open chunk).
    pub histograms: Option<Box<HistogramChunks>>,
}

impl Default for SeriesData {
    fn default() -> Self {
        Self {
            closed: Box::default(),
            open: XorAppender::new(),
            last: (NO_SAMPLE, 0),
            histograms: None,
        }
    }
}

impl SeriesData {
    /// Timestamp and value bits of the newest sample (for a histogram, its
    /// [`fingerprint`](super::histogram_record::fingerprint)).
    pub fn last(&self) -> Option<(i64, u64)> {
        (self.last.0 != NO_SAMPLE).then_some(self.last)
    }

    /// Closed float chunks, oldest first.
    pub fn closed(&self) -> &[ClosedChunk] {
        &self.closed
    }

    /// Replaces the closed chunks (the slice is sized exactly).
    fn set_closed(&mut self, chunks: Vec<ClosedChunk>) {
        self.closed = chunks.into_boxed_slice();
    }

    fn push_closed(&mut self, chunk: ClosedChunk) {
        let mut chunks = std::mem::take(&mut self.closed).into_vec();
        chunks.reserve_exact(1);
        chunks.push(chunk);
        self.set_closed(chunks);
    }

    /// Writes the open float chunk to the chunk files.
    fn close_open(&mut self, sink: ChunkSink<'_>) {
        if self.open.num_samples() > 0 {
            let full = std::mem::take(&mut self.open);
            self.push_closed(sink.close(full));
        }
    }

    /// What a float sample does to a series that has histograms: a stale marker ends it as a
    /// histogram stale marker, as Prometheus' head turns it (agents send histogram staleness as
    /// floats), and is appended here (`true`); any other float closes the open histogram chunk.
    fn float_on_histograms(&mut self, sink: ChunkSink<'_>, t: i64, v: f64) -> bool {
        let Some(h) = &mut self.histograms else {
            return false;
        };
        if v.to_bits() == STALE_NAN_BITS
            && let Some(kind) = h.open_stale_marker()
        {
            self.append_histogram(sink, t, &kind);
            return true;
        }
        h.close_open();
        false
    }

    fn append(&mut self, sink: ChunkSink<'_>, t: i64, v: f64) {
        if self.float_on_histograms(sink, t, v) {
            return;
        }
        let open = &self.open;
        // The open chunk lies within one range, so its newest sample names the boundary as well
        // as its first (which the appender decodes rather than keeps).
        if open.num_samples() > 0
            && (t >= boundary_after(open.max_time(), sink.range)
                || (sink.range > ClosedChunk::MAX_SPAN
                    && t.saturating_sub(open.min_time()) > ClosedChunk::MAX_SPAN))
        {
            self.close_open(sink);
        }
        self.open.append(t, v);
        self.last = (t, v.to_bits());
        // A full chunk goes to the files at once, not when the next sample arrives.
        if self.open.num_samples() >= SAMPLES_PER_CHUNK
            || self.open.bytes().len() >= MAX_CHUNK_BYTES
        {
            self.close_open(sink);
        }
    }

    /// Replays a logged float sample newer than the last one: when a closed chunk already
    /// holds it (one [`Head::attach_chunks`] gave back) it only becomes the newest sample,
    /// otherwise it is appended.
    fn replay(&mut self, sink: ChunkSink<'_>, t: i64, v: f64) {
        if self.closed.last().is_none_or(|c| t > c.max_time()) {
            self.append(sink, t, v);
        } else if !self.float_on_histograms(sink, t, v) {
            self.last = (t, v.to_bits());
        }
    }

    /// Sets the newest sample from the newest closed chunk when the replay did not reach it
    /// (its WAL records were lost to a power failure while the chunk survived).
    fn settle_last(&mut self, sink: ChunkSink<'_>) -> Result<(), ReadError> {
        let Some(c) = self.closed.last() else {
            return Ok(());
        };
        if self.last().is_none_or(|(t, _)| t < c.max_time()) {
            let newest = iter_xor(&sink.read(c)?).last();
            if let Some((t, v)) = newest {
                self.last = (t, v.to_bits());
            }
        }
        Ok(())
    }

    fn append_histogram(&mut self, sink: ChunkSink<'_>, t: i64, h: &HistogramValue) {
        self.close_open(sink);
        self.histograms
            .get_or_insert_default()
            .append(t, h, sink.range);
        self.last = (t, fingerprint(h));
    }

    /// The bytes of every float chunk that may hold a sample in `[mint, maxt]`, oldest first.
    fn float_chunks(
        &self,
        disk: &HeadChunks,
        series: u64,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Cow<'_, [u8]>>, ReadError> {
        let mut out = Vec::new();
        for c in self
            .closed
            .iter()
            .filter(|c| c.max_time() >= mint && c.min_time() <= maxt)
        {
            out.push(Cow::Owned(read_xor(disk, series, c)?));
        }
        let open = &self.open;
        if open.num_samples() > 0 && open.max_time() >= mint && open.min_time() <= maxt {
            out.push(Cow::Borrowed(open.bytes()));
        }
        Ok(out)
    }

    /// The stored float sample at exactly `t`, if any (a scan of the chunks that may hold it).
    fn float_at(&self, disk: &HeadChunks, series: u64, t: i64) -> Result<Option<u64>, ReadError> {
        Ok(self
            .float_chunks(disk, series, t, t)?
            .iter()
            .flat_map(|c| iter_xor(c))
            .find(|&(ts, _)| ts == t)
            .map(|(_, v)| v.to_bits()))
    }

    /// Merges float samples older than the newest one (sorted, none at a stored timestamp) into
    /// the chunks from the first one they reach on, re-encoded in time order: chunks stay
    /// sorted and disjoint, at most [`SAMPLES_PER_CHUNK`] samples and inside one `chunk_range`.
    /// Nothing changes when a chunk cannot be read back.
    fn insert_out_of_order(
        &mut self,
        sink: ChunkSink<'_>,
        samples: &[(i64, f64)],
    ) -> Result<(), ReadError> {
        let Some(&(first, _)) = samples.first() else {
            return Ok(());
        };
        let keep = self.closed.partition_point(|c| c.max_time() < first);
        let mut merged: Vec<(i64, f64)> = Vec::new();
        for c in &self.closed[keep..] {
            merged.extend(iter_xor(&sink.read(c)?));
        }
        merged.extend(iter_xor(self.open.bytes()));
        merged.extend_from_slice(samples);
        merged.sort_by_key(|&(t, _)| t);
        self.set_closed(self.closed[..keep].to_vec());
        self.open = XorAppender::new();
        // Ends with the newest sample again, so `last` stays as it was.
        for (t, v) in merged {
            self.append(sink, t, v);
        }
        Ok(())
    }

    /// Every chunk, float and histogram, closed and open, oldest first.
    fn chunks(&self, disk: &HeadChunks, series: u64) -> Result<Vec<ChunkRef<'_>>, ReadError> {
        let mut out: Vec<ChunkRef<'_>> = Vec::with_capacity(self.chunk_count());
        for c in &self.closed {
            let data = read_xor(disk, series, c)?;
            out.push((c.min_time(), c.max_time(), ENCODING_XOR, Cow::Owned(data)));
        }
        if self.open.num_samples() > 0 {
            out.push((
                self.open.min_time(),
                self.open.max_time(),
                ENCODING_XOR,
                Cow::Borrowed(self.open.bytes()),
            ));
        }
        if let Some(h) = &self.histograms {
            out.extend(h.chunks().map(|(a, b, e, d)| (a, b, e, Cow::Borrowed(d))));
            out.sort_by_key(|c| c.0);
        }
        Ok(out)
    }

    /// Float samples with `mint <= t <= maxt`, oldest first.
    fn samples(
        &self,
        disk: &HeadChunks,
        series: u64,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(i64, f64)>, ReadError> {
        Ok(self
            .float_chunks(disk, series, mint, maxt)?
            .iter()
            .flat_map(|c| iter_xor(c))
            .filter(|&(t, _)| t >= mint && t <= maxt)
            .collect())
    }

    /// Drops every sample older than `mint`; a chunk that straddles it is re-encoded, so the
    /// head never keeps a sample a block already holds (one that cannot be read back is kept
    /// whole: its samples are in a block already, so a read of the head may see them twice).
    fn drop_before(&mut self, sink: ChunkSink<'_>, mint: i64) {
        let gone = self.closed.partition_point(|c| c.max_time() < mint);
        if gone > 0 {
            self.set_closed(self.closed[gone..].to_vec());
        }
        if let Some(first) = self.closed.first()
            && first.min_time() < mint
        {
            match sink.read(first) {
                Ok(data) => {
                    let kept = keep_from(&data, mint);
                    self.closed[0] = sink.close(kept);
                }
                Err(e) => tracing::error!(error = %e, "re-encoding a head chunk failed"),
            }
        }
        let open = &self.open;
        if open.num_samples() > 0 && open.min_time() < mint {
            self.open = if open.max_time() < mint {
                XorAppender::new()
            } else {
                keep_from(open.bytes(), mint)
            };
        }
        if let Some(h) = &mut self.histograms {
            h.drop_before(mint);
            if h.is_empty() {
                self.histograms = None;
            }
        }
    }

    /// Number of chunks, open ones included.
    pub fn chunk_count(&self) -> usize {
        self.closed.len()
            + usize::from(self.open.num_samples() > 0)
            + self.histograms.as_ref().map_or(0, |h| h.chunks().count())
    }

    /// `(min_time, max_time)` of every chunk, in no particular order, without allocating.
    pub fn time_ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.closed
            .iter()
            .map(|c| (c.min_time(), c.max_time()))
            .chain(
                (self.open.num_samples() > 0).then(|| (self.open.min_time(), self.open.max_time())),
            )
            .chain(
                self.histograms
                    .iter()
                    .flat_map(|h| h.chunks().map(|c| (c.0, c.1))),
            )
    }

    /// The oldest sample's time, if any.
    pub fn first_time(&self) -> Option<i64> {
        self.time_ranges().map(|r| r.0).min()
    }
}

/// The samples of an XOR chunk at or after `mint`, re-encoded.
fn keep_from(chunk: &[u8], mint: i64) -> XorAppender {
    let mut app = XorAppender::new();
    for (t, v) in iter_xor(chunk).filter(|&(t, _)| t >= mint) {
        app.append(t, v);
    }
    app
}

/// The newest sample before `t` of the chunk of `data` that starts at `min`.
fn chunk_max_before(
    disk: &HeadChunks,
    series: &MemSeries,
    data: &SeriesData,
    min: i64,
    t: i64,
) -> Result<i64, ReadError> {
    let chunks = data.chunks(disk, series.id)?;
    let Some((_, _, encoding, bytes)) = chunks.iter().find(|c| c.0 == min) else {
        return Ok(min);
    };
    let times = if *encoding == ENCODING_XOR {
        iter_xor(bytes).map(|(ts, _)| ts).collect()
    } else {
        histogram_chunks::timestamps(*encoding, bytes)
    };
    Ok(times
        .into_iter()
        .take_while(|&ts| ts < t)
        .last()
        .unwrap_or(min))
}

/// The first multiple of `range` strictly after `t`, or `i64::MAX` when that does not fit.
pub fn boundary_after(t: i64, range: i64) -> i64 {
    (t.div_euclid(range) + 1)
        .checked_mul(range)
        .unwrap_or(i64::MAX)
}

/// The stripe of the series table a label hash belongs to.
fn stripe_index(hash: u64) -> usize {
    (hash >> 58) as usize % STRIPES
}

/// One series of the head.
pub struct MemSeries {
    /// Reference used by WAL records.
    pub id: u64,
    /// The series' labels.
    pub labels: Labels,
    /// Whether its series record is in the WAL.
    pub logged: AtomicBool,
    /// Set when garbage collection dropped it from the head; appends must look it up again.
    pub removed: AtomicBool,
    /// Its labels are known to follow remote write 1.0's name rules (set by ingestion).
    pub classic_names: AtomicBool,
    /// Its samples.
    pub data: Mutex<SeriesData>,
}

/// Asks the CPU to bring the cache line at `p` closer; a hint that never faults.
#[allow(unsafe_code, reason = "the prefetch intrinsic has no safe wrapper")]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never dereferences `p` architecturally, whatever its value.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The head of one tenant.
pub struct Head {
    stripes: Box<[RwLock<HashTable<Arc<MemSeries>>>]>,
    /// Taken after a stripe's lock, never before, so the index changes with the stripe.
    postings: RwLock<MemPostings>,
    /// Series created since the postings were last brought up to date: indexing them is left to
    /// the next query or compaction, off the write path.
    unindexed: Mutex<Vec<Arc<MemSeries>>>,
    next_id: AtomicU64,
    num_series: AtomicU64,
    min_time: AtomicI64,
    max_time: AtomicI64,
    max_present_time: AtomicI64,
    min_valid_time: AtomicI64,
    ceiling: AtomicI64,
    chunk_range: i64,
    chunks: HeadChunks,
    /// The hash every `hash` argument is of the key (`labels_hash`; tests force collisions).
    key_hash: fn(&[u8]) -> u64,
}

impl Head {
    /// An empty head whose chunks never straddle a multiple of `chunk_range` milliseconds,
    /// closed chunks kept in memory.
    pub fn new(chunk_range: i64) -> Self {
        Self::with_chunks(chunk_range, HeadChunks::in_memory())
    }

    /// An empty head that writes closed chunks to files in `dir`, and the chunks an earlier run
    /// left there (see [`HeadChunks::open`] for `keep`).
    pub fn open(chunk_range: i64, dir: &Path, keep: bool) -> std::io::Result<(Self, Recovered)> {
        let (chunks, recovered) = HeadChunks::open(dir, keep)?;
        Ok((Self::with_chunks(chunk_range, chunks), recovered))
    }

    fn with_chunks(chunk_range: i64, chunks: HeadChunks) -> Self {
        Head {
            stripes: (0..STRIPES)
                .map(|_| RwLock::new(HashTable::new()))
                .collect(),
            postings: RwLock::new(MemPostings::default()),
            unindexed: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            num_series: AtomicU64::new(0),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            max_present_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
            ceiling: AtomicI64::new(i64::MAX),
            chunk_range,
            chunks,
            key_hash: super::labels_hash,
        }
    }

    /// The files closed chunks live in.
    pub fn chunk_files(&self) -> &HeadChunks {
        &self.chunks
    }

    fn sink(&self, series: &MemSeries) -> ChunkSink<'_> {
        ChunkSink {
            disk: &self.chunks,
            series: series.id,
            range: self.chunk_range,
        }
    }

    /// Every chunk of `series`, whose locked data is `data`, oldest first.
    pub fn series_chunks<'a>(
        &self,
        series: &MemSeries,
        data: &'a SeriesData,
    ) -> Result<Vec<ChunkRef<'a>>, ReadError> {
        data.chunks(&self.chunks, series.id)
    }

    /// The stored float sample of `series` at exactly `t`, if any.
    pub fn float_at(
        &self,
        series: &MemSeries,
        data: &SeriesData,
        t: i64,
    ) -> Result<Option<u64>, ReadError> {
        data.float_at(&self.chunks, series.id, t)
    }

    /// Float samples of `series` with `mint <= t <= maxt`, oldest first.
    pub fn samples(
        &self,
        series: &MemSeries,
        data: &SeriesData,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(i64, f64)>, ReadError> {
        data.samples(&self.chunks, series.id, mint, maxt)
    }

    fn stripe(&self, hash: u64) -> &RwLock<HashTable<Arc<MemSeries>>> {
        &self.stripes[stripe_index(hash)]
    }

    fn hash_of(&self, series: &MemSeries) -> u64 {
        (self.key_hash)(series.labels.key())
    }

    /// Finds a series by the hash and bytes of its label key (see [`super::labels::write_key`]).
    pub fn get(&self, hash: u64, key: &[u8]) -> Option<Arc<MemSeries>> {
        self.stripe(hash)
            .read()
            .find(hash, |s| s.labels.key() == key)
            .cloned()
    }

    /// Finds the series of many label keys: `spans[i]` is the hash and the range in `keys` of
    /// key `i`. Each stripe's lock is taken once for all its keys instead of once per key: on a
    /// request of 10,000 series that spares 20,000 atomic writes to lock words both cores share.
    pub fn get_many(
        &self,
        keys: &[u8],
        spans: &[(u64, Range<usize>)],
    ) -> Vec<Option<Arc<MemSeries>>> {
        // Positions grouped by stripe (a counting sort): `order[start[s]..start[s + 1]]`.
        let mut start = [0u32; STRIPES + 1];
        for (hash, _) in spans {
            start[stripe_index(*hash) + 1] += 1;
        }
        for s in 0..STRIPES {
            start[s + 1] += start[s];
        }
        let mut next = start;
        let mut order = vec![0u32; spans.len()];
        for (pos, (hash, _)) in spans.iter().enumerate() {
            let s = stripe_index(*hash);
            order[next[s] as usize] = pos as u32;
            next[s] += 1;
        }
        let mut found = vec![None; spans.len()];
        for (s, stripe) in self.stripes.iter().enumerate() {
            let group = &order[start[s] as usize..start[s + 1] as usize];
            if group.is_empty() {
                continue;
            }
            let table = stripe.read();
            // Each lookup is a chain of cache misses (table slot, series, its key). Walking the
            // group three times, one link per pass with prefetches for the next, keeps many
            // misses in flight instead of one. First pass: the first series whose hash tag
            // matches, not yet read.
            let candidates: Vec<_> = group
                .iter()
                .map(|&pos| {
                    let candidate = table.find(spans[pos as usize].0, |_| true);
                    if let Some(series) = candidate {
                        prefetch(Arc::as_ptr(series).cast());
                    }
                    candidate
                })
                .collect();
            for series in candidates.iter().flatten() {
                for line in series.labels.key().chunks(64) {
                    prefetch(line.as_ptr());
                }
            }
            for (&pos, candidate) in group.iter().zip(&candidates) {
                let (hash, range) = &spans[pos as usize];
                let key = &keys[range.clone()];
                found[pos as usize] = match candidate {
                    Some(series) if series.labels.key() == key => Some(Arc::clone(series)),
                    // A tag collision (1 in 128 per probed slot), or absent.
                    Some(_) => table.find(*hash, |x| x.labels.key() == key).cloned(),
                    None => None,
                };
            }
        }
        found
    }

    /// Finds or creates a series by label hash and key; `true` means it was created.
    pub fn get_or_create(&self, hash: u64, key: &[u8]) -> (Arc<MemSeries>, bool) {
        match self.get(hash, key) {
            Some(s) => (s, false),
            None => self.create(hash, key),
        }
    }

    /// Creates a series that a lookup just missed (another writer may have created it since:
    /// then that one, and `false`).
    pub fn create(&self, hash: u64, key: &[u8]) -> (Arc<MemSeries>, bool) {
        let mut stripe = self.stripe(hash).write();
        if let Some(s) = stripe.find(hash, |s| s.labels.key() == key) {
            return (Arc::clone(s), false);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let series = Arc::new(MemSeries {
            id,
            labels: Labels::from_key(key),
            logged: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            classic_names: AtomicBool::new(false),
            data: Mutex::new(SeriesData::default()),
        });
        stripe.insert_unique(hash, Arc::clone(&series), |s| self.hash_of(s));
        self.unindexed.lock().push(Arc::clone(&series));
        self.num_series.fetch_add(1, Ordering::Relaxed);
        (series, true)
    }

    /// Recreates a series read from the WAL under its logged reference; [`Head::index_all`]
    /// indexes the restored series once the replay is done.
    pub fn restore_series(&self, id: u64, hash: u64, labels: Labels) -> Arc<MemSeries> {
        self.next_id.fetch_max(id + 1, Ordering::Relaxed);
        let mut stripe = self.stripe(hash).write();
        if let Some(s) = stripe.find(hash, |s| s.labels == labels) {
            return Arc::clone(s);
        }
        let series = Arc::new(MemSeries {
            id,
            labels,
            logged: AtomicBool::new(true),
            removed: AtomicBool::new(false),
            classic_names: AtomicBool::new(false),
            data: Mutex::new(SeriesData::default()),
        });
        stripe.insert_unique(hash, Arc::clone(&series), |s| self.hash_of(s));
        self.num_series.fetch_add(1, Ordering::Relaxed);
        series
    }

    /// Gives a series restored from the WAL, before any of its samples is replayed, the closed
    /// chunks an earlier run wrote for it (oldest first, disjoint, all inside the head's bounds).
    pub fn attach_chunks(&self, series: &MemSeries, chunks: &[RecoveredChunk]) {
        let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
            return;
        };
        let mut data = series.data.lock();
        let mut closed = std::mem::take(&mut data.closed).into_vec();
        closed.extend(
            chunks
                .iter()
                .map(|c| ClosedChunk::new(c.min_time, c.max_time, c.pos)),
        );
        data.set_closed(closed);
        self.widen(first.min_time);
        self.widen(last.max_time);
    }

    /// Sets a replayed series' newest sample to one its attached chunks hold (noted by the
    /// replay, not appended), unless it already has a newer one.
    pub fn restore_last(series: &MemSeries, t: i64, bits: u64) {
        let mut data = series.data.lock();
        if data.last().is_none_or(|(last, _)| t > last) {
            data.last = (t, bits);
        }
    }

    /// Replays a logged float sample that the caller checked is newer than the series' last
    /// one; samples the attached chunks hold are not appended again.
    pub fn replay(&self, series: &MemSeries, data: &mut SeriesData, t: i64, v: f64) {
        data.replay(self.sink(series), t, v);
        self.widen(t);
    }

    /// After a replay, gives every series whose newest attached chunk is newer than its
    /// replayed samples that chunk's last sample as its newest.
    pub fn settle_replayed(&self) {
        for stripe in self.stripes.iter() {
            for s in stripe.read().iter() {
                if let Err(e) = s.data.lock().settle_last(self.sink(s)) {
                    tracing::error!(error = %e, "reading a head chunk after the replay failed");
                }
            }
        }
    }

    /// Makes series created from now on take IDs above `id`.
    pub fn reserve_ids_through(&self, id: u64) {
        self.next_id
            .fetch_max(id.saturating_add(1), Ordering::Relaxed);
    }

    /// Rebuilds the postings from every series in ID order, so the lists fill by pushes.
    pub fn index_all(&self) {
        let mut all = self.all_series();
        all.sort_unstable_by_key(|s| s.id);
        let mut index = MemPostings::default();
        for s in &all {
            index.add(s);
        }
        *self.postings.write() = index;
    }

    /// Indexes the series created since the last call, in ID order; series already removed
    /// again are skipped (their removal found nothing to take out of the index).
    pub fn index_pending(&self) {
        let mut pending = std::mem::take(&mut *self.unindexed.lock());
        if pending.is_empty() {
            return;
        }
        pending.sort_unstable_by_key(|s| s.id);
        let mut index = self.postings.write();
        for s in pending {
            // Under the index lock: a removal either ran before (flag set) or runs after.
            if !s.removed.load(Ordering::Relaxed) {
                index.add(&s);
            }
        }
    }

    /// The postings, up to date and read-locked: series removal waits while a guard is held.
    pub fn postings(&self) -> RwLockReadGuard<'_, MemPostings> {
        self.index_pending();
        self.postings.read()
    }

    /// Appends one sample that the caller checked is newer than the series' last one; `data`
    /// is the series' locked data.
    pub fn append(&self, series: &MemSeries, data: &mut SeriesData, t: i64, v: f64) {
        data.append(self.sink(series), t, v);
        self.widen(t);
    }

    /// Widens the head's time range to `t`. Most samples fall inside it: reading first leaves
    /// the shared cache line unwritten, where an unconditional `fetch_min`/`fetch_max` would
    /// take it exclusively on every sample and bounce it between the cores appending.
    #[inline]
    fn widen(&self, t: i64) {
        if t < self.min_time.load(Ordering::Relaxed) {
            self.min_time.fetch_min(t, Ordering::Relaxed);
        }
        if t > self.max_time.load(Ordering::Relaxed) {
            self.max_time.fetch_max(t, Ordering::Relaxed);
        }
    }

    /// Merges out-of-order float samples (sorted, older than the series' newest, none at a
    /// stored timestamp) into the series' chunks; nothing changes when a chunk of the series
    /// cannot be read back.
    pub fn insert_out_of_order(
        &self,
        series: &MemSeries,
        data: &mut SeriesData,
        samples: &[(i64, f64)],
    ) -> Result<(), ReadError> {
        if let Some(&(t, _)) = samples.first() {
            data.insert_out_of_order(self.sink(series), samples)?;
            self.min_time.fetch_min(t, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Appends one native histogram that the caller checked is newer than the series' last
    /// sample.
    pub fn append_histogram(
        &self,
        series: &MemSeries,
        data: &mut SeriesData,
        t: i64,
        h: &HistogramValue,
    ) {
        data.append_histogram(self.sink(series), t, h);
        self.widen(t);
    }

    /// Number of series in the head.
    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    /// Oldest and newest sample timestamps, if any sample was appended.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let (min, max) = (
            self.min_time.load(Ordering::Relaxed),
            self.max_time.load(Ordering::Relaxed),
        );
        (min <= max).then_some((min, max))
    }

    /// The newest sample time that was not ahead of the wall clock when it was appended:
    /// compaction follows it, so far-future samples neither cut the present early nor stall.
    pub fn max_present_time(&self) -> i64 {
        self.max_present_time.load(Ordering::Relaxed)
    }

    /// Records that a sample at `t` was appended when `t` was not ahead of the clock.
    pub fn note_present(&self, t: i64) {
        if t > self.max_present_time.load(Ordering::Relaxed) {
            self.max_present_time.fetch_max(t, Ordering::Relaxed);
        }
    }

    /// Samples older than this are out of bounds: a block already covers their time.
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Relaxed)
    }

    /// Raises the lower bound of accepted samples (never lowers it).
    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::Relaxed);
    }

    /// Samples before this are in bounds above the lower bound; from here on each must be
    /// checked against the blocks cut ahead of the clock, the first of which starts here.
    /// `i64::MAX` without such blocks: a sample at `i64::MAX` (which no block's exclusive end
    /// can cover) is always out of bounds.
    pub fn ceiling(&self) -> i64 {
        self.ceiling.load(Ordering::Relaxed)
    }

    /// Sets where the checks against blocks ahead of the clock start.
    pub fn set_ceiling(&self, t: i64) {
        self.ceiling.store(t, Ordering::Relaxed);
    }

    /// The chunk range (block width) in milliseconds.
    pub fn chunk_range(&self) -> i64 {
        self.chunk_range
    }

    /// Drops every chunk that ends before `mint` and every series left without samples; returns
    /// the IDs of the series still in the head. Callers hold the WAL lock so no append runs.
    pub fn truncate(&self, mint: i64) -> std::collections::HashSet<u64> {
        self.set_min_valid_time(mint);
        let mut live = std::collections::HashSet::new();
        let mut removed = Vec::new();
        let mut new_min = i64::MAX;
        for stripe in self.stripes.iter() {
            let mut table = stripe.write();
            table.retain(|s| {
                let mut data = s.data.lock();
                data.drop_before(self.sink(s), mint);
                match data.first_time() {
                    Some(t) => {
                        new_min = new_min.min(t);
                        live.insert(s.id);
                        true
                    }
                    None => {
                        s.removed.store(true, Ordering::Relaxed);
                        removed.push(Arc::clone(s));
                        false
                    }
                }
            });
        }
        self.chunks.truncate(mint);
        self.postings.write().remove(&removed);
        self.num_series.store(live.len() as u64, Ordering::Relaxed);
        self.min_time.store(new_min, Ordering::Relaxed);
        if new_min == i64::MAX {
            self.max_time.store(i64::MIN, Ordering::Relaxed);
        }
        live
    }

    /// The newest sample time before `t`, over every series.
    pub fn max_time_before(&self, t: i64) -> Option<i64> {
        let mut newest = None;
        for stripe in self.stripes.iter() {
            for s in stripe.read().iter() {
                let data = s.data.lock();
                for (min, max) in data.time_ranges().filter(|&(min, _)| min < t) {
                    let last = if max < t {
                        max
                    } else {
                        // A chunk that straddles `t` (none does at a range boundary).
                        chunk_max_before(&self.chunks, s, &data, min, t).unwrap_or_else(|e| {
                            tracing::error!(error = %e, "reading a head chunk failed");
                            min
                        })
                    };
                    newest = newest.max(Some(last));
                }
            }
        }
        newest
    }

    /// Removes a series that holds no sample (one a failed write created); appends holding it
    /// look it up again. Callers hold the WAL lock.
    pub fn remove_if_empty(&self, series: &Arc<MemSeries>) {
        let hash = self.hash_of(series);
        let mut stripe = self.stripe(hash).write();
        if series.data.lock().chunk_count() > 0 {
            return;
        }
        if let Ok(entry) = stripe.find_entry(hash, |s| Arc::ptr_eq(s, series)) {
            entry.remove();
            series.removed.store(true, Ordering::Relaxed);
            self.postings.write().remove(std::slice::from_ref(series));
            self.num_series.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Every series, in no particular order.
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut out = Vec::with_capacity(self.num_series() as usize);
        for stripe in self.stripes.iter() {
            out.extend(stripe.read().iter().cloned());
        }
        out
    }

    /// Series whose labels satisfy every matcher, sorted by labels, found through the postings.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let mut out = {
            let index = self.postings();
            let Ok(ids) = postings::select(&*index, matchers);
            index.series(&ids)
        };
        out.sort_by(|a, b| a.labels.compare(&b.labels));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::labels_hash;

    fn get_or_create(head: &Head, key: &[u8]) -> (Arc<MemSeries>, bool) {
        head.get_or_create(labels_hash(key), key)
    }

    fn pairs(l: &[(&str, &str)]) -> Vec<u8> {
        let mut key = Vec::new();
        crate::tsdb::labels::write_key(
            l.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut key,
        );
        key
    }

    #[test]
    fn a_series_fits_the_allocators_160_byte_class() {
        // `Arc` adds two counters; a head holds one of these per series.
        assert!(std::mem::size_of::<MemSeries>() + 16 <= 160);
        assert_eq!(std::mem::size_of::<ClosedChunk>(), 20);
    }

    #[test]
    fn series_are_found_again_and_chunks_cut() {
        // Every key hashes alike: lookups must tell series apart by their labels.
        let head = Head {
            key_hash: |_| 42,
            ..Head::new(7_200_000)
        };
        let l = [("__name__", "up"), ("job", "a")];
        let (s, created) = head.get_or_create(42, &pairs(&l));
        assert!(created);
        let (again, created) = head.get_or_create(42, &pairs(&l));
        assert!(!created);
        assert_eq!(s.id, again.id);
        // Same hash, other labels: a collision must still give a distinct series.
        let (other, created) = head.get_or_create(42, &pairs(&[("job", "b")]));
        assert!(created);
        assert_ne!(other.id, s.id);
        assert_eq!(head.num_series(), 2);

        let mut data = s.data.lock();
        for i in 0..300 {
            head.append(&s, &mut data, i * 15_000, i as f64);
        }
        // 120 + 120 + 60 samples, the third chunk open.
        assert_eq!(data.chunk_count(), 3);
        let got = head.samples(&s, &data, 15_000, 30_000).unwrap();
        assert_eq!(got, vec![(15_000, 1.0), (30_000, 2.0)]);
        assert_eq!(
            head.samples(&s, &data, i64::MIN, i64::MAX).unwrap().len(),
            300
        );
        assert_eq!(head.time_range(), Some((0, 299 * 15_000)));
    }

    #[test]
    fn chunks_do_not_straddle_the_chunk_range() {
        let head = Head::new(1000);
        let (s, _) = get_or_create(&head, &pairs(&[("a", "b")]));
        let mut data = s.data.lock();
        for t in [990, 995, 999, 1000, 1001] {
            head.append(&s, &mut data, t, 1.0);
        }
        assert_eq!(data.closed.len(), 1);
        assert_eq!(
            (data.closed[0].min_time(), data.closed[0].max_time()),
            (990, 999)
        );
        assert_eq!(boundary_after(-1, 1000), 0);
        assert_eq!(boundary_after(0, 1000), 1000);
    }

    #[test]
    fn truncation_drops_old_chunks_and_empty_series() {
        let head = Head::new(1000);
        let (old, _) = get_or_create(&head, &pairs(&[("s", "old")]));
        let (both, _) = get_or_create(&head, &pairs(&[("s", "both")]));
        head.append(&old, &mut old.data.lock(), 500, 1.0);
        for t in [600, 999, 1000, 1500] {
            head.append(&both, &mut both.data.lock(), t, 1.0);
        }
        let live = head.truncate(1000);
        assert_eq!(live.into_iter().collect::<Vec<_>>(), vec![both.id]);
        assert!(old.removed.load(Ordering::Relaxed));
        assert_eq!(head.num_series(), 1);
        assert_eq!(
            head.samples(&both, &both.data.lock(), i64::MIN, i64::MAX)
                .unwrap(),
            vec![(1000, 1.0), (1500, 1.0)]
        );
        assert_eq!(head.time_range(), Some((1000, 1500)));
        assert_eq!(head.min_valid_time(), 1000);
        // The removed series is created afresh on its next sample.
        let (again, created) = get_or_create(&head, &pairs(&[("s", "old")]));
        assert!(created);
        assert_ne!(again.id, old.id);
    }

    #[test]
    fn empty_series_are_removed_and_others_kept() {
        let head = Head::new(1000);
        let (empty, _) = get_or_create(&head, &pairs(&[("s", "empty")]));
        let (full, _) = get_or_create(&head, &pairs(&[("s", "full")]));
        head.append(&full, &mut full.data.lock(), 5, 1.0);
        head.remove_if_empty(&empty);
        head.remove_if_empty(&full);
        assert!(empty.removed.load(Ordering::Relaxed));
        assert!(!full.removed.load(Ordering::Relaxed));
        assert_eq!(head.num_series(), 1);
        let key = pairs(&[("s", "empty")]);
        assert!(head.get(labels_hash(&key), &key).is_none());
    }

    #[test]
    fn get_many_finds_every_stored_key_across_stripes() {
        let head = Head::new(1000);
        let stored: Vec<_> = (0..200u64)
            .map(|i| get_or_create(&head, &pairs(&[("i", &i.to_string())])).0)
            .collect();
        // Stored keys interleaved with unknown ones (200..300 and one more).
        let mut keys = Vec::new();
        let mut spans = Vec::new();
        let mut add = |key: Vec<u8>| {
            let start = keys.len();
            keys.extend_from_slice(&key);
            spans.push((labels_hash(&key), start..keys.len()));
        };
        for i in (0..300u64).rev() {
            add(pairs(&[("i", &i.to_string())]));
        }
        add(pairs(&[("i", "other")]));
        let found = head.get_many(&keys, &spans);
        assert_eq!(found.len(), 301);
        for (pos, i) in (0..300u64).rev().enumerate() {
            match &found[pos] {
                Some(s) => assert!(i < 200 && Arc::ptr_eq(s, &stored[i as usize])),
                None => assert!(i >= 200, "series {i} not found"),
            }
        }
        assert!(found[300].is_none());
        assert!(head.get_many(&[], &[]).is_empty());
        // Creating what another writer created in between hands back that series.
        let key = pairs(&[("i", "3")]);
        let (again, created) = head.create(labels_hash(&key), &key);
        assert!(!created && Arc::ptr_eq(&again, &stored[3]));
        assert_eq!(head.num_series(), 200);
    }

    #[test]
    fn select_by_matchers() {
        let head = Head::new(7_200_000);
        get_or_create(&head, &pairs(&[("__name__", "up"), ("job", "b")]));
        get_or_create(&head, &pairs(&[("__name__", "up"), ("job", "a")]));
        get_or_create(&head, &pairs(&[("__name__", "down")]));
        let up = head.select(&[Matcher::Equal("__name__".into(), "up".into())]);
        let jobs: Vec<_> = up.iter().map(|s| s.labels.get("job").unwrap()).collect();
        assert_eq!(jobs, vec!["a", "b"]);
        let no_job = head.select(&[Matcher::Equal("job".into(), String::new())]);
        assert_eq!(no_job.len(), 1);
        let not_a = head.select(&[Matcher::NotEqual("job".into(), "a".into())]);
        assert_eq!(not_a.len(), 2);
    }
}

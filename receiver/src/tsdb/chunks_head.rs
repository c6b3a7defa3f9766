//! Closed head chunks on disk (`chunks_head/`), so a full head keeps only each series' open chunk
//! in memory.
//!
//! The files use Prometheus' head-chunk format: an 8-byte header (magic `0x0130BC91`, version 1,
//! padding) and records `series_ref u64 | mint u64 | maxt u64 | encoding u8 | len uvarint | data |
//! CRC32C`, all big-endian, the checksum over the whole record before it. Records are appended
//! to an in-memory tail that is written to the current file once it reaches [`FLUSH_BYTES`]; a
//! failed write keeps the tail in memory and is retried at the next flush, so a full disk costs
//! memory, never a chunk. Reads use `pread` (or copy from the tail): nothing is mapped, so read
//! chunks never count against the process' resident memory.
//!
//! The files are a cache, not a durability source: the WAL holds every sample. On open, every
//! record is checked (header, length, CRC); the first bad one (a torn tail after a crash) ends the
//! scan, its file is cut there and later files are deleted, so what is kept is a prefix of what
//! was written. [`Recovered`] hands each series the chunks its newest records describe, and the
//! WAL replay appends only the samples after them. A new file is started on open, and a file is
//! synced before the next one is written, so a power loss cannot keep a later file and lose an
//! earlier one's end. A file is deleted once every chunk in it is older than the head's lower
//! bound.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tsdb_format::encoding::{put_uvarint, uvarint, uvarint_len};

/// First four bytes of a head chunk file.
pub const MAGIC: u32 = 0x0130_BC91;
/// A new file is started before one grows past this, as Prometheus' `MaxHeadChunkFileSize`.
pub const MAX_FILE_BYTES: u64 = 128 << 20;
/// The in-memory tail of the current file is written out at this size (small: the tail's buffer
/// is part of the head's memory, and one `pwrite` of it is cheap).
pub const FLUSH_BYTES: usize = 256 << 10;
const FILE_HEADER: usize = 8;
/// series ref, mint, maxt, encoding.
const RECORD_HEAD: usize = 25;
const OFFSET_BITS: u32 = 27;
const LEN_BITS: u32 = 16;
/// File sequence numbers wrap here (2M files of up to 128 MiB).
const SEQ_LIMIT: u32 = 1 << (64 - OFFSET_BITS - LEN_BITS);

/// Where a closed chunk's record is, in 8 bytes: file sequence number (21 bits), byte offset in
/// the file (27 bits: files stay under 128 MiB) and the chunk's length (16 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPos(u64);

impl ChunkPos {
    fn new(seq: u32, offset: u64, len: usize) -> Self {
        debug_assert!(seq < SEQ_LIMIT && offset < 1 << OFFSET_BITS && len < 1 << LEN_BITS);
        ChunkPos(u64::from(seq) << (OFFSET_BITS + LEN_BITS) | offset << LEN_BITS | len as u64)
    }

    /// File sequence number (file name `%06d`).
    pub fn seq(self) -> u32 {
        (self.0 >> (OFFSET_BITS + LEN_BITS)) as u32
    }

    /// Byte offset of the record in its file.
    pub fn offset(self) -> u64 {
        (self.0 >> LEN_BITS) & ((1 << OFFSET_BITS) - 1)
    }

    /// Length of the chunk's data.
    pub fn data_len(self) -> usize {
        (self.0 & ((1 << LEN_BITS) - 1)) as usize
    }
}

/// Head chunk files of one tenant, or an in-memory stand-in when there is no directory.
pub struct HeadChunks {
    dir: Option<PathBuf>,
    files: Mutex<Files>,
}

#[derive(Default)]
struct Files {
    segments: BTreeMap<u32, Segment>,
    current: u32,
    /// Tail size of the current file that triggers the next flush (raised after a failure).
    flush_at: usize,
    failed_flushes: u64,
}

struct Segment {
    /// Opened on the first flush; `None` until then or while it cannot be created.
    file: Option<Arc<File>>,
    /// Bytes written to the file; `tail` continues from here.
    flushed: u64,
    tail: Vec<u8>,
    /// Newest sample time of any chunk in the file.
    max_time: i64,
    records: u64,
}

impl Segment {
    fn new() -> Self {
        let mut tail = Vec::with_capacity(FILE_HEADER);
        tail.extend_from_slice(&MAGIC.to_be_bytes());
        tail.extend_from_slice(&[1, 0, 0, 0]);
        Segment {
            file: None,
            flushed: 0,
            tail,
            max_time: i64::MIN,
            records: 0,
        }
    }

    fn size(&self) -> u64 {
        self.flushed + self.tail.len() as u64
    }
}

/// Reading a chunk back failed: the file is damaged or gone.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("head chunk file {seq:06}: {source}")]
    Io {
        /// File sequence number.
        seq: u32,
        /// Why.
        source: io::Error,
    },
    /// The record is not the chunk that was written there.
    #[error("head chunk file {seq:06} at {offset}: {what}")]
    Corrupt {
        /// File sequence number.
        seq: u32,
        /// Record offset.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
}

impl Files {
    /// Starts the next file.
    fn cut(&mut self) {
        self.current = self.current % (SEQ_LIMIT - 1) + 1;
        let next = self.current;
        self.segments.insert(next, Segment::new());
    }
}

impl HeadChunks {
    /// Chunks kept in memory only (tests and benchmarks of the head alone).
    pub fn in_memory() -> Self {
        Self::with_dir(None, BTreeMap::new(), 0)
    }

    /// Chunk files in `dir` and the chunks an earlier run left there; with `keep` false (the
    /// WAL they belong to is gone) the directory is emptied first.
    pub fn open(dir: &Path, keep: bool) -> io::Result<(Self, Recovered)> {
        if !keep {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::create_dir_all(dir)?;
        let mut numbered: Vec<u32> = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Some(seq) = entry?
                .file_name()
                .to_str()
                .filter(|n| n.len() == 6)
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0 && n < SEQ_LIMIT)
            {
                numbered.push(seq);
            }
        }
        numbered.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut found = Vec::new();
        let mut stats = RecoveryStats::default();
        let mut buf = Vec::new();
        let mut damaged = false;
        for &seq in &numbered {
            let path = dir.join(format!("{seq:06}"));
            if damaged {
                stats.dropped_bytes += fs::metadata(&path).map_or(0, |m| m.len());
                fs::remove_file(&path)?;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            buf.clear();
            (&file).read_to_end(&mut buf)?;
            let scan = scan_file(&buf, seq, &mut found);
            if scan.valid < buf.len() {
                damaged = true;
                stats.dropped_bytes += (buf.len() - scan.valid) as u64;
                tracing::warn!(file = %path.display(), offset = scan.valid, "head chunk file damaged; the WAL restores what followed");
                if scan.valid <= FILE_HEADER {
                    fs::remove_file(&path)?;
                    continue;
                }
                file.set_len(scan.valid as u64)?;
            }
            stats.files += 1;
            stats.records += scan.records;
            segments.insert(
                seq,
                Segment {
                    file: Some(Arc::new(file)),
                    flushed: scan.valid as u64,
                    tail: Vec::new(),
                    max_time: scan.max_time,
                    records: scan.records,
                },
            );
        }
        let last = segments.keys().next_back().copied().unwrap_or(0);
        let chunks = Self::with_dir(Some(dir.to_path_buf()), segments, last);
        Ok((chunks, Recovered::new(found, stats)))
    }

    fn with_dir(dir: Option<PathBuf>, segments: BTreeMap<u32, Segment>, last: u32) -> Self {
        let mut files = Files {
            segments,
            current: last,
            flush_at: FLUSH_BYTES,
            failed_flushes: 0,
        };
        files.cut();
        HeadChunks {
            dir,
            files: Mutex::new(files),
        }
    }

    /// Appends a chunk record and returns where it is. `data` is a closed head chunk: XOR
    /// chunks are cut at about 1 KiB, far below the 64 KiB a position can express.
    pub fn write(
        &self,
        series_ref: u64,
        min_time: i64,
        max_time: i64,
        encoding: u8,
        data: &[u8],
    ) -> ChunkPos {
        assert!(data.len() < 1 << LEN_BITS, "head chunks stay under 64 KiB");
        let mut files = self.files.lock();
        let record_len = (RECORD_HEAD + 10 + data.len() + 4) as u64;
        let current = files.current;
        if files.segments[&current].size() + record_len > MAX_FILE_BYTES {
            self.finish_current(&mut files);
        }
        let (seq, flush_at) = (files.current, files.flush_at);
        let seg = files.segments.get_mut(&seq).expect("current segment");
        let offset = seg.size();
        let start = seg.tail.len();
        seg.tail.extend_from_slice(&series_ref.to_be_bytes());
        seg.tail.extend_from_slice(&min_time.to_be_bytes());
        seg.tail.extend_from_slice(&max_time.to_be_bytes());
        seg.tail.push(encoding);
        put_uvarint(&mut seg.tail, data.len() as u64);
        seg.tail.extend_from_slice(data);
        let crc = crc32c::crc32c(&seg.tail[start..]);
        seg.tail.extend_from_slice(&crc.to_be_bytes());
        seg.max_time = seg.max_time.max(max_time);
        seg.records += 1;
        if seg.tail.len() >= flush_at {
            self.flush(&mut files);
        }
        ChunkPos::new(seq, offset, data.len())
    }

    /// Writes out and syncs the current file, then starts the next: a later file never reaches
    /// the disk before an earlier one is complete there.
    fn finish_current(&self, files: &mut Files) {
        self.flush(files);
        let current = &files.segments[&files.current];
        if let (true, Some(file)) = (current.tail.is_empty(), &current.file)
            && let Err(e) = file.sync_data()
        {
            tracing::warn!(seq = files.current, error = %e, "syncing a head chunk file failed");
        }
        files.cut();
    }

    /// Writes every segment's tail to its file, oldest first; a failure keeps that tail and
    /// every later one for the next try, so the files always hold a prefix of the records.
    fn flush(&self, files: &mut Files) {
        let Some(dir) = &self.dir else {
            return;
        };
        let mut failed = None;
        for (&seq, seg) in files.segments.iter_mut() {
            // A file with no record yet is left unwritten.
            if seg.tail.is_empty() || seg.records == 0 {
                continue;
            }
            let result = match &seg.file {
                Some(file) => Ok(Arc::clone(file)),
                None => OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .read(true)
                    .open(dir.join(format!("{seq:06}")))
                    .map(Arc::new),
            }
            .and_then(|file| {
                seg.file = Some(Arc::clone(&file));
                file.write_all_at(&seg.tail, seg.flushed)
            });
            match result {
                Ok(()) => {
                    seg.flushed += seg.tail.len() as u64;
                    seg.tail = Vec::new();
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let current_tail = files.segments[&files.current].tail.len();
        files.flush_at = current_tail + FLUSH_BYTES;
        if let Some(e) = failed {
            files.failed_flushes += 1;
            if files.failed_flushes.is_power_of_two() {
                tracing::warn!(
                    dir = %dir.display(),
                    failures = files.failed_flushes,
                    error = %e,
                    "writing head chunks failed; they stay in memory until a write succeeds"
                );
            }
        }
    }

    /// Reads back the chunk of `series_ref` written at `pos`: `(encoding, data)`.
    pub fn read(&self, pos: ChunkPos, series_ref: u64) -> Result<(u8, Vec<u8>), ReadError> {
        let (seq, offset) = (pos.seq(), pos.offset());
        let corrupt = |what| ReadError::Corrupt { seq, offset, what };
        let data_start = RECORD_HEAD + uvarint_len(pos.data_len() as u64);
        let end = data_start + pos.data_len() + 4;
        let mut record = Vec::with_capacity(end);
        let file = {
            let files = self.files.lock();
            let seg = files
                .segments
                .get(&seq)
                .ok_or_else(|| corrupt("file already deleted"))?;
            if offset >= seg.flushed {
                let from = (offset - seg.flushed) as usize;
                let bytes = seg.tail.get(from..from + end);
                record.extend_from_slice(bytes.ok_or_else(|| corrupt("truncated record"))?);
                None
            } else {
                seg.file.clone()
            }
        };
        if let Some(file) = &file {
            read_at(file, &mut record, offset, end)
                .map_err(|source| ReadError::Io { seq, source })?;
            if record.len() < end {
                return Err(corrupt("truncated record"));
            }
        }
        let parsed = parse_record(&record).map_err(corrupt)?;
        if parsed.data.len() != pos.data_len() {
            return Err(corrupt("length differs from the one written"));
        }
        if parsed.series != series_ref {
            return Err(corrupt("chunk of another series"));
        }
        let encoding = parsed.encoding;
        record.truncate(parsed.data.end);
        record.drain(..parsed.data.start);
        Ok((encoding, record))
    }

    /// Starts a new file and deletes every other file whose chunks all end before `mint`: called
    /// after the head dropped those chunks.
    pub fn truncate(&self, mint: i64) {
        let mut files = self.files.lock();
        if files.segments[&files.current].records > 0 {
            self.finish_current(&mut files);
        }
        let current = files.current;
        let old: Vec<u32> = files
            .segments
            .iter()
            .filter(|&(&seq, seg)| seq != current && seg.max_time < mint)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in old {
            files.segments.remove(&seq);
            if let Some(dir) = &self.dir {
                match fs::remove_file(dir.join(format!("{seq:06}"))) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        tracing::warn!(dir = %dir.display(), seq, error = %e, "deleting a head chunk file failed");
                    }
                    _ => {}
                }
            }
        }
    }

    /// Bytes of chunk records held in memory, not yet in a file.
    pub fn unflushed_bytes(&self) -> usize {
        self.files
            .lock()
            .segments
            .values()
            .map(|s| s.tail.len())
            .sum()
    }

    /// Number of chunk files (segments) the head uses.
    pub fn files(&self) -> usize {
        self.files.lock().segments.len()
    }
}

impl Drop for HeadChunks {
    /// A clean close keeps every chunk for the next open.
    fn drop(&mut self) {
        let mut files = std::mem::take(&mut *self.files.lock());
        self.flush(&mut files);
    }
}

/// What [`HeadChunks::open`] found in the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Files kept.
    pub files: u64,
    /// Valid chunk records in them (superseded ones included).
    pub records: u64,
    /// Bytes cut or deleted after the first damaged record.
    pub dropped_bytes: u64,
}

/// A chunk an earlier run wrote: its time range and where its record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveredChunk {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// Where its record is.
    pub pos: ChunkPos,
}

/// The chunks of an earlier run by series reference, each series' oldest first.
///
/// A series' records are read in the order they were written. One whose first sample is not
/// after an earlier chunk's last replaces every chunk from there on: an out-of-order merge
/// rewrites a series' chunks from the first one it reaches, and re-encoding a chunk at
/// truncation rewrites the first. What remains is the series' chunk list as it was when its last
/// kept record was written, so every sample of the series up to its last chunk's end is in them.
pub struct Recovered {
    chunks: Vec<RecoveredChunk>,
    by_series: hashbrown::HashMap<u64, (usize, usize)>,
    /// The highest series reference of any record, taken or not.
    max_series_ref: u64,
    /// What the scan found.
    pub stats: RecoveryStats,
}

impl Recovered {
    fn new(mut found: Vec<(u64, RecoveredChunk)>, stats: RecoveryStats) -> Self {
        // Positions grow in write order, so this keeps each series' records in that order.
        found.sort_unstable_by_key(|(series, c)| (*series, c.pos.0));
        let max_series_ref = found.last().map_or(0, |(series, _)| *series);
        let mut by_series = hashbrown::HashMap::new();
        let (mut kept, mut i) = (0, 0);
        while i < found.len() {
            let (series, start) = (found[i].0, kept);
            while i < found.len() && found[i].0 == series {
                let c = found[i].1;
                while kept > start && found[kept - 1].1.max_time >= c.min_time {
                    kept -= 1;
                }
                found[kept] = found[i];
                kept += 1;
                i += 1;
            }
            by_series.insert(series, (start, kept - start));
        }
        found.truncate(kept);
        Recovered {
            chunks: found.into_iter().map(|(_, c)| c).collect(),
            by_series,
            max_series_ref,
            stats,
        }
    }

    /// Takes the chunks of `series_ref`, oldest first: a second call finds none.
    pub fn take(&mut self, series_ref: u64) -> &[RecoveredChunk] {
        match self.by_series.remove(&series_ref) {
            Some((start, len)) => &self.chunks[start..start + len],
            None => &[],
        }
    }

    /// The highest series reference the files name: new series must not reuse one, or a later
    /// restart would hand them chunks of another series (one whose WAL record was lost).
    pub fn max_series_ref(&self) -> u64 {
        self.max_series_ref
    }

    /// Number of chunks not superseded.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether no chunk was found.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Where a file's scan stopped and what it saw before.
struct Scan {
    /// Length of the valid prefix: header and whole, checked records.
    valid: usize,
    records: u64,
    max_time: i64,
}

/// Checks a file's header and records, adding each valid record to `found`, up to the first
/// one that is short or fails its checks.
fn scan_file(buf: &[u8], seq: u32, found: &mut Vec<(u64, RecoveredChunk)>) -> Scan {
    let mut scan = Scan {
        valid: 0,
        records: 0,
        max_time: i64::MIN,
    };
    if buf.len() < FILE_HEADER || buf[..4] != MAGIC.to_be_bytes() || buf[4] != 1 {
        return scan;
    }
    let mut pos = FILE_HEADER;
    while pos < 1 << OFFSET_BITS {
        let Ok(r) = parse_record(&buf[pos..]) else {
            break;
        };
        if r.min_time > r.max_time {
            break;
        }
        found.push((
            r.series,
            RecoveredChunk {
                min_time: r.min_time,
                max_time: r.max_time,
                pos: ChunkPos::new(seq, pos as u64, r.data.len()),
            },
        ));
        scan.records += 1;
        scan.max_time = scan.max_time.max(r.max_time);
        pos += r.len;
    }
    scan.valid = pos;
    scan
}

/// A record's fields, read from the start of a buffer.
struct ParsedRecord {
    series: u64,
    min_time: i64,
    max_time: i64,
    encoding: u8,
    /// Where the chunk's bytes are in the buffer.
    data: std::ops::Range<usize>,
    /// Bytes the whole record takes, checksum included.
    len: usize,
}

/// Parses the record at the start of `buf` and checks its length and checksum.
fn parse_record(buf: &[u8]) -> Result<ParsedRecord, &'static str> {
    if buf.len() <= RECORD_HEAD {
        return Err("truncated record");
    }
    let be = |at: usize| u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let (len, used) = uvarint(&buf[RECORD_HEAD..]).ok_or("truncated record")?;
    if len >= 1 << LEN_BITS {
        return Err("chunk longer than a head chunk");
    }
    let data = RECORD_HEAD + used..RECORD_HEAD + used + len as usize;
    if buf.len() < data.end + 4 {
        return Err("truncated record");
    }
    let stored = u32::from_be_bytes(buf[data.end..data.end + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[..data.end]) != stored {
        return Err("checksum mismatch");
    }
    Ok(ParsedRecord {
        series: be(0),
        min_time: be(8) as i64,
        max_time: be(16) as i64,
        encoding: buf[24],
        len: data.end + 4,
        data,
    })
}

/// Appends up to `len` bytes of `file` from `offset` to `out`; fewer at the end of the file.
fn read_at(file: &File, out: &mut Vec<u8>, offset: u64, len: usize) -> io::Result<()> {
    let start = out.len();
    out.resize(start + len, 0);
    let mut got = 0;
    while got < len {
        match file.read_at(&mut out[start + got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.truncate(start + got);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u32, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
    }

    #[test]
    fn chunks_read_back_from_memory_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let disk = HeadChunks::open(&dir.path().join("chunks_head"), false)
            .unwrap()
            .0;
        // Enough records to flush several times: some are read from the file, the newest
        // from the in-memory tail.
        let mut written = Vec::new();
        for i in 0..5000u32 {
            let data = chunk(i, 300 + (i as usize % 700));
            let pos = disk.write(u64::from(i % 97), i64::from(i), i64::from(i) + 10, 1, &data);
            written.push((pos, i, data));
        }
        assert!(disk.unflushed_bytes() < FLUSH_BYTES);
        let on_disk = fs::metadata(dir.path().join("chunks_head/000001"))
            .unwrap()
            .len();
        assert!(on_disk > 2 * FLUSH_BYTES as u64);
        for (pos, i, data) in &written {
            let (encoding, got) = disk.read(*pos, u64::from(i % 97)).unwrap();
            assert_eq!((encoding, &got), (1, data), "chunk {i}");
        }
        // The file is in Prometheus' layout: header, then the first record.
        let bytes = fs::read(dir.path().join("chunks_head/000001")).unwrap();
        assert_eq!(bytes[..8], [0x01, 0x30, 0xBC, 0x91, 1, 0, 0, 0]);
        assert_eq!(bytes[8..16], 0u64.to_be_bytes());
        assert!(matches!(
            disk.read(written[0].0, 5),
            Err(ReadError::Corrupt {
                what: "chunk of another series",
                ..
            })
        ));
    }

    #[test]
    fn positions_keep_every_field_at_its_limit() {
        let pos = ChunkPos::new(SEQ_LIMIT - 1, (1 << OFFSET_BITS) - 1, u16::MAX.into());
        assert_eq!(
            (pos.seq(), pos.offset(), pos.data_len()),
            (SEQ_LIMIT - 1, (1 << OFFSET_BITS) - 1, 65535)
        );
        let pos = ChunkPos::new(1, 8, 0);
        assert_eq!((pos.seq(), pos.offset(), pos.data_len()), (1, 8, 0));
    }

    #[test]
    fn truncation_deletes_files_of_old_chunks_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let disk = HeadChunks::open(&path, false).unwrap().0;
        let old = disk.write(1, 0, 999, 1, &chunk(1, 200));
        disk.truncate(0);
        let new = disk.write(1, 1000, 1999, 1, &chunk(2, 200));
        assert_eq!((old.seq(), new.seq()), (1, 2));
        disk.truncate(1000);
        assert!(!path.join("000001").exists());
        assert!(disk.read(old, 1).is_err());
        assert_eq!(disk.read(new, 1).unwrap().1, chunk(2, 200));
        assert_eq!(
            disk.files(),
            2,
            "the chunk's own file and a fresh current one"
        );
        // Without its WAL the directory is emptied on open.
        drop(disk);
        let (_, recovered) = HeadChunks::open(&path, false).unwrap();
        assert!(recovered.is_empty());
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_flush_keeps_chunks_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let disk = HeadChunks::open(&path, false).unwrap().0;
        // The directory is gone: files cannot be created, so every tail stays in memory.
        fs::remove_dir_all(&path).unwrap();
        let mut written = Vec::new();
        for i in 0..3000u32 {
            written.push((disk.write(7, 0, 1, 1, &chunk(i, 800)), chunk(i, 800)));
        }
        assert!(disk.unflushed_bytes() > 2 * FLUSH_BYTES);
        fs::create_dir_all(&path).unwrap();
        // The retry waits for another FLUSH_BYTES of chunks.
        for i in 0..1400u32 {
            disk.write(7, 0, 1, 1, &chunk(i, 800));
        }
        assert!(disk.unflushed_bytes() < FLUSH_BYTES);
        for (pos, data) in &written {
            assert_eq!(&disk.read(*pos, 7).unwrap().1, data);
        }
    }

    #[test]
    fn reopening_finds_the_records_written_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let disk = HeadChunks::open(&path, false).unwrap().0;
        let mut written = Vec::new();
        for i in 0..3000u32 {
            let (series, t) = (u64::from(i % 10), i64::from(i / 10) * 1000);
            let pos = disk.write(series, t, t + 999, 1, &chunk(i, 900));
            written.push((series, t, pos, chunk(i, 900)));
        }
        // A kill loses the in-memory tail: only what was flushed comes back.
        let flushed = fs::metadata(path.join("000001")).unwrap().len();
        std::mem::forget(disk);
        let (disk, mut recovered) = HeadChunks::open(&path, true).unwrap();
        let on_disk: Vec<_> = written.iter().filter(|w| w.2.offset() < flushed).collect();
        assert!(on_disk.len() > 1000 && on_disk.len() < written.len());
        assert_eq!(recovered.len(), on_disk.len());
        assert_eq!(recovered.max_series_ref(), 9);
        assert_eq!(recovered.stats.records, on_disk.len() as u64);
        for series in 0..10u64 {
            let expected: Vec<_> = on_disk
                .iter()
                .filter(|w| w.0 == series)
                .map(|w| (w.1, w.1 + 999, w.2))
                .collect();
            let got: Vec<_> = recovered
                .take(series)
                .iter()
                .map(|c| (c.min_time, c.max_time, c.pos))
                .collect();
            assert_eq!(got, expected, "series {series}");
            assert!(recovered.take(series).is_empty(), "taken once");
        }
        for (series, _, pos, data) in &on_disk {
            assert_eq!(&disk.read(*pos, *series).unwrap().1, data);
        }
        // New records go to a new file; a clean close keeps them all.
        let pos = disk.write(3, 10_000_000, 10_000_999, 1, &chunk(7, 100));
        assert_eq!(pos.seq(), 2);
        drop(disk);
        let (disk, mut recovered) = HeadChunks::open(&path, true).unwrap();
        assert_eq!(recovered.take(3).last().map(|c| c.pos), Some(pos));
        assert_eq!(disk.read(pos, 3).unwrap().1, chunk(7, 100));
    }

    #[test]
    fn a_damaged_record_ends_the_scan_and_later_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let disk = HeadChunks::open(&path, false).unwrap().0;
        let first: Vec<_> = (0..20u32)
            .map(|i| {
                disk.write(
                    1,
                    i64::from(i) * 10,
                    i64::from(i) * 10 + 9,
                    1,
                    &chunk(i, 300),
                )
            })
            .collect();
        disk.truncate(i64::MIN);
        disk.write(1, 1000, 1009, 1, &chunk(99, 300));
        drop(disk);
        assert!(path.join("000002").exists());
        // Flip a byte inside the eleventh record of the first file.
        let mut bytes = fs::read(path.join("000001")).unwrap();
        bytes[first[10].offset() as usize + 40] ^= 0xFF;
        fs::write(path.join("000001"), &bytes).unwrap();
        let (disk, mut recovered) = HeadChunks::open(&path, true).unwrap();
        let kept: Vec<_> = recovered.take(1).iter().map(|c| c.pos).collect();
        assert_eq!(kept, first[..10]);
        assert!(!path.join("000002").exists(), "a later file goes");
        assert_eq!(
            fs::metadata(path.join("000001")).unwrap().len(),
            first[10].offset()
        );
        assert!(recovered.stats.dropped_bytes > 0);
        assert_eq!(disk.read(first[9], 1).unwrap().1, chunk(9, 300));
        // A file that is not a chunk file at all is dropped whole.
        drop(disk);
        fs::write(path.join("000001"), b"not a chunk file").unwrap();
        let (_, recovered) = HeadChunks::open(&path, true).unwrap();
        assert!(recovered.is_empty());
        assert!(!path.join("000001").exists());
    }

    #[test]
    fn rewritten_chunks_replace_what_they_cover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let disk = HeadChunks::open(&path, false).unwrap().0;
        for (series, min, max) in [
            (1, 0, 99),
            (2, 0, 99),
            (1, 100, 199),
            (2, 100, 150),
            (1, 200, 299),
            // An out-of-order merge from the second chunk on: both later chunks are replaced.
            (1, 100, 179),
            (1, 180, 250),
            // Truncation re-encodes series 2's first chunk from 50: the later one is dropped
            // too (its samples come back from the WAL).
            (2, 50, 99),
        ] {
            disk.write(series, min, max, 1, &chunk(0, 10));
        }
        drop(disk);
        let (_, mut recovered) = HeadChunks::open(&path, true).unwrap();
        let ranges = |r: &mut Recovered, s| -> Vec<(i64, i64)> {
            r.take(s).iter().map(|c| (c.min_time, c.max_time)).collect()
        };
        assert_eq!(ranges(&mut recovered, 1), [(0, 99), (100, 179), (180, 250)]);
        assert_eq!(ranges(&mut recovered, 2), [(50, 99)]);
        assert!(ranges(&mut recovered, 3).is_empty());
    }
}

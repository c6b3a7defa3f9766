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
//! The files are a cache, not a durability source: the WAL holds every sample, the directory is
//! emptied on open and the replay writes the chunks again. A file is deleted once every chunk in
//! it is older than the head's lower bound.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tsdb_format::encoding::{put_uvarint, uvarint, uvarint_len};

/// First four bytes of a head chunk file.
pub const MAGIC: u32 = 0x0130_BC91;
/// A new file is started before one grows past this, as Prometheus' `MaxHeadChunkFileSize`.
pub const MAX_FILE_BYTES: u64 = 128 << 20;
/// The in-memory tail of the current file is written out at this size.
pub const FLUSH_BYTES: usize = 1 << 20;
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
        Self::with_dir(None)
    }

    /// Chunk files in `dir`, emptied first: chunks of an earlier run come back from the WAL.
    pub fn open(dir: &Path) -> io::Result<Self> {
        match fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(dir)?;
        Ok(Self::with_dir(Some(dir.to_path_buf())))
    }

    fn with_dir(dir: Option<PathBuf>) -> Self {
        let mut files = Files {
            current: 1,
            flush_at: FLUSH_BYTES,
            ..Files::default()
        };
        files.segments.insert(1, Segment::new());
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
            files.cut();
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

    /// Writes every segment's tail to its file; a failure keeps the tail for the next try.
    fn flush(&self, files: &mut Files) {
        let Some(dir) = &self.dir else {
            return;
        };
        let mut failed = None;
        for (&seq, seg) in files.segments.iter_mut() {
            if seg.tail.is_empty() {
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
                Err(e) => failed = Some(e),
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
        if uvarint(&record[RECORD_HEAD..])
            != Some((pos.data_len() as u64, data_start - RECORD_HEAD))
        {
            return Err(corrupt("length differs from the one written"));
        }
        let stored = u32::from_be_bytes(record[end - 4..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&record[..end - 4]) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        if record[..8] != series_ref.to_be_bytes() {
            return Err(corrupt("chunk of another series"));
        }
        let encoding = record[24];
        record.truncate(end - 4);
        record.drain(..data_start);
        Ok((encoding, record))
    }

    /// Starts a new file and deletes every other file whose chunks all end before `mint`: called
    /// after the head dropped those chunks.
    pub fn truncate(&self, mint: i64) {
        let mut files = self.files.lock();
        if files.segments[&files.current].records > 0 {
            self.flush(&mut files);
            files.cut();
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
        let disk = HeadChunks::open(&dir.path().join("chunks_head")).unwrap();
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
        let disk = HeadChunks::open(&path).unwrap();
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
        // Reopening empties the directory: the WAL brings the chunks back.
        drop(disk);
        HeadChunks::open(&path).unwrap();
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_flush_keeps_chunks_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks_head");
        let disk = HeadChunks::open(&path).unwrap();
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
}

//! Block chunk segment files (`chunks/000001`, ...).
//!
//! File: `magic u32 | version u8 | 3 zero bytes`, then records
//! `uvarint len | encoding u8 | data | CRC32C(encoding, data) u32`.
//! A chunk reference is `(segment_index_0_based << 32) | record_offset`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::encoding::{Decoder, put_uvarint};
use crate::error::{Error, Result, corrupt, io_err};
use crate::fsutil::sync_dir;

/// Magic number opening every segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// Segment format version.
pub const SEGMENT_VERSION: u8 = 1;
/// Bytes before the first record.
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Prometheus' default segment size limit (512 MiB).
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 << 20;

/// Builds a chunk reference from a 0-based segment index and a record offset.
pub fn chunk_ref(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// File name of a 0-based segment index: `000001` for 0 (Go's `%0.6d` of index + 1).
pub fn segment_file_name(segment: u32) -> String {
    format!("{:06}", u64::from(segment) + 1)
}

/// A finished segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// File name inside the chunks directory, e.g. `000001`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// What [`ChunkWriter::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunksSummary {
    /// Segment files in order.
    pub segments: Vec<SegmentFile>,
    /// Largest record written (length prefix, encoding, data and CRC), for Thanos' index stats.
    pub max_record_size: u64,
}

struct OpenSegment {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
}

/// Appends chunks to segment files, cutting a new file when the size limit would be exceeded.
pub struct ChunkWriter {
    dir: PathBuf,
    max_segment_size: u64,
    current: Option<OpenSegment>,
    segments: Vec<SegmentFile>,
    max_record_size: u64,
    scratch: Vec<u8>,
}

impl ChunkWriter {
    /// Creates `dir` (if needed) and a writer using [`DEFAULT_SEGMENT_SIZE`].
    pub fn create(dir: &Path) -> Result<Self> {
        Self::with_segment_size(dir, DEFAULT_SEGMENT_SIZE)
    }

    /// Like [`ChunkWriter::create`] with a custom segment size limit (at most 4 GiB, as offsets are u32).
    pub fn with_segment_size(dir: &Path, max_segment_size: u64) -> Result<Self> {
        if max_segment_size <= SEGMENT_HEADER_SIZE || max_segment_size > u64::from(u32::MAX) {
            return Err(Error::InvalidInput(format!(
                "segment size {max_segment_size} must be in ({SEGMENT_HEADER_SIZE}, 2^32)"
            )));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_segment_size,
            current: None,
            segments: Vec::new(),
            max_record_size: 0,
            scratch: Vec::new(),
        })
    }

    /// Appends one chunk and returns its reference.
    pub fn write_chunk(&mut self, encoding: u8, data: &[u8]) -> Result<u64> {
        let rec = &mut self.scratch;
        rec.clear();
        put_uvarint(rec, data.len() as u64);
        rec.push(encoding);
        rec.extend_from_slice(data);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[encoding]), data);
        rec.extend_from_slice(&crc.to_be_bytes());
        let rec_len = rec.len() as u64;
        if rec_len > self.max_segment_size - SEGMENT_HEADER_SIZE {
            return Err(Error::InvalidInput(format!(
                "chunk of {} bytes does not fit a segment of {} bytes",
                data.len(),
                self.max_segment_size
            )));
        }
        let must_cut = match &self.current {
            None => true,
            Some(seg) => seg.size + rec_len > self.max_segment_size,
        };
        if must_cut {
            self.cut()?;
        }
        let index = u32::try_from(self.segments.len())
            .map_err(|_| Error::InvalidInput("too many chunk segments".into()))?;
        let seg = self
            .current
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("no open segment".into()))?;
        // Bounded by max_segment_size ≤ u32::MAX.
        let offset = seg.size as u32;
        seg.file
            .write_all(&self.scratch)
            .map_err(io_err(&seg.path))?;
        seg.size += rec_len;
        self.max_record_size = self.max_record_size.max(rec_len);
        Ok(chunk_ref(index, offset))
    }

    /// Closes the current segment (if any) and opens the next one.
    fn cut(&mut self) -> Result<()> {
        self.close_current()?;
        let index = u32::try_from(self.segments.len())
            .map_err(|_| Error::InvalidInput("too many chunk segments".into()))?;
        let path = self.dir.join(segment_file_name(index));
        let file = File::create(&path).map_err(io_err(&path))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
        header[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
        header[4] = SEGMENT_VERSION;
        file.write_all(&header).map_err(io_err(&path))?;
        self.current = Some(OpenSegment {
            path,
            file,
            size: SEGMENT_HEADER_SIZE,
        });
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(seg) = self.current.take() {
            let file = seg.file.into_inner().map_err(|e| Error::Io {
                path: seg.path.clone(),
                source: e.into_error(),
            })?;
            file.sync_all().map_err(io_err(&seg.path))?;
            let name = seg
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.segments.push(SegmentFile {
                name,
                size: seg.size,
            });
        }
        Ok(())
    }

    /// Flushes and fsyncs all segments and the directory.
    pub fn finish(mut self) -> Result<ChunksSummary> {
        self.close_current()?;
        sync_dir(&self.dir)?;
        Ok(ChunksSummary {
            segments: std::mem::take(&mut self.segments),
            max_record_size: self.max_record_size,
        })
    }
}

/// Reads chunks from a block's `chunks/` directory with positional reads on open segment files,
/// so a query touches only the chunks it needs and a block's chunks never sit in memory whole.
#[derive(Debug)]
pub struct ChunkReader {
    segments: Vec<(PathBuf, File, u64)>,
}

/// Bytes read ahead for a record's length prefix and encoding: the longest uvarint and one byte.
const RECORD_HEAD: usize = 11;

impl ChunkReader {
    /// Opens every numerically named segment in `dir`, in numeric order, checking headers.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            // Prometheus indexes segments by position among numeric names and ignores the rest.
            if let Some(n) = name.to_str().and_then(|s| s.parse::<u64>().ok()) {
                names.push((n, entry.path()));
            }
        }
        names.sort();
        let mut segments = Vec::with_capacity(names.len());
        for (_, path) in names {
            let file = File::open(&path).map_err(io_err(&path))?;
            let size = file.metadata().map_err(io_err(&path))?.len();
            let mut header = [0u8; SEGMENT_HEADER_SIZE as usize];
            let got = read_at(&file, &mut header, 0).map_err(io_err(&path))?;
            let what = path.display().to_string();
            let mut d = Decoder::new(&header[..got], &what);
            let magic = d.be_u32()?;
            if magic != SEGMENT_MAGIC {
                return Err(corrupt(what, format!("bad magic {magic:#010x}")));
            }
            let version = d.u8()?;
            if version != SEGMENT_VERSION {
                return Err(corrupt(what, format!("unsupported version {version}")));
            }
            segments.push((path, file, size));
        }
        Ok(Self { segments })
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// Returns the encoding and data of the chunk at `chunk_ref`, CRC verified.
    pub fn chunk(&self, chunk_ref: u64) -> Result<(u8, Vec<u8>)> {
        let what = format!("chunk {chunk_ref:#x}");
        let segment = (chunk_ref >> 32) as usize;
        let offset = chunk_ref & 0xffff_ffff;
        let (path, file, size) = self
            .segments
            .get(segment)
            .ok_or_else(|| corrupt(&what, format!("no segment {segment}")))?;
        if offset < SEGMENT_HEADER_SIZE {
            return Err(corrupt(&what, "offset inside segment header"));
        }
        let past_end = || corrupt(&what, "record runs past the end of its segment");
        let mut head = [0u8; RECORD_HEAD];
        let got = read_at(file, &mut head, offset).map_err(io_err(path))?;
        let mut d = Decoder::new(&head[..got], &what);
        let len = d.uvarint()?;
        let encoding = d.u8()?;
        let start = offset + (got - d.remaining()) as u64;
        // Data, then the CRC32C of encoding and data.
        let with_crc = len.checked_add(4).ok_or_else(past_end)?;
        if start.checked_add(with_crc).is_none_or(|end| end > *size) {
            return Err(past_end());
        }
        let mut data = vec![0u8; with_crc as usize];
        let got = read_at(file, &mut data, start).map_err(io_err(path))?;
        if got != data.len() {
            return Err(past_end());
        }
        let crc = data.split_off(len as usize);
        let stored = u32::from_be_bytes(crc[..].try_into().expect("four bytes"));
        let computed = crc32c::crc32c_append(crc32c::crc32c(&[encoding]), &data);
        if computed != stored {
            return Err(Error::Checksum {
                what,
                stored,
                computed,
            });
        }
        Ok((encoding, data))
    }
}

/// Fills as much of `buf` as the file holds from `offset` on; returns how much that was.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::{ENCODING_XOR, XorAppender, iter_xor};

    fn chunk(i: i64) -> Box<[u8]> {
        let mut app = XorAppender::new();
        for j in 0..(i % 130 + 1) {
            app.append(i * 1000 + j, (i * j) as f64);
        }
        app.into_bytes()
    }

    #[test]
    fn round_trip_with_segment_cuts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        let mut w = ChunkWriter::with_segment_size(&dir, 4096).unwrap();
        let chunks: Vec<_> = (0..200).map(chunk).collect();
        let refs: Vec<u64> = chunks
            .iter()
            .map(|c| w.write_chunk(ENCODING_XOR, c).unwrap())
            .collect();
        assert_eq!(refs[0], 8);
        assert!(refs.windows(2).all(|p| p[0] < p[1]), "refs increase");
        let summary = w.finish().unwrap();
        assert!(summary.segments.len() > 3);
        assert_eq!(summary.segments[0].name, "000001");
        for seg in &summary.segments {
            let meta = fs::metadata(dir.join(&seg.name)).unwrap();
            assert_eq!(meta.len(), seg.size);
            assert!(seg.size <= 4096);
        }

        let r = ChunkReader::open(&dir).unwrap();
        assert_eq!(r.num_segments(), summary.segments.len());
        for (c, &cref) in chunks.iter().zip(&refs) {
            let (enc, data) = r.chunk(cref).unwrap();
            assert_eq!(enc, ENCODING_XOR);
            assert_eq!(&data[..], &**c);
            assert!(iter_xor(&data).count() > 0);
        }
        let raw = fs::read(dir.join("000001")).unwrap();
        assert_eq!(&raw[..8], &[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
        assert!(r.chunk(chunk_ref(99, 8)).is_err());
        assert!(r.chunk(chunk_ref(0, 3)).is_err());
    }

    #[test]
    fn record_layout_and_crc_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("chunks");
        let mut w = ChunkWriter::create(&dir).unwrap();
        let cref = w.write_chunk(ENCODING_XOR, &[0, 0]).unwrap();
        w.finish().unwrap();
        let path = dir.join("000001");
        let mut raw = fs::read(&path).unwrap();
        let crc = crc32c::crc32c(&[1, 0, 0]).to_be_bytes();
        assert_eq!(&raw[8..], &[2, 1, 0, 0, crc[0], crc[1], crc[2], crc[3]]);
        raw[10] = 7;
        fs::write(&path, &raw).unwrap();
        let r = ChunkReader::open(&dir).unwrap();
        assert!(matches!(r.chunk(cref), Err(Error::Checksum { .. })));
    }
}

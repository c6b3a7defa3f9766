//! Index file, format version 2.
//!
//! Sections: header, symbol table, series (16-byte aligned), postings (4-byte aligned,
//! all-postings list first), postings offset table, TOC. Label-index sections are not
//! written, as in Prometheus ≥ 3.7; version-2 readers only use the postings offset table.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::encoding::{Decoder, check_crc, put_str, put_uvarint, put_varint, section};
use crate::error::{Error, Result, corrupt, io_err};

/// Magic number opening the index file.
pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
/// Index format version written (Thanos' index-header accepts only 1 and 2).
pub const INDEX_VERSION: u8 = 2;
/// Size of the table of contents at the end of the file.
pub const TOC_SIZE: usize = 6 * 8 + 4;
/// Header length; the symbol table starts here.
const HEADER_SIZE: u64 = 5;

/// A chunk as the index describes it: closed time range and segment reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// First sample timestamp (inclusive).
    pub min_time: i64,
    /// Last sample timestamp (inclusive).
    pub max_time: i64,
    /// Reference into the chunk segment files.
    pub chunk_ref: u64,
}

/// Absolute offsets of the index sections (0 = absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toc {
    /// Symbol table.
    pub symbols: u64,
    /// First series (before its alignment padding).
    pub series: u64,
    /// Label indices (never written here; points right after the series).
    pub label_indices: u64,
    /// Label offset table (never written here; equals `postings_offset_table`).
    pub label_offset_table: u64,
    /// First postings list.
    pub postings: u64,
    /// Postings offset table.
    pub postings_offset_table: u64,
}

/// What [`IndexWriter::finish`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSummary {
    /// File size in bytes.
    pub size: u64,
    /// Number of series written.
    pub num_series: u64,
    /// Largest series entry in bytes, for Thanos' `index_stats.series_max_size`.
    pub series_max_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Symbols,
    Series,
}

/// Streams an index file: symbols (ascending), then series (ascending label sets), then `finish`.
pub struct IndexWriter {
    path: PathBuf,
    w: BufWriter<File>,
    pos: u64,
    stage: Stage,
    symbols: Vec<Box<str>>,
    toc: Toc,
    /// Postings keyed by symbol ordinals; ordinal order equals bytewise string order.
    postings: BTreeMap<(u32, u32), Vec<u32>>,
    all: Vec<u32>,
    last_labels: Vec<(u32, u32)>,
    last_chunk_ref: u64,
    series_max_size: u64,
    buf: Vec<u8>,
}

impl IndexWriter {
    /// Creates the file at `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut w = Self {
            path: path.to_path_buf(),
            w: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            stage: Stage::Symbols,
            symbols: Vec::new(),
            toc: Toc::default(),
            postings: BTreeMap::new(),
            all: Vec::new(),
            last_labels: Vec::new(),
            last_chunk_ref: 0,
            series_max_size: 0,
            buf: Vec::new(),
        };
        let mut header = INDEX_MAGIC.to_be_bytes().to_vec();
        header.push(INDEX_VERSION);
        w.write(&header)?;
        Ok(w)
    }

    /// Adds a symbol; symbols must be strictly ascending (bytewise) and come before any series.
    pub fn add_symbol(&mut self, symbol: &str) -> Result<()> {
        if self.stage != Stage::Symbols {
            return Err(Error::InvalidInput(
                "symbols must be added before series".into(),
            ));
        }
        if let Some(last) = self.symbols.last()
            && symbol <= &**last
        {
            return Err(Error::InvalidInput(format!(
                "symbol {symbol:?} not after {last:?}"
            )));
        }
        self.symbols.push(symbol.into());
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(io_err(&self.path))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, align: u64) -> Result<()> {
        let n = (align - self.pos % align) % align;
        self.write(&[0u8; 16][..n as usize])
    }

    /// Writes `len u32 | body | crc` from `self.buf`.
    fn write_section_from_buf(&mut self) -> Result<()> {
        let len = u32::try_from(self.buf.len())
            .map_err(|_| Error::InvalidInput("index section exceeds 4 GiB".into()))?;
        let crc = crc32c::crc32c(&self.buf);
        let body = std::mem::take(&mut self.buf);
        self.write(&len.to_be_bytes())?;
        self.write(&body)?;
        self.write(&crc.to_be_bytes())?;
        self.buf = body;
        Ok(())
    }

    fn write_symbols(&mut self) -> Result<()> {
        self.toc.symbols = self.pos;
        let count = u32::try_from(self.symbols.len())
            .map_err(|_| Error::InvalidInput("too many symbols".into()))?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&count.to_be_bytes());
        for s in &self.symbols {
            put_str(&mut buf, s);
        }
        self.buf = buf;
        self.write_section_from_buf()?;
        self.stage = Stage::Series;
        self.toc.series = self.pos;
        Ok(())
    }

    fn symbol_ref(&self, s: &str) -> Result<u32> {
        self.symbols
            .binary_search_by(|x| (**x).cmp(s))
            .map(|i| i as u32)
            .map_err(|_| Error::InvalidInput(format!("{s:?} missing from the symbol table")))
    }

    /// Resolves labels to symbol ordinals, checking they are sorted by name and that the
    /// set sorts after the previous series, so callers can validate before writing chunks.
    pub fn check_labels(&self, labels: &[(&str, &str)]) -> Result<Vec<(u32, u32)>> {
        if labels.is_empty() {
            return Err(Error::InvalidInput("series without labels".into()));
        }
        let mut refs = Vec::with_capacity(labels.len());
        for &(name, value) in labels {
            refs.push((self.symbol_ref(name)?, self.symbol_ref(value)?));
        }
        if refs.windows(2).any(|p| p[0].0 >= p[1].0) {
            return Err(Error::InvalidInput(format!(
                "labels {labels:?} not strictly sorted by name"
            )));
        }
        // Lexicographic order of ordinal pairs is exactly labels.Compare.
        if !self.all.is_empty() && refs <= self.last_labels {
            return Err(Error::InvalidInput(format!(
                "series {labels:?} out of order or duplicate"
            )));
        }
        Ok(refs)
    }

    /// Adds a series (labels sorted by name) with its chunks (ascending, non-overlapping)
    /// and returns its series ID; label sets must be strictly ascending (`labels.Compare`).
    pub fn add_series(&mut self, labels: &[(&str, &str)], chunks: &[ChunkMeta]) -> Result<u32> {
        if self.stage == Stage::Symbols {
            self.write_symbols()?;
        }
        let refs = self.check_labels(labels)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        put_uvarint(&mut buf, refs.len() as u64);
        for &(n, v) in &refs {
            put_uvarint(&mut buf, u64::from(n));
            put_uvarint(&mut buf, u64::from(v));
        }
        put_uvarint(&mut buf, chunks.len() as u64);
        let mut prev: Option<&ChunkMeta> = None;
        for c in chunks {
            if c.min_time > c.max_time {
                return Err(Error::InvalidInput(format!(
                    "chunk [{}, {}] of {labels:?} has min > max",
                    c.min_time, c.max_time
                )));
            }
            if c.chunk_ref < self.last_chunk_ref {
                return Err(Error::InvalidInput(format!(
                    "chunk ref {:#x} of {labels:?} below previous {:#x}",
                    c.chunk_ref, self.last_chunk_ref
                )));
            }
            match prev {
                None => {
                    put_varint(&mut buf, c.min_time);
                    put_uvarint(&mut buf, c.max_time.wrapping_sub(c.min_time) as u64);
                    put_uvarint(&mut buf, c.chunk_ref);
                }
                Some(p) => {
                    if c.min_time <= p.max_time {
                        return Err(Error::InvalidInput(format!(
                            "chunk [{}, {}] of {labels:?} overlaps previous ending {}",
                            c.min_time, c.max_time, p.max_time
                        )));
                    }
                    put_uvarint(&mut buf, c.min_time.wrapping_sub(p.max_time) as u64);
                    put_uvarint(&mut buf, c.max_time.wrapping_sub(c.min_time) as u64);
                    put_varint(&mut buf, c.chunk_ref.wrapping_sub(p.chunk_ref) as i64);
                }
            }
            self.last_chunk_ref = c.chunk_ref;
            prev = Some(c);
        }

        self.pad(16)?;
        let id = u32::try_from(self.pos / 16)
            .map_err(|_| Error::InvalidInput("index series section exceeds 64 GiB".into()))?;
        let mut len = Vec::with_capacity(5);
        put_uvarint(&mut len, buf.len() as u64);
        let crc = crc32c::crc32c(&buf);
        let start = self.pos;
        self.write(&len)?;
        self.write(&buf)?;
        self.write(&crc.to_be_bytes())?;
        self.series_max_size = self.series_max_size.max(self.pos - start);
        self.buf = buf;

        for &key in &refs {
            self.postings.entry(key).or_default().push(id);
        }
        self.all.push(id);
        self.last_labels = refs;
        Ok(id)
    }

    fn write_postings_list(&mut self, ids: &[u32]) -> Result<u64> {
        self.pad(4)?;
        let off = self.pos;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            buf.extend_from_slice(&id.to_be_bytes());
        }
        self.buf = buf;
        self.write_section_from_buf()?;
        Ok(off)
    }

    /// Writes postings, the postings offset table and the TOC, then fsyncs the file.
    pub fn finish(mut self) -> Result<IndexSummary> {
        if self.stage == Stage::Symbols {
            self.write_symbols()?;
        }
        self.toc.label_indices = self.pos;
        self.pad(4)?;
        self.toc.postings = self.pos;

        let mut table = Vec::new();
        let mut entries = 0u32;
        let all = std::mem::take(&mut self.all);
        let off = self.write_postings_list(&all)?;
        push_offset_entry(&mut table, "", "", off);
        entries += 1;
        let postings = std::mem::take(&mut self.postings);
        for (&(n, v), ids) in &postings {
            let off = self.write_postings_list(ids)?;
            let (name, value) = (&*self.symbols[n as usize], &*self.symbols[v as usize]);
            push_offset_entry(&mut table, name, value, off);
            entries = entries
                .checked_add(1)
                .ok_or_else(|| Error::InvalidInput("too many postings lists".into()))?;
        }

        self.toc.postings_offset_table = self.pos;
        self.toc.label_offset_table = self.pos;
        self.buf.clear();
        self.buf.extend_from_slice(&entries.to_be_bytes());
        self.buf.extend_from_slice(&table);
        self.write_section_from_buf()?;

        let toc = self.toc;
        let mut b = Vec::with_capacity(TOC_SIZE);
        for v in [
            toc.symbols,
            toc.series,
            toc.label_indices,
            toc.label_offset_table,
            toc.postings,
            toc.postings_offset_table,
        ] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        self.write(&b)?;

        let file = self.w.into_inner().map_err(|e| Error::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&self.path))?;
        Ok(IndexSummary {
            size: self.pos,
            num_series: all.len() as u64,
            series_max_size: self.series_max_size,
        })
    }
}

/// Appends one postings offset table entry: `2 | name | value | offset`.
fn push_offset_entry(table: &mut Vec<u8>, name: &str, value: &str, off: u64) {
    put_uvarint(table, 2);
    put_str(table, name);
    put_str(table, value);
    put_uvarint(table, off);
}

/// A series entry read back from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesEntry {
    /// Label pairs sorted by name.
    pub labels: Vec<(String, String)>,
    /// Chunk metas in time order.
    pub chunks: Vec<ChunkMeta>,
}

/// In-memory reader of a version 2 index, checking every CRC it touches.
#[derive(Debug)]
pub struct IndexReader {
    data: Vec<u8>,
    version: u8,
    toc: Toc,
    symbols: Vec<String>,
    /// (name, value, offset of the postings list), in file order.
    postings: Vec<(String, String, u64)>,
}

impl IndexReader {
    /// Reads and parses the index file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(io_err(path))?;
        Self::from_bytes(data)
    }

    /// Parses an index held in memory.
    pub fn from_bytes(data: Vec<u8>) -> Result<Self> {
        let mut d = Decoder::new(&data, "index header");
        let magic = d.be_u32()?;
        if magic != INDEX_MAGIC {
            return Err(corrupt("index header", format!("bad magic {magic:#010x}")));
        }
        let version = d.u8()?;
        if version != 2 {
            return Err(corrupt(
                "index header",
                format!("unsupported index version {version}"),
            ));
        }
        let toc_start = data
            .len()
            .checked_sub(TOC_SIZE)
            .filter(|&s| s as u64 >= HEADER_SIZE)
            .ok_or_else(|| corrupt("index", "file too short for a TOC"))?;
        let toc_bytes = &data[toc_start..];
        let mut d = Decoder::new(toc_bytes, "index TOC");
        let mut f = [0u64; 6];
        for x in &mut f {
            *x = d.be_u64()?;
        }
        check_crc("index TOC", &toc_bytes[..48], d.be_u32()?)?;
        let toc = Toc {
            symbols: f[0],
            series: f[1],
            label_indices: f[2],
            label_offset_table: f[3],
            postings: f[4],
            postings_offset_table: f[5],
        };

        let body = section(&data, toc.symbols, "index symbol table")?;
        let mut d = Decoder::new(body, "index symbol table");
        let count = d.be_u32()?;
        let mut symbols = Vec::with_capacity((count as usize).min(body.len()));
        for _ in 0..count {
            symbols.push(d.str()?.to_string());
        }

        let body = section(
            &data,
            toc.postings_offset_table,
            "index postings offset table",
        )?;
        let mut d = Decoder::new(body, "index postings offset table");
        let count = d.be_u32()?;
        let mut postings = Vec::with_capacity((count as usize).min(body.len()));
        for _ in 0..count {
            let keys = d.uvarint()?;
            if keys != 2 {
                return Err(corrupt(
                    "index postings offset table",
                    format!("entry with {keys} keys"),
                ));
            }
            let name = d.str()?.to_string();
            let value = d.str()?.to_string();
            let off = d.uvarint()?;
            postings.push((name, value, off));
        }
        Ok(Self {
            data,
            version,
            toc,
            symbols,
            postings,
        })
    }

    /// Bytes of the index held in memory.
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    /// Format version from the header.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Section offsets.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The sorted symbol table.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Resolves a symbol ordinal.
    pub fn symbol(&self, r: u32) -> Result<&str> {
        self.symbols
            .get(r as usize)
            .map(String::as_str)
            .ok_or_else(|| corrupt("index", format!("symbol ref {r} out of range")))
    }

    /// Reads the series with the given ID (its offset / 16).
    pub fn series(&self, id: u32) -> Result<SeriesEntry> {
        let what = format!("index series {id}");
        let mut d = Decoder::new(&self.data, &what);
        d.skip(u64::from(id) * 16)?;
        let len = d.uvarint()?;
        let body = d.bytes(len)?;
        check_crc(&what, body, d.be_u32()?)?;
        let mut d = Decoder::new(body, &what);
        let n = d.uvarint()?;
        let mut labels = Vec::with_capacity((n as usize).min(body.len()));
        for _ in 0..n {
            let name = self.symbol(d.uvarint32()?)?.to_string();
            let value = self.symbol(d.uvarint32()?)?.to_string();
            labels.push((name, value));
        }
        let n = d.uvarint()?;
        let mut chunks: Vec<ChunkMeta> = Vec::with_capacity((n as usize).min(body.len()));
        for _ in 0..n {
            let c = match chunks.last() {
                None => {
                    let min_time = d.varint()?;
                    let max_time = min_time.wrapping_add(d.uvarint()? as i64);
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref: d.uvarint()?,
                    }
                }
                Some(p) => {
                    let min_time = p.max_time.wrapping_add(d.uvarint()? as i64);
                    let max_time = min_time.wrapping_add(d.uvarint()? as i64);
                    ChunkMeta {
                        min_time,
                        max_time,
                        chunk_ref: p.chunk_ref.wrapping_add(d.varint()? as u64),
                    }
                }
            };
            chunks.push(c);
        }
        if d.remaining() != 0 {
            return Err(corrupt(what, "trailing bytes in series entry"));
        }
        Ok(SeriesEntry { labels, chunks })
    }

    fn read_postings(&self, off: u64) -> Result<Vec<u32>> {
        let what = format!("index postings list at {off}");
        let body = section(&self.data, off, &what)?;
        let mut d = Decoder::new(body, &what);
        let n = d.be_u32()?;
        if u64::from(n) * 4 != d.remaining() as u64 {
            return Err(corrupt(what, "entry count does not match length"));
        }
        (0..n).map(|_| d.be_u32()).collect()
    }

    /// Series IDs having label `name="value"` (empty if none).
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>> {
        match self
            .postings
            .binary_search_by(|(n, v, _)| (n.as_str(), v.as_str()).cmp(&(name, value)))
        {
            Ok(i) => self.read_postings(self.postings[i].2),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// IDs of all series, from the `("", "")` postings list.
    pub fn all_postings(&self) -> Result<Vec<u32>> {
        self.postings("", "")
    }

    /// Label names in ascending order.
    pub fn label_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .postings
            .iter()
            .map(|(n, _, _)| n.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        names.dedup();
        names
    }

    /// Values of label `name` in ascending order.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        // The table is sorted by name, then value.
        let from = self.postings.partition_point(|(n, _, _)| n.as_str() < name);
        self.postings[from..]
            .iter()
            .take_while(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
        ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        }
    }

    fn write_sample(path: &Path) -> IndexSummary {
        let mut w = IndexWriter::create(path).unwrap();
        for s in ["__name__", "a", "b", "job", "up", "x", "y"] {
            w.add_symbol(s).unwrap();
        }
        let id0 = w
            .add_series(
                &[("__name__", "up"), ("job", "a")],
                &[cm(-5, 10, 8), cm(11, 20, 30), cm(100, 100, 50)],
            )
            .unwrap();
        let id1 = w
            .add_series(&[("__name__", "up"), ("job", "b")], &[cm(0, 1, 70)])
            .unwrap();
        // A prefix-equal shorter set sorts first, so ("x") after ("__name__", ..) is fine.
        let id2 = w.add_series(&[("x", "y")], &[]).unwrap();
        assert!(id0 < id1 && id1 < id2);
        w.finish().unwrap()
    }

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index");
        let summary = write_sample(&path);
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(summary.size, raw.len() as u64);
        assert_eq!(summary.num_series, 3);
        assert_eq!(&raw[..5], &[0xBA, 0xAA, 0xD7, 0x00, 2]);

        let r = IndexReader::open(&path).unwrap();
        assert_eq!(r.version(), 2);
        assert_eq!(r.toc().symbols, 5);
        assert_eq!(r.symbols(), ["__name__", "a", "b", "job", "up", "x", "y"]);
        assert_eq!(r.toc().postings % 4, 0);
        assert_eq!(r.toc().label_offset_table, r.toc().postings_offset_table);
        let all = r.all_postings().unwrap();
        assert_eq!(all.len(), 3);
        // The first series starts at the first 16-byte boundary after the symbol table.
        assert_eq!(u64::from(all[0]) * 16, r.toc().series.div_ceil(16) * 16);
        let s = r.series(all[0]).unwrap();
        assert_eq!(
            s.labels,
            [("__name__".into(), "up".into()), ("job".into(), "a".into())]
        );
        assert_eq!(s.chunks, [cm(-5, 10, 8), cm(11, 20, 30), cm(100, 100, 50)]);
        assert_eq!(r.series(all[1]).unwrap().chunks, [cm(0, 1, 70)]);
        assert!(r.series(all[2]).unwrap().chunks.is_empty());
        assert_eq!(r.postings("__name__", "up").unwrap(), &all[..2]);
        assert_eq!(r.postings("job", "b").unwrap(), &all[1..2]);
        assert_eq!(r.postings("x", "y").unwrap(), &all[2..]);
        assert!(r.postings("job", "zzz").unwrap().is_empty());
        assert_eq!(r.label_names(), ["__name__", "job", "x"]);
        assert_eq!(r.label_values("job"), ["a", "b"]);
        // The postings offset table ends right where the TOC starts.
        let pot = r.toc().postings_offset_table as usize;
        let len = u32::from_be_bytes(raw[pot..pot + 4].try_into().unwrap()) as usize;
        assert_eq!(pot + 4 + len + 4, raw.len() - TOC_SIZE);
    }

    #[test]
    fn corrupted_crc_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index");
        write_sample(&path);
        let raw = std::fs::read(&path).unwrap();
        let r = IndexReader::from_bytes(raw.clone()).unwrap();
        let id = r.all_postings().unwrap()[0];

        // Flip a byte inside the first series entry: its CRC check must fail.
        let mut bad = raw.clone();
        bad[id as usize * 16 + 2] ^= 0x01;
        let r = IndexReader::from_bytes(bad).unwrap();
        assert!(matches!(r.series(id), Err(Error::Checksum { .. })));

        // A damaged symbol table or TOC fails at open.
        let mut bad = raw.clone();
        bad[12] ^= 0x20;
        assert!(matches!(
            IndexReader::from_bytes(bad),
            Err(Error::Checksum { .. })
        ));
        let mut bad = raw.clone();
        let n = bad.len();
        bad[n - 10] ^= 0xff;
        assert!(matches!(
            IndexReader::from_bytes(bad),
            Err(Error::Checksum { .. })
        ));
        assert!(IndexReader::from_bytes(raw[..20].to_vec()).is_err());
    }

    #[test]
    fn writer_rejects_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = IndexWriter::create(&tmp.path().join("index")).unwrap();
        w.add_symbol("a").unwrap();
        assert!(w.add_symbol("a").is_err());
        w.add_symbol("b").unwrap();
        w.add_symbol("c").unwrap();
        assert!(w.add_series(&[("a", "zz")], &[]).is_err(), "unknown symbol");
        assert!(
            w.add_series(&[("b", "a"), ("a", "a")], &[]).is_err(),
            "unsorted labels"
        );
        w.add_series(&[("a", "b")], &[cm(0, 10, 100)]).unwrap();
        assert!(w.add_series(&[("a", "b")], &[]).is_err(), "duplicate");
        assert!(w.add_series(&[("a", "a")], &[]).is_err(), "descending");
        assert!(
            w.add_series(&[("a", "c")], &[cm(0, 1, 99)]).is_err(),
            "ref backwards"
        );
        assert!(
            w.add_series(&[("a", "c")], &[cm(5, 1, 200)]).is_err(),
            "min > max"
        );
        assert!(
            w.add_series(&[("a", "c")], &[cm(0, 5, 200), cm(5, 9, 300)])
                .is_err(),
            "overlap"
        );
        assert!(w.add_symbol("d").is_err(), "symbols after series");
        w.add_series(&[("a", "c")], &[cm(0, 5, 200), cm(6, 9, 300)])
            .unwrap();
        w.finish().unwrap();
    }
}

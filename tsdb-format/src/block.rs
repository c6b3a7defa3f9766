//! Block directories: [`BlockWriter`] cuts a Prometheus/Thanos-compatible block,
//! [`Block`] reads one back.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ulid::Ulid;

use crate::chunkenc::{self, ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR, iter_xor};
use crate::chunks::{ChunkReader, ChunkWriter};
use crate::error::{Error, Result, corrupt, io_err};
use crate::fsutil::sync_dir;
use crate::histogram::FloatHistogram;
use crate::index::{ChunkMeta, IndexReader, IndexWriter};
use crate::meta::{
    BlockMeta, BlockStats, Compaction, IndexStats, META_FILENAME, META_VERSION, THANOS_VERSION,
    ThanosDownsample, ThanosFile, ThanosMeta, read_meta, write_meta,
};
use crate::tombstones::{self, Tombstone};

/// Suffix of the directory a block is built in before the final rename (as Prometheus uses).
pub const TMP_SUFFIX: &str = ".tmp-for-creation";
/// Name of the chunk segment directory.
pub const CHUNKS_DIR: &str = "chunks";
/// Name of the index file.
pub const INDEX_FILENAME: &str = "index";
/// `thanos.source` written for blocks cut by this crate.
pub const THANOS_SOURCE: &str = "receive";

struct Writers {
    chunks: ChunkWriter,
    index: IndexWriter,
}

/// Writes one block: symbols, then series in `labels.Compare` order, then [`BlockWriter::finish`].
///
/// Everything goes to `<parent>/<ULID>.tmp-for-creation/`, which `finish` renames to
/// `<parent>/<ULID>/`; dropping an unfinished writer removes the temporary directory.
pub struct BlockWriter {
    parent: PathBuf,
    tmp_dir: PathBuf,
    ulid: Ulid,
    min_time: i64,
    max_time: i64,
    writers: Option<Writers>,
    stats: BlockStats,
    metas: Vec<ChunkMeta>,
}

impl BlockWriter {
    /// Starts a block covering `[min_time, max_time)` in `parent`, replacing a stale temp dir.
    pub fn create(parent: &Path, ulid: Ulid, min_time: i64, max_time: i64) -> Result<Self> {
        if min_time >= max_time {
            return Err(Error::InvalidInput(format!(
                "empty block range [{min_time}, {max_time})"
            )));
        }
        let tmp_dir = parent.join(format!("{ulid}{TMP_SUFFIX}"));
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        }
        fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        // Build the writer first so Drop cleans up if opening the files fails.
        let mut w = Self {
            parent: parent.to_path_buf(),
            tmp_dir,
            ulid,
            min_time,
            max_time,
            writers: None,
            stats: BlockStats::default(),
            metas: Vec::new(),
        };
        let chunks = ChunkWriter::create(&w.tmp_dir.join(CHUNKS_DIR))?;
        let index = IndexWriter::create(&w.tmp_dir.join(INDEX_FILENAME))?;
        w.writers = Some(Writers { chunks, index });
        Ok(w)
    }

    /// The block's ULID.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    fn writers(&mut self) -> Result<&mut Writers> {
        self.writers
            .as_mut()
            .ok_or_else(|| Error::InvalidInput("block writer already finished".into()))
    }

    /// Adds symbols (every label name and value used), strictly ascending bytewise;
    /// may be called repeatedly, but only before the first series.
    pub fn add_symbols<I>(&mut self, symbols: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let w = self.writers()?;
        for s in symbols {
            w.index.add_symbol(s.as_ref())?;
        }
        Ok(())
    }

    /// Adds a series of XOR chunks `(min_time, max_time, bytes)`; see [`Self::add_series_encoded`].
    pub fn add_series(
        &mut self,
        labels: &[(&str, &str)],
        chunks: &[(i64, i64, &[u8])],
    ) -> Result<()> {
        let encoded: Vec<(i64, i64, u8, &[u8])> = chunks
            .iter()
            .map(|&(min, max, data)| (min, max, ENCODING_XOR, data))
            .collect();
        self.add_series_encoded(labels, &encoded)
    }

    /// Adds a series: labels sorted by name, label sets ascending across calls, chunks as
    /// `(min_time, max_time, encoding, bytes)` in time order, non-overlapping and inside the
    /// block; encodings XOR, histogram or float histogram.
    ///
    /// Input errors are detected before anything is written, so the caller may skip the
    /// series and go on. A series without chunks is skipped, as Prometheus compaction does.
    pub fn add_series_encoded(
        &mut self,
        labels: &[(&str, &str)],
        chunks: &[(i64, i64, u8, &[u8])],
    ) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let (block_min, block_max) = (self.min_time, self.max_time);
        let (mut floats, mut histograms) = (0u64, 0u64);
        let mut prev_max = None;
        for &(mint, maxt, encoding, data) in chunks {
            let bad = |why: &str| {
                Error::InvalidInput(format!("chunk [{mint}, {maxt}] of {labels:?}: {why}"))
            };
            if mint > maxt {
                return Err(bad("min_time > max_time"));
            }
            if mint < block_min || maxt >= block_max {
                return Err(bad(&format!(
                    "outside block range [{block_min}, {block_max})"
                )));
            }
            if prev_max.is_some_and(|p| mint <= p) {
                return Err(bad("overlaps or precedes the previous chunk"));
            }
            let n = chunkenc::num_samples(data).map_err(|e| bad(&e.to_string()))?;
            // The first timestamp is cheap to check and catches swapped or stale metadata.
            match chunkenc::first_time(encoding, data) {
                Some(t) if n > 0 && t == mint => {}
                _ => {
                    return Err(bad(
                        "data is empty, of an unknown encoding, or does not start at min_time",
                    ));
                }
            }
            if encoding == ENCODING_XOR {
                floats += u64::from(n);
            } else {
                histograms += u64::from(n);
            }
            prev_max = Some(maxt);
        }
        let mut metas = std::mem::take(&mut self.metas);
        metas.clear();
        let w = self.writers()?;
        w.index.check_labels(labels)?;
        for &(min_time, max_time, encoding, data) in chunks {
            let chunk_ref = w.chunks.write_chunk(encoding, data)?;
            metas.push(ChunkMeta {
                min_time,
                max_time,
                chunk_ref,
            });
        }
        w.index.add_series(labels, &metas)?;
        self.metas = metas;
        self.stats.num_series += 1;
        self.stats.num_chunks += chunks.len() as u64;
        self.stats.num_samples += floats + histograms;
        self.stats.num_float_samples += floats;
        self.stats.num_histogram_samples += histograms;
        Ok(())
    }

    /// Writes index, tombstones and meta.json (with a Thanos section carrying `thanos_labels`),
    /// fsyncs everything and renames the block into place. Empty blocks are written too;
    /// Prometheus would skip them, so callers may want to check first. Thanos' `block.Upload`
    /// refuses blocks whose labels are empty.
    pub fn finish(mut self, thanos_labels: BTreeMap<String, String>) -> Result<BlockMeta> {
        let Writers { chunks, index } = self
            .writers
            .take()
            .ok_or_else(|| Error::InvalidInput("block writer already finished".into()))?;
        let chunks = chunks.finish()?;
        let index = index.finish()?;
        tombstones::write(&self.tmp_dir, &[])?;

        let mut files: Vec<ThanosFile> = chunks
            .segments
            .iter()
            .map(|s| ThanosFile {
                rel_path: format!("{CHUNKS_DIR}/{}", s.name),
                size_bytes: s.size,
            })
            .collect();
        files.push(ThanosFile {
            rel_path: INDEX_FILENAME.into(),
            size_bytes: index.size,
        });
        files.push(ThanosFile {
            rel_path: META_FILENAME.into(),
            size_bytes: 0,
        });
        files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));

        let meta = BlockMeta {
            ulid: self.ulid,
            min_time: self.min_time,
            max_time: self.max_time,
            stats: self.stats.clone(),
            compaction: Compaction {
                level: 1,
                sources: vec![self.ulid],
                ..Compaction::default()
            },
            version: META_VERSION,
            thanos: Some(ThanosMeta {
                version: THANOS_VERSION,
                labels: thanos_labels,
                downsample: ThanosDownsample { resolution: 0 },
                source: THANOS_SOURCE.into(),
                files,
                index_stats: IndexStats {
                    series_max_size: index.series_max_size,
                    chunk_max_size: chunks.max_record_size,
                },
                upload_time: None,
            }),
        };
        write_meta(&self.tmp_dir, &meta)?;
        sync_dir(&self.tmp_dir)?;

        let dir = self.parent.join(self.ulid.to_string());
        if dir.exists() {
            return Err(Error::Io {
                path: dir,
                source: std::io::ErrorKind::AlreadyExists.into(),
            });
        }
        fs::rename(&self.tmp_dir, &dir).map_err(io_err(&dir))?;
        sync_dir(&self.parent)?;
        Ok(meta)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // After a successful finish the temp dir no longer exists; otherwise discard the
        // partial block. Best effort: a leftover is also removed by the next create.
        if self.tmp_dir.exists() {
            let _ = fs::remove_dir_all(&self.tmp_dir);
        }
    }
}

/// A series with its decoded samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// Label pairs sorted by name.
    pub labels: Vec<(String, String)>,
    /// Float samples in time order.
    pub samples: Vec<(i64, f64)>,
    /// Native histograms in time order (integer ones with float counts).
    pub histograms: Vec<(i64, FloatHistogram)>,
}

/// A block opened for reading: the index is held in memory, chunks are read on demand.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Vec<Tombstone>,
}

impl Block {
    /// Opens the block directory `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            meta: read_meta(dir)?,
            index: IndexReader::open(&dir.join(INDEX_FILENAME))?,
            chunks: ChunkReader::open(&dir.join(CHUNKS_DIR))?,
            tombstones: tombstones::read(dir)?,
        })
    }

    /// Block directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Parsed meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Index reader.
    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    /// Chunk reader.
    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    /// Tombstones (not applied by [`Block::read_series`]).
    pub fn tombstones(&self) -> &[Tombstone] {
        &self.tombstones
    }

    /// Reads series `id` and decodes its chunks, checking samples lie inside each chunk's range.
    pub fn read_series(&self, id: u32) -> Result<SeriesSamples> {
        let entry = self.index.series(id)?;
        let mut samples = Vec::new();
        let mut histograms = Vec::new();
        for c in &entry.chunks {
            let (encoding, data) = self.chunks.chunk(c.chunk_ref)?;
            let what = || format!("chunk {:#x} of series {id}", c.chunk_ref);
            let inside = |t: i64| {
                if t < c.min_time || t > c.max_time {
                    return Err(corrupt(
                        what(),
                        format!("sample at {t} outside [{}, {}]", c.min_time, c.max_time),
                    ));
                }
                Ok(())
            };
            match encoding {
                ENCODING_XOR => {
                    let mut it = iter_xor(&data);
                    for (t, v) in it.by_ref() {
                        inside(t)?;
                        samples.push((t, v));
                    }
                    if let Some(e) = it.err() {
                        return Err(Error::Chunk(e.clone()));
                    }
                }
                ENCODING_HISTOGRAM => {
                    let mut it = chunkenc::iter_histogram(&data);
                    for (t, h) in it.by_ref() {
                        inside(t)?;
                        histograms.push((t, h.to_float()));
                    }
                    if let Some(e) = it.err() {
                        return Err(Error::Chunk(e.clone()));
                    }
                }
                ENCODING_FLOAT_HISTOGRAM => {
                    let mut it = chunkenc::iter_float_histogram(&data);
                    for (t, h) in it.by_ref() {
                        inside(t)?;
                        histograms.push((t, h));
                    }
                    if let Some(e) = it.err() {
                        return Err(Error::Chunk(e.clone()));
                    }
                }
                _ => return Err(corrupt(what(), format!("unsupported encoding {encoding}"))),
            }
        }
        Ok(SeriesSamples {
            labels: entry.labels,
            samples,
            histograms,
        })
    }

    /// All series in index order with decoded samples.
    pub fn series(&self) -> Result<impl Iterator<Item = Result<SeriesSamples>> + '_> {
        let ids = self.index.all_postings()?;
        Ok(ids.into_iter().map(|id| self.read_series(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorAppender;

    const H2: i64 = 2 * 3600 * 1000;

    fn xor(samples: &[(i64, f64)]) -> Box<[u8]> {
        let mut app = XorAppender::new();
        for &(t, v) in samples {
            app.append(t, v);
        }
        app.into_bytes()
    }

    fn labels(ls: &[(String, String)]) -> Vec<(&str, &str)> {
        ls.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    #[test]
    fn write_and_read_block() {
        let tmp = tempfile::tempdir().unwrap();
        let ulid = Ulid::generate();
        let mut w = BlockWriter::create(tmp.path(), ulid, 0, H2).unwrap();
        assert!(tmp.path().join(format!("{ulid}.tmp-for-creation")).is_dir());
        w.add_symbols(["__name__", "a", "b", "job", "up"]).unwrap();
        let c1 = xor(&[(0, 1.0), (1000, 2.0)]);
        let c2 = xor(&[(5000, 3.0)]);
        let c3 = xor(&[(H2 - 1, f64::from_bits(0x7ff0_0000_0000_0002))]);
        w.add_series(
            &[("__name__", "up"), ("job", "a")],
            &[(0, 1000, &c1), (5000, 5000, &c2)],
        )
        .unwrap();
        w.add_series(&[("__name__", "up"), ("job", "b")], &[])
            .unwrap();
        w.add_series(
            &[("__name__", "up"), ("job", "b")],
            &[(H2 - 1, H2 - 1, &c3)],
        )
        .unwrap();
        let meta = w
            .finish([("tenant_id".to_string(), "t1".to_string())].into())
            .unwrap();

        let dir = tmp.path().join(ulid.to_string());
        assert!(!tmp.path().join(format!("{ulid}.tmp-for-creation")).exists());
        assert_eq!(meta.stats.num_series, 2);
        assert_eq!(meta.stats.num_chunks, 3);
        assert_eq!(meta.stats.num_samples, 4);
        assert_eq!(meta.compaction.sources, [ulid]);
        let thanos = meta.thanos.as_ref().unwrap();
        assert_eq!(thanos.source, "receive");
        let paths: Vec<_> = thanos.files.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(paths, ["chunks/000001", "index", "meta.json"]);
        for f in &thanos.files[..2] {
            assert_eq!(
                fs::metadata(dir.join(&f.rel_path)).unwrap().len(),
                f.size_bytes
            );
        }
        assert_eq!(fs::metadata(dir.join("tombstones")).unwrap().len(), 9);

        let block = Block::open(&dir).unwrap();
        assert_eq!(block.meta(), &meta);
        assert!(block.tombstones().is_empty());
        let series: Vec<_> = block.series().unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(
            labels(&series[0].labels),
            [("__name__", "up"), ("job", "a")]
        );
        assert_eq!(series[0].samples, [(0, 1.0), (1000, 2.0), (5000, 3.0)]);
        assert_eq!(series[1].samples[0].1.to_bits(), 0x7ff0_0000_0000_0002);
    }

    #[test]
    fn rejects_bad_series_and_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let ulid = Ulid::generate();
        let mut w = BlockWriter::create(tmp.path(), ulid, 1000, 2000).unwrap();
        w.add_symbols(["a", "b", "c"]).unwrap();
        let c = xor(&[(1500, 1.0)]);
        let late = xor(&[(2000, 1.0)]);
        let early = xor(&[(999, 1.0)]);
        assert!(
            w.add_series(&[("a", "b")], &[(2000, 2000, &late)]).is_err(),
            "maxt == block max"
        );
        assert!(
            w.add_series(&[("a", "b")], &[(999, 999, &early)]).is_err(),
            "before block"
        );
        assert!(
            w.add_series(&[("a", "b")], &[(1400, 1500, &c)]).is_err(),
            "mint mismatch"
        );
        assert!(
            w.add_series(&[("a", "b")], &[(1500, 1500, &c), (1500, 1500, &c)])
                .is_err(),
            "overlap"
        );
        assert!(
            w.add_series(&[("a", "b")], &[(1500, 1500, &[])]).is_err(),
            "no header"
        );
        w.add_series(&[("a", "c")], &[(1500, 1500, &c)]).unwrap();
        assert!(
            w.add_series(&[("a", "b")], &[(1500, 1500, &c)]).is_err(),
            "out of order"
        );
        assert!(
            w.add_series(&[("a", "c")], &[(1500, 1500, &c)]).is_err(),
            "duplicate"
        );
        // Rejected series wrote nothing: still one series and one chunk.
        w.add_series(&[("b", "c")], &[(1500, 1500, &c)]).unwrap();
        let meta = w.finish(BTreeMap::new()).unwrap();
        assert_eq!(meta.stats.num_series, 2);
        assert_eq!(meta.stats.num_chunks, 2);
        let block = Block::open(&tmp.path().join(ulid.to_string())).unwrap();
        assert_eq!(block.series().unwrap().count(), 2);
    }

    #[test]
    fn dropped_writer_removes_temp_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let ulid = Ulid::generate();
        let w = BlockWriter::create(tmp.path(), ulid, 0, 10).unwrap();
        drop(w);
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        assert!(BlockWriter::create(tmp.path(), ulid, 10, 10).is_err());
    }
}

//! Reading a tenant's data back: series selected through the postings of the head and of every
//! block in range, with their chunks as stored, merged by label set. The read APIs (StoreAPI,
//! remote read, the metadata API) build on [`TenantDb::select`].
//!
//! Each sample is read exactly once across the head/block boundary: a query reads the blocks of
//! the [`ReadView`] and only the head's samples from its `head_floor` on. A cut publishes its block
//! and raises the floor in one step, and truncates the head only while no query holds the view.

use std::path::PathBuf;
use std::sync::Arc;

use tsdb_format::block::{CHUNKS_DIR, INDEX_FILENAME};
use tsdb_format::chunkenc::{
    ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, ENCODING_XOR, iter_xor, num_samples,
};
use tsdb_format::chunks::ChunkReader;
use tsdb_format::meta::BlockMeta;

use super::compact::chunks_in_range;
use super::{IndexCache, Labels, Matcher, TenantDb, TsdbError, postings};

/// A block on local disk that queries read.
#[derive(Debug, Clone)]
pub struct LocalBlock {
    /// The block directory.
    pub dir: PathBuf,
    /// Its meta.json.
    pub meta: BlockMeta,
}

/// What queries see: the local blocks, and the time from which the head's samples are in none.
#[derive(Debug, Default)]
pub struct ReadView {
    /// Blocks oldest first.
    pub blocks: Vec<Arc<LocalBlock>>,
    /// Head samples before this are in a block of the view (or were never accepted).
    pub head_floor: i64,
}

/// A chunk as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// Prometheus chunk encoding: XOR (1), histogram (2) or float histogram (3).
    pub encoding: u8,
    /// The chunk bytes.
    pub data: Box<[u8]>,
}

impl StoredChunk {
    /// Number of samples, from the chunk header.
    pub fn num_samples(&self) -> u64 {
        num_samples(&self.data).map_or(0, u64::from)
    }
}

/// A series and its chunks that overlap a query's range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Its chunks; empty when a query asked for labels only.
    pub chunks: Vec<StoredChunk>,
}

/// A series and its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series' labels.
    pub labels: Labels,
    /// Samples `(timestamp ms, value)`, oldest first.
    pub samples: Vec<(i64, f64)>,
}

/// Most series and samples (counted by chunk) one selection may gather; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Distinct series.
    pub series: u64,
    /// Samples in the chunks returned.
    pub samples: u64,
}

/// Why a selection failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Reading a block failed.
    #[error(transparent)]
    Storage(#[from] TsdbError),
    /// More series match than the budget allows.
    #[error("more than the limit of {0} series match")]
    TooManySeries(u64),
    /// The matching series hold more samples than the budget allows.
    #[error("the matching series hold more than the limit of {0} samples")]
    TooManySamples(u64),
}

/// Series gathered from the blocks and the head, checked against the budget as they come. Each
/// source yields its series sorted, so the one sort at the end merges runs.
struct Gather {
    out: Vec<ChunkSeries>,
    samples: u64,
    budget: Budget,
}

impl Gather {
    fn add(&mut self, labels: Labels, chunks: Vec<StoredChunk>) -> Result<(), QueryError> {
        self.samples += chunks.iter().map(StoredChunk::num_samples).sum::<u64>();
        self.out.push(ChunkSeries { labels, chunks });
        // Counts a series in several blocks more than once: a bound on memory, not an exact count.
        if self.budget.series > 0 && self.out.len() as u64 > self.budget.series {
            return Err(QueryError::TooManySeries(self.budget.series));
        }
        if self.budget.samples > 0 && self.samples > self.budget.samples {
            return Err(QueryError::TooManySamples(self.budget.samples));
        }
        Ok(())
    }

    /// The series sorted by labels, each once with its chunks in time order.
    fn finish(mut self) -> Vec<ChunkSeries> {
        self.out.sort_by(|a, b| a.labels.compare(&b.labels));
        let mut merged: Vec<ChunkSeries> = Vec::with_capacity(self.out.len());
        for s in self.out {
            match merged.last_mut() {
                Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks),
                _ => merged.push(s),
            }
        }
        for s in &mut merged {
            s.chunks.sort_by_key(|c| c.min_time);
        }
        merged
    }
}

impl TenantDb {
    /// Oldest and newest sample stored, in blocks and head; `None` when the tenant holds nothing.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let view = self.view.read();
        view.blocks
            .iter()
            // A block's max time is exclusive.
            .map(|b| (b.meta.min_time, b.meta.max_time - 1))
            .chain(self.head.time_range())
            .reduce(|(a0, a1), (b0, b1)| (a0.min(b0), a1.max(b1)))
    }

    /// Series matching every matcher that hold a sample in `[mint, maxt]`, sorted by labels,
    /// with the chunks overlapping the range (whole, as stored) unless `skip_chunks`.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        skip_chunks: bool,
        budget: Budget,
    ) -> Result<Vec<ChunkSeries>, QueryError> {
        let mut gather = Gather {
            out: Vec::new(),
            samples: 0,
            budget,
        };
        let view = self.view.read();
        for block in &view.blocks {
            if block.meta.max_time <= mint || block.meta.min_time > maxt {
                continue;
            }
            select_block(
                block,
                &self.opts.index_cache,
                matchers,
                (mint, maxt),
                skip_chunks,
                &mut gather,
            )?;
        }
        let overlaps = |c: &StoredChunk| c.max_time >= mint && c.min_time <= maxt;
        for s in self.head.select(matchers) {
            let mut chunks = chunks_in_range(&self.head, &s, view.head_floor, i64::MAX)
                .map_err(TsdbError::from)?
                .into_iter()
                .map(|(min_time, max_time, encoding, data)| StoredChunk {
                    min_time,
                    max_time,
                    encoding,
                    data,
                })
                .filter(overlaps)
                .peekable();
            if chunks.peek().is_none() {
                continue;
            }
            let chunks = if skip_chunks {
                Vec::new()
            } else {
                chunks.collect()
            };
            gather.add(s.labels.clone(), chunks)?;
        }
        drop(view);
        Ok(gather.finish())
    }

    /// Series matching every matcher with their samples in `[mint, maxt]`, sorted by labels.
    pub fn query(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        budget: Budget,
    ) -> Result<Vec<SeriesData>, QueryError> {
        Ok(self
            .select(matchers, mint, maxt, false, budget)?
            .into_iter()
            .map(|s| SeriesData {
                labels: s.labels,
                samples: s
                    .chunks
                    .iter()
                    .filter(|c| c.encoding == ENCODING_XOR)
                    .flat_map(|c| iter_xor(&c.data))
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    /// Publishes a block just written and raises the head floor to `cut_end`: from now on
    /// queries read the block, not the head, for the time before it.
    pub(super) fn publish_block(&self, block: Option<LocalBlock>, cut_end: i64) {
        let mut view = self.view.write();
        if let Some(block) = block {
            view.blocks.push(Arc::new(block));
            view.blocks.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
        }
        view.head_floor = view.head_floor.max(cut_end);
    }

    /// Takes a block out of what queries read, before its directory is deleted.
    pub(super) fn unpublish_block(&self, ulid: ulid::Ulid) {
        let mut view = self.view.write();
        for b in view.blocks.iter().filter(|b| b.meta.ulid == ulid) {
            self.opts.index_cache.forget(&b.dir);
        }
        view.blocks.retain(|b| b.meta.ulid != ulid);
    }

    /// Waits until no query holds the view, then runs `f` (the head truncation after a cut)
    /// before any new query starts.
    pub(super) fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let _view = self.view.write();
        f()
    }
}

/// Adds the series of one block that match and hold chunks overlapping `[mint, maxt]`.
fn select_block(
    block: &LocalBlock,
    cache: &IndexCache,
    matchers: &[Matcher],
    (mint, maxt): (i64, i64),
    skip_chunks: bool,
    gather: &mut Gather,
) -> Result<(), QueryError> {
    let err = |e: tsdb_format::Error| TsdbError::Block {
        path: block.dir.clone(),
        message: e.to_string(),
    };
    let index = cache.get(&block.dir.join(INDEX_FILENAME)).map_err(err)?;
    let ids = postings::select(&*index, matchers).map_err(err)?;
    let mut chunk_reader = None;
    for id in ids {
        let id = u32::try_from(id).expect("block series IDs are u32");
        let entry = index.series(id).map_err(err)?;
        let metas: Vec<_> = entry
            .chunks
            .iter()
            .filter(|c| c.max_time >= mint && c.min_time <= maxt)
            .collect();
        if metas.is_empty() {
            continue;
        }
        let labels = Labels::from_pairs(
            entry
                .labels
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        let mut chunks = Vec::new();
        if !skip_chunks {
            let reader = match &mut chunk_reader {
                Some(r) => r,
                None => chunk_reader
                    .insert(ChunkReader::open(&block.dir.join(CHUNKS_DIR)).map_err(err)?),
            };
            for meta in metas {
                let (encoding, data) = reader.chunk(meta.chunk_ref).map_err(err)?;
                if ![ENCODING_XOR, ENCODING_HISTOGRAM, ENCODING_FLOAT_HISTOGRAM].contains(&encoding)
                {
                    return Err(err(tsdb_format::Error::Corrupt {
                        what: format!("chunk {:#x}", meta.chunk_ref),
                        reason: format!("unsupported encoding {encoding}"),
                    })
                    .into());
                }
                chunks.push(StoredChunk {
                    min_time: meta.min_time,
                    max_time: meta.max_time,
                    encoding,
                    data: data.into_boxed_slice(),
                });
            }
        }
        gather.add(labels, chunks)?;
    }
    Ok(())
}

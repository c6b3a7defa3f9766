//! Block indexes kept in memory between queries, least recently used first out, within a byte
//! budget shared by every tenant: a query of a recent block finds its postings and series without
//! reading the index file again, and old blocks cost nothing until they are read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tsdb_format::index::IndexReader;

/// Index bytes kept in memory by default: about the index of one 2-hour block of 1M series.
pub const DEFAULT_INDEX_CACHE_BYTES: usize = 256 << 20;

/// A byte-bounded LRU of block indexes, by index file path.
#[derive(Debug)]
pub struct IndexCache {
    budget: usize,
    /// Most recently used last.
    entries: Mutex<Vec<(PathBuf, Arc<IndexReader>)>>,
}

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache::new(DEFAULT_INDEX_CACHE_BYTES)
    }
}

impl IndexCache {
    /// A cache holding at most `budget` bytes of indexes (one larger index is read, not kept).
    pub fn new(budget: usize) -> Self {
        IndexCache {
            budget,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The index at `path`, from memory or read from disk (outside the lock) and kept.
    pub fn get(&self, path: &Path) -> Result<Arc<IndexReader>, tsdb_format::Error> {
        {
            let mut entries = self.entries.lock();
            if let Some(i) = entries.iter().position(|(p, _)| p == path) {
                let entry = entries.remove(i);
                let index = Arc::clone(&entry.1);
                entries.push(entry);
                return Ok(index);
            }
        }
        let index = Arc::new(IndexReader::open(path)?);
        if index.size_bytes() <= self.budget {
            let mut entries = self.entries.lock();
            if !entries.iter().any(|(p, _)| p == path) {
                entries.push((path.to_path_buf(), Arc::clone(&index)));
            }
            let mut total: usize = entries.iter().map(|(_, i)| i.size_bytes()).sum();
            while total > self.budget {
                let (_, evicted) = entries.remove(0);
                total -= evicted.size_bytes();
            }
        }
        Ok(index)
    }

    /// Forgets the indexes under `dir` (a block about to be deleted).
    pub fn forget(&self, dir: &Path) {
        self.entries.lock().retain(|(p, _)| !p.starts_with(dir));
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.entries
            .lock()
            .iter()
            .map(|(_, i)| i.size_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb_format::index::IndexWriter;

    fn write_index(path: &Path, names: &[&str]) {
        let mut w = IndexWriter::create(path).unwrap();
        let mut symbols: Vec<&str> = names.iter().copied().chain(["job"]).collect();
        symbols.sort();
        for s in symbols {
            w.add_symbol(s).unwrap();
        }
        for n in names {
            w.add_series(&[("job", n)], &[]).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn keeps_recent_indexes_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("i{i}"))).collect();
        for p in &paths {
            write_index(p, &["a", "b"]);
        }
        let one = IndexReader::open(&paths[0]).unwrap().size_bytes();
        let cache = IndexCache::new(2 * one);
        let first = cache.get(&paths[0]).unwrap();
        assert!(Arc::ptr_eq(&first, &cache.get(&paths[0]).unwrap()), "kept");
        cache.get(&paths[1]).unwrap();
        cache.get(&paths[0]).unwrap();
        cache.get(&paths[2]).unwrap();
        // i1 was the least recently used.
        assert_eq!(cache.size_bytes(), 2 * one);
        assert!(Arc::ptr_eq(&first, &cache.get(&paths[0]).unwrap()));
        cache.forget(&paths[0]);
        assert_eq!(cache.size_bytes(), one);
        let tiny = IndexCache::new(one - 1);
        tiny.get(&paths[0]).unwrap();
        assert_eq!(
            tiny.size_bytes(),
            0,
            "an index over the budget is read, not kept"
        );
    }
}

//! Reading a tenant's data back: series selected by matchers, with their samples from the blocks
//! on disk and the head, merged by label set. The read APIs (StoreAPI, remote read) build on it.

use std::collections::BTreeMap;

use tsdb_format::Block;

use super::compact::list_blocks;
use super::{Labels, Matcher, TenantDb, TsdbError};

/// A series and its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// The series' labels.
    pub labels: Labels,
    /// Samples `(timestamp ms, value)`, oldest first.
    pub samples: Vec<(i64, f64)>,
}

/// Orders label sets as Prometheus does, so query results come sorted.
#[derive(PartialEq, Eq)]
struct Key(Labels);

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.compare(&other.0)
    }
}

impl TenantDb {
    /// Oldest and newest sample stored, in blocks and head; `None` when the tenant holds nothing.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        list_blocks(&self.dir)
            .into_iter()
            // A block's max time is exclusive.
            .map(|(_, meta)| (meta.min_time, meta.max_time - 1))
            .chain(self.head.time_range())
            .reduce(|(a0, a1), (b0, b1)| (a0.min(b0), a1.max(b1)))
    }

    /// Series matching every matcher with their samples in `[mint, maxt]`, from blocks and head.
    pub fn query(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesData>, TsdbError> {
        let mut out: BTreeMap<Key, Vec<(i64, f64)>> = BTreeMap::new();
        for (dir, meta) in list_blocks(&self.dir) {
            if meta.max_time <= mint || meta.min_time > maxt {
                continue;
            }
            let err = |e: tsdb_format::Error| TsdbError::Block {
                path: dir.clone(),
                message: e.to_string(),
            };
            let block = Block::open(&dir).map_err(err)?;
            for series in block.series().map_err(err)? {
                let series = series.map_err(err)?;
                let labels = Labels::from_pairs(
                    series
                        .labels
                        .iter()
                        .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
                );
                if !matchers.iter().all(|m| m.matches(&labels)) {
                    continue;
                }
                out.entry(Key(labels)).or_default().extend(
                    series
                        .samples
                        .into_iter()
                        .filter(|&(t, _)| t >= mint && t <= maxt),
                );
            }
        }
        for s in self.head.select(matchers) {
            let samples = s.data.lock().samples(mint, maxt);
            out.entry(Key(s.labels.clone()))
                .or_default()
                .extend(samples);
        }
        Ok(out
            .into_iter()
            .map(|(Key(labels), mut samples)| {
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
                SeriesData { labels, samples }
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }
}

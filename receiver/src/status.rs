//! `/api/v1/status/tsdb`: head cardinality statistics in the shape Prometheus' API returns them.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::tsdb::TenantDb;

/// Head statistics of one tenant (`data` of Prometheus' TSDB status response).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TsdbStatus {
    /// Tenant the statistics describe.
    pub tenant: String,
    /// Totals over the head.
    pub head_stats: HeadStats,
    /// Series per metric name, largest first.
    pub series_count_by_metric_name: Vec<Stat>,
    /// Distinct values per label name, largest first.
    pub label_value_count_by_label_name: Vec<Stat>,
    /// Bytes of label values per label name, largest first.
    pub memory_in_bytes_by_label_name: Vec<Stat>,
    /// Series per label pair, largest first.
    pub series_count_by_label_value_pair: Vec<Stat>,
}

/// Totals over one head.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeadStats {
    /// Series in the head.
    pub num_series: u64,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Oldest sample timestamp (ms).
    pub min_time: i64,
    /// Newest sample timestamp (ms).
    pub max_time: i64,
}

/// One `{name, value}` entry of a top-N list.
#[derive(Debug, Serialize, PartialEq)]
pub struct Stat {
    /// What is counted.
    pub name: String,
    /// The count.
    pub value: u64,
}

fn top(map: HashMap<String, u64>, limit: usize) -> Vec<Stat> {
    let mut v: Vec<Stat> = map
        .into_iter()
        .map(|(name, value)| Stat { name, value })
        .collect();
    v.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    v.truncate(limit);
    v
}

/// Computes the statistics of one tenant's head, keeping the `limit` largest entries per list.
pub fn tsdb_status(db: &TenantDb, limit: usize) -> TsdbStatus {
    let mut by_metric = HashMap::<String, u64>::new();
    let mut values_by_name = HashMap::<String, HashSet<String>>::new();
    let mut by_pair = HashMap::<String, u64>::new();
    let mut chunks = 0u64;
    let series = db.head.all_series();
    for s in &series {
        chunks += s.data.lock().chunk_count() as u64;
        for (n, v) in s.labels.iter() {
            if n == "__name__" {
                *by_metric.entry(v.to_string()).or_default() += 1;
            }
            values_by_name
                .entry(n.to_string())
                .or_default()
                .insert(v.to_string());
            *by_pair.entry(format!("{n}={v}")).or_default() += 1;
        }
    }
    let num_label_pairs = values_by_name.values().map(|v| v.len() as u64).sum();
    let memory = values_by_name
        .iter()
        .map(|(n, vs)| (n.clone(), vs.iter().map(|v| v.len() as u64).sum()))
        .collect();
    let value_counts = values_by_name
        .into_iter()
        .map(|(n, vs)| (n, vs.len() as u64))
        .collect();
    let (min_time, max_time) = db.head.time_range().unwrap_or((0, 0));
    TsdbStatus {
        tenant: db.name.clone(),
        head_stats: HeadStats {
            num_series: series.len() as u64,
            num_label_pairs,
            chunk_count: chunks,
            min_time,
            max_time,
        },
        series_count_by_metric_name: top(by_metric, limit),
        label_value_count_by_label_name: top(value_counts, limit),
        memory_in_bytes_by_label_name: top(memory, limit),
        series_count_by_label_value_pair: top(by_pair, limit),
    }
}

//! Latency percentiles and per-status counts of a run.

use std::collections::BTreeMap;
use std::time::Duration;

/// What one shard saw; shards' stats are merged at the end.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Latency of every attempt, in microseconds.
    pub latencies_us: Vec<u32>,
    /// Time from a request's first attempt to its last answer, retries and backoff included
    /// (what a sender's queue waits), in microseconds.
    pub request_latencies_us: Vec<u32>,
    /// Attempts per status code; `"error"` for attempts without an answer.
    pub statuses: BTreeMap<String, u64>,
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Samples in requests answered 2xx.
    pub samples_ok: u64,
    /// Samples in requests dropped after a 4xx, or abandoned when the run ended during retries.
    pub samples_failed: u64,
    /// Retried attempts.
    pub retries: u64,
    /// The first response body (or transport error) of each failing status, to say why.
    pub first_errors: BTreeMap<String, String>,
}

impl Stats {
    /// Records one attempt.
    pub fn attempt(&mut self, status: Option<u16>, latency: Duration) {
        self.latencies_us
            .push(latency.as_micros().min(u128::from(u32::MAX)) as u32);
        let key = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        *self.statuses.entry(key).or_default() += 1;
    }

    /// Records how long a request took from its first attempt to its end.
    pub fn request_done(&mut self, took: Duration) {
        self.request_latencies_us
            .push(took.as_micros().min(u128::from(u32::MAX)) as u32);
    }

    /// Keeps the reason of a failed attempt if it is the first with its status.
    pub fn note_error(&mut self, status: Option<u16>, reason: &str) {
        let key = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.first_errors
            .entry(key)
            .or_insert_with(|| reason.chars().take(300).collect());
    }

    /// Adds another shard's stats.
    pub fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.request_latencies_us.extend(other.request_latencies_us);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.requests_ok += other.requests_ok;
        self.samples_ok += other.samples_ok;
        self.samples_failed += other.samples_failed;
        self.retries += other.retries;
        for (k, v) in other.first_errors {
            self.first_errors.entry(k).or_insert(v);
        }
    }

    /// Attempt latency percentiles (`q` in 0..=1) in milliseconds, nearest rank; sorts in place.
    pub fn percentiles_ms(&mut self, qs: &[f64]) -> Vec<f64> {
        percentiles_ms(&mut self.latencies_us, qs)
    }

    /// Request latency percentiles (retries included), as [`Stats::percentiles_ms`].
    pub fn request_percentiles_ms(&mut self, qs: &[f64]) -> Vec<f64> {
        percentiles_ms(&mut self.request_latencies_us, qs)
    }
}

fn percentiles_ms(us: &mut [u32], qs: &[f64]) -> Vec<f64> {
    us.sort_unstable();
    let n = us.len();
    qs.iter()
        .map(|q| {
            if n == 0 {
                return 0.0;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(us[rank - 1]) / 1000.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Stats::default();
        for ms in 1..=100u64 {
            s.attempt(Some(200), Duration::from_millis(ms));
        }
        assert_eq!(s.percentiles_ms(&[0.5, 0.99, 1.0]), [50.0, 99.0, 100.0]);
        assert_eq!(s.statuses["200"], 100);
    }
}

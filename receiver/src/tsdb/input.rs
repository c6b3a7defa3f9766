//! What storage takes in: series given as label pairs and samples, whatever decoded them.
//!
//! Remote write, the forward path and tests all feed a tenant's head through [`SeriesSource`],
//! so storage does not depend on any wire format.

use tsdb_format::histogram::{FloatHistogram, Histogram, HistogramError};

use super::labels;

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The value, stored bit-exact (stale markers included).
    pub v: f64,
}

/// A native histogram sample, integer or float.
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValue {
    /// Integer counts (`count_int`), stored in histogram chunks.
    Int(Histogram),
    /// Float counts (`count_float`), stored in float histogram chunks.
    Float(FloatHistogram),
}

impl HistogramValue {
    /// Whether this is a stale marker.
    pub fn is_stale(&self) -> bool {
        match self {
            Self::Int(h) => h.is_stale(),
            Self::Float(h) => h.is_stale(),
        }
    }

    /// Checks the histogram as Prometheus does before storing it.
    pub fn validate(&self) -> Result<(), HistogramError> {
        match self {
            Self::Int(h) => h.validate(),
            Self::Float(h) => h.validate(),
        }
    }

    /// Buckets, spans and custom bounds, each 8 bytes of memory, for memory accounting.
    pub fn items(&self) -> usize {
        match self {
            Self::Int(h) => {
                h.positive_buckets.len()
                    + h.negative_buckets.len()
                    + h.positive_spans.len()
                    + h.negative_spans.len()
                    + h.custom_values.len()
            }
            Self::Float(h) => {
                h.positive_buckets.len()
                    + h.negative_buckets.len()
                    + h.positive_spans.len()
                    + h.negative_spans.len()
                    + h.custom_values.len()
            }
        }
    }
}

/// One native histogram sample.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The histogram.
    pub h: HistogramValue,
}

/// One exemplar given with a series: its label pairs, value and time.
#[derive(Debug, Clone)]
pub struct InputExemplar<'a> {
    /// Label pairs `(name, value)`, e.g. `trace_id`.
    pub labels: Vec<(&'a [u8], &'a [u8])>,
    /// The exemplar's value.
    pub value: f64,
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The exemplar carried more labels than were kept: refused as too long.
    pub too_many_labels: bool,
}

/// Series to append, addressed by index: labels sorted by name, samples sorted by time.
pub trait SeriesSource {
    /// Label pairs `(name, value)` of series `i`.
    fn series_labels(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])> + Clone;
    /// Appends the head's key of series `i` ([`labels::append_key`] of its labels) to `key`.
    fn append_key(&self, i: usize, key: &mut Vec<u8>) {
        labels::append_key(self.series_labels(i), key);
    }
    /// A buffer for the keys of a lookup: one kept from an earlier lookup, or a new one.
    fn take_key_buffer(&self) -> Vec<u8> {
        Vec::new()
    }
    /// Hands back the buffer [`SeriesSource::take_key_buffer`] gave, for the next lookup.
    fn keep_key_buffer(&self, _keys: Vec<u8>) {}
    /// Samples of series `i`.
    fn series_samples(&self, i: usize) -> &[Sample];
    /// Native histograms of series `i`, sorted by time (none unless the source carries them).
    fn series_histograms(&self, _i: usize) -> &[HistogramSample] {
        &[]
    }
    /// Exemplars of series `i` (none unless the source carries them).
    fn series_exemplars(&self, _i: usize) -> Vec<InputExemplar<'_>> {
        Vec::new()
    }
}

/// One series of a [`SeriesVec`]: label pairs, samples and histograms.
type OwnedSeries = (Vec<(String, String)>, Vec<Sample>, Vec<HistogramSample>);

/// Series held as owned label pairs and samples: the simplest source, for tests and tools.
#[derive(Debug, Default, Clone)]
pub struct SeriesVec {
    series: Vec<OwnedSeries>,
}

impl SeriesVec {
    /// An empty set of series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a series from label pairs (sorted by name) and `(timestamp, value)` samples.
    pub fn with(mut self, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Self {
        self.series.push((
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
            Vec::new(),
        ));
        self
    }

    /// Adds a series from label pairs (sorted by name) and native histograms sorted by time.
    pub fn with_histograms(
        mut self,
        labels: &[(&str, &str)],
        histograms: Vec<HistogramSample>,
    ) -> Self {
        self.series.push((
            labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            Vec::new(),
            histograms,
        ));
        self
    }

    /// The index of every series, to append them all.
    pub fn all(&self) -> Vec<usize> {
        (0..self.series.len()).collect()
    }
}

impl SeriesSource for SeriesVec {
    fn series_labels(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.series[i]
            .0
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    fn series_samples(&self, i: usize) -> &[Sample] {
        &self.series[i].1
    }

    fn series_histograms(&self, i: usize) -> &[HistogramSample] {
        &self.series[i].2
    }
}

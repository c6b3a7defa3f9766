//! What storage takes in: series given as label pairs and samples, whatever decoded them.
//!
//! Remote write, the forward path and tests all feed a tenant's head through [`SeriesSource`],
//! so storage does not depend on any wire format.

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The value, stored bit-exact (stale markers included).
    pub v: f64,
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
    /// Samples of series `i`.
    fn series_samples(&self, i: usize) -> &[Sample];
    /// Exemplars of series `i` (none unless the source carries them).
    fn series_exemplars(&self, _i: usize) -> Vec<InputExemplar<'_>> {
        Vec::new()
    }
}

/// One series of a [`SeriesVec`]: label pairs and samples.
type OwnedSeries = (Vec<(String, String)>, Vec<Sample>);

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
}

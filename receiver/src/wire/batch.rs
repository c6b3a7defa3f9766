//! The decoded form of a write request: the body plus flat arrays of offsets into it.
//!
//! A [`WriteBatch`] owns the decompressed body and describes it with flat, reusable arrays of
//! offsets (the layout VictoriaMetrics uses): label names and values are spans into the body, so a
//! request of any size costs a handful of `Vec` pushes and no string copies, and the batch is
//! reused across requests. Every format decoder fills the same arrays, under one memory budget.

use std::ops::Range;

use super::{DecodeError, SnappyError};
use crate::tsdb::{HistogramSample, InputExemplar, Sample, SeriesSource, labels};

/// Largest decompressed body accepted, as the reference remote-write handler.
pub const MAX_DECODED_SIZE: usize = 32 << 20;
/// Most memory the decoded description of one request may take (label, sample and series arrays,
/// and the label bytes remote write 2.0 symbol references resolve to). Two bytes of protobuf can
/// describe a 16-byte label, so without it a 32 MiB body could cost hundreds of megabytes.
pub const MAX_DECODED_MEMORY: usize = 64 << 20;
/// Most labels one series may carry.
pub const MAX_LABELS_PER_SERIES: usize = 1024;

/// Rough length at which [`WriteBatch::series_string`] stops rendering labels.
pub const MAX_SERIES_STRING: usize = 256;

/// A byte range of the decompressed body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset from the start of the body.
    pub off: u32,
    /// Length in bytes.
    pub len: u32,
}

/// One label of a series, as spans into the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelRef {
    /// Label name.
    pub name: Span,
    /// Label value.
    pub value: Span,
}

/// One time series of a request: ranges into the batch's label and sample arrays.
#[derive(Debug, Clone, Default)]
pub struct SeriesEntry {
    /// Range into [`WriteBatch::labels`].
    pub labels: Range<u32>,
    /// Range into [`WriteBatch::samples`].
    pub samples: Range<u32>,
    /// Range into [`WriteBatch::exemplars`].
    pub exemplars: Range<u32>,
    /// The series' `prometheus.TimeSeries` bytes in the body when it came as one (remote write
    /// 1.0 and forwards); empty otherwise. A forward copies them instead of encoding anew.
    pub raw: Span,
}

/// Most labels one exemplar may carry (Prometheus allows 128 characters in all).
pub const MAX_LABELS_PER_EXEMPLAR: usize = 64;

/// One exemplar of a series: labels (a range of [`WriteBatch::exemplar_labels`]), value, time.
#[derive(Debug, Clone, Default)]
pub struct ExemplarRef {
    /// Range into [`WriteBatch::exemplar_labels`].
    pub labels: Range<u32>,
    /// The exemplar's value.
    pub value: f64,
    /// Milliseconds since the epoch.
    pub t: i64,
    /// It carried more than [`MAX_LABELS_PER_EXEMPLAR`] labels (the rest were not kept).
    pub too_many_labels: bool,
}

/// A decoded request: the body plus flat arrays that describe it; reuse it across requests.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// The decompressed protobuf body every [`Span`] points into.
    pub buf: Vec<u8>,
    /// Labels of all series, in request order.
    pub labels: Vec<LabelRef>,
    /// Series in request order.
    pub series: Vec<SeriesEntry>,
    /// Samples of all series, in request order.
    pub samples: Vec<Sample>,
    /// Native histograms of all series, in request order.
    pub histograms: Vec<HistogramSample>,
    /// The series (index into [`WriteBatch::series`]) of each histogram: ascending, so a
    /// series' histograms are found by binary search and the series loops never touch them.
    pub(super) histogram_series: Vec<u32>,
    /// Buckets, spans and bounds of all [`WriteBatch::histograms`], for the memory budget.
    pub(super) histogram_buckets: usize,
    /// Exemplars of all series, in request order.
    pub exemplars: Vec<ExemplarRef>,
    /// Labels of all exemplars.
    pub exemplar_labels: Vec<LabelRef>,
    /// Metadata entries seen (remote write 1.0 field 3); they are not stored.
    pub metadata: u32,
    /// Remote write 2.0 symbols, resolved into labels at the end of a decode.
    pub(super) symbols: Vec<Span>,
    /// Remote write 2.0 label references of all series.
    pub(super) label_refs: Vec<u32>,
    /// Per series, its range of [`WriteBatch::label_refs`].
    pub(super) series_refs: Vec<Range<u32>>,
    /// Remote write 2.0 label references of all exemplars.
    pub(super) exemplar_label_refs: Vec<u32>,
    /// Per exemplar (2.0), its range of [`WriteBatch::exemplar_label_refs`].
    pub(super) exemplar_refs: Vec<Range<u32>>,
    /// Scratch the head lookup builds this request's series keys in, kept with the batch so a
    /// pooled batch brings it along.
    keys: parking_lot::Mutex<Vec<u8>>,
}

impl WriteBatch {
    /// A batch over an already decompressed body; call a format's decode next.
    pub fn with_body(buf: Vec<u8>) -> Self {
        let mut batch = WriteBatch::default();
        batch.set_body(buf);
        batch
    }

    /// Empties the batch and makes `buf` its body, to be decoded.
    pub fn set_body(&mut self, buf: Vec<u8>) {
        self.clear();
        self.buf = buf;
    }

    /// Takes the body buffer out with its stale bytes, leaving the batch empty with its decoded
    /// arrays' memory.
    pub fn take_body(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.buf);
        self.clear();
        buf
    }

    /// Length of the body in bytes.
    pub fn body_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the body buffer holds allocated.
    pub fn body_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The decoded arrays as `(len, capacity, element size)`.
    fn arrays(&self) -> [(usize, usize, usize); 10] {
        use std::mem::size_of;
        [
            (
                self.labels.len(),
                self.labels.capacity(),
                size_of::<LabelRef>(),
            ),
            (
                self.samples.len(),
                self.samples.capacity(),
                size_of::<Sample>(),
            ),
            (
                self.series.len(),
                self.series.capacity(),
                size_of::<SeriesEntry>(),
            ),
            (
                self.label_refs.len(),
                self.label_refs.capacity(),
                size_of::<u32>(),
            ),
            (
                self.symbols.len(),
                self.symbols.capacity(),
                size_of::<Span>(),
            ),
            (
                self.series_refs.len(),
                self.series_refs.capacity(),
                size_of::<Range<u32>>(),
            ),
            (
                self.exemplars.len(),
                self.exemplars.capacity(),
                size_of::<ExemplarRef>(),
            ),
            (
                self.exemplar_labels.len(),
                self.exemplar_labels.capacity(),
                size_of::<LabelRef>(),
            ),
            (
                self.exemplar_refs.len(),
                self.exemplar_refs.capacity(),
                size_of::<Range<u32>>(),
            ),
            (
                self.exemplar_label_refs.len(),
                self.exemplar_label_refs.capacity(),
                size_of::<u32>(),
            ),
        ]
    }

    /// Memory the decoded arrays take now (not their capacity).
    fn decoded_memory(&self) -> usize {
        self.arrays()
            .iter()
            .map(|(len, _, size)| len * size)
            .sum::<usize>()
            + self.histograms.len() * (std::mem::size_of::<HistogramSample>() + 4)
            + self.histogram_buckets * 8
    }

    /// Fails once the decoded arrays take more than [`MAX_DECODED_MEMORY`].
    pub(super) fn check_budget(&self) -> Result<(), DecodeError> {
        if self.decoded_memory() > MAX_DECODED_MEMORY {
            return Err(DecodeError::DecodedTooLarge);
        }
        Ok(())
    }

    /// Heap bytes the batch holds on to (capacities), to decide whether it is worth pooling.
    pub fn retained_bytes(&self) -> usize {
        let arrays: usize = self.arrays().iter().map(|(_, cap, size)| cap * size).sum();
        self.buf.capacity()
            + self.keys.lock().capacity()
            + arrays
            + self.histograms.capacity() * std::mem::size_of::<HistogramSample>()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.labels.clear();
        self.series.clear();
        self.samples.clear();
        self.histograms.clear();
        self.histogram_series.clear();
        self.histogram_buckets = 0;
        self.metadata = 0;
        self.symbols.clear();
        self.label_refs.clear();
        self.series_refs.clear();
        self.exemplars.clear();
        self.exemplar_labels.clear();
        self.exemplar_refs.clear();
        self.exemplar_label_refs.clear();
    }

    /// Decompresses a snappy block-format body into the batch buffer, enforcing `max_len`.
    pub fn decompress(&mut self, body: &[u8], max_len: usize) -> Result<(), SnappyError> {
        // A reused batch keeps its buffer's bytes: the decompressor overwrites every one it
        // returns, so only bytes the buffer never held are zeroed (a 4 MB memset per request).
        let mut buf = std::mem::take(&mut self.buf);
        self.clear();
        let len = snap::raw::decompress_len(body).map_err(SnappyError::Corrupt)?;
        if len > max_len {
            return Err(SnappyError::TooLarge(len));
        }
        buf.resize(len, 0);
        self.buf = buf;
        let n = snap::raw::Decoder::new()
            .decompress(body, &mut self.buf)
            .map_err(SnappyError::Corrupt)?;
        self.buf.truncate(n);
        Ok(())
    }

    /// Bytes of a span.
    #[inline]
    pub fn bytes(&self, span: Span) -> &[u8] {
        &self.buf[span.off as usize..(span.off + span.len) as usize]
    }

    /// Label pairs of series `i`.
    pub fn series_labels(
        &self,
        i: usize,
    ) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + Clone + '_ {
        let r = &self.series[i].labels;
        self.labels[r.start as usize..r.end as usize]
            .iter()
            .map(|l| (self.bytes(l.name), self.bytes(l.value)))
    }

    /// Samples of series `i`.
    pub fn series_samples(&self, i: usize) -> &[Sample] {
        let r = &self.series[i].samples;
        &self.samples[r.start as usize..r.end as usize]
    }

    /// Native histograms of series `i`.
    pub fn series_histograms(&self, i: usize) -> &[HistogramSample] {
        if self.histograms.is_empty() {
            return &[];
        }
        let i = i as u32;
        let start = self.histogram_series.partition_point(|&s| s < i);
        let end = self.histogram_series.partition_point(|&s| s <= i);
        &self.histograms[start..end]
    }

    /// Exemplars of series `i`.
    pub fn series_exemplars(&self, i: usize) -> &[ExemplarRef] {
        let r = &self.series[i].exemplars;
        &self.exemplars[r.start as usize..r.end as usize]
    }

    /// Label pairs of an exemplar.
    pub fn exemplar_labels(
        &self,
        e: &ExemplarRef,
    ) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + Clone + '_ {
        self.exemplar_labels[e.labels.start as usize..e.labels.end as usize]
            .iter()
            .map(|l| (self.bytes(l.name), self.bytes(l.value)))
    }

    /// Label set of series `i` rendered as `{a="b", ...}` for error messages, cut after about
    /// [`MAX_SERIES_STRING`] bytes so a hostile series cannot blow up the response.
    pub fn series_string(&self, i: usize) -> String {
        let mut out = String::from("{");
        for (k, (n, v)) in self.series_labels(i).enumerate() {
            if out.len() > MAX_SERIES_STRING {
                out.push_str(", ...");
                break;
            }
            if k > 0 {
                out.push_str(", ");
            }
            let clip = |b: &[u8]| {
                String::from_utf8_lossy(&b[..b.len().min(MAX_SERIES_STRING)]).into_owned()
            };
            out.push_str(&format!("{}={:?}", clip(n), clip(v)));
        }
        out.push('}');
        out
    }

    /// The budget check of the series loops, every 256 series: labels per series and samples
    /// are bounded on their own, so between two checks at most ~5 MiB more can be decoded.
    #[inline]
    pub(super) fn check_budget_every_256_series(&self) -> Result<(), DecodeError> {
        if self.series.len() & 0xff == 0 {
            self.check_budget()?;
        }
        Ok(())
    }

    /// Decodes the `prometheus.Histogram` in `buf[start..end]` and appends it, checking the
    /// memory budget (a histogram can hold thousands of buckets).
    // Rare next to samples: kept out of line so the series loops stay small.
    #[cold]
    #[inline(never)]
    pub(super) fn push_histogram(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let h = super::histogram::decode_histogram(&self.buf, start, end)?;
        self.histogram_buckets += h.h.items();
        self.histograms.push(h);
        // The series being decoded is pushed once its fields are read.
        self.histogram_series.push(self.series.len() as u32);
        if self.histograms.len() & 0xff == 0 || self.histogram_buckets > MAX_DECODED_MEMORY / 64 {
            self.check_budget()?;
        }
        Ok(())
    }

    /// Appends a sample, checking the memory budget every 64k samples so one huge series cannot
    /// run far past it.
    #[inline]
    pub(super) fn push_sample(&mut self, sample: Sample) -> Result<(), DecodeError> {
        if self.samples.len() & 0xffff == 0xffff {
            self.check_budget()?;
        }
        self.samples.push(sample);
        Ok(())
    }
}

impl SeriesSource for WriteBatch {
    fn series_labels(&self, i: usize) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        WriteBatch::series_labels(self, i)
    }

    fn take_key_buffer(&self) -> Vec<u8> {
        std::mem::take(&mut *self.keys.lock())
    }

    fn keep_key_buffer(&self, keys: Vec<u8>) {
        *self.keys.lock() = keys;
    }

    fn append_key(&self, i: usize, key: &mut Vec<u8>) {
        let r = &self.series[i].labels;
        let range = |s: Span| s.off as usize..(s.off + s.len) as usize;
        let pairs = self.labels[r.start as usize..r.end as usize]
            .iter()
            .map(|l| (range(l.name), range(l.value)));
        labels::append_key_ranges(&self.buf, pairs, key);
    }

    fn series_exemplars(&self, i: usize) -> Vec<InputExemplar<'_>> {
        WriteBatch::series_exemplars(self, i)
            .iter()
            .map(|e| InputExemplar {
                labels: self.exemplar_labels(e).collect(),
                value: e.value,
                t: e.t,
                too_many_labels: e.too_many_labels,
            })
            .collect()
    }

    fn series_samples(&self, i: usize) -> &[Sample] {
        WriteBatch::series_samples(self, i)
    }

    fn series_histograms(&self, i: usize) -> &[HistogramSample] {
        WriteBatch::series_histograms(self, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;
    use crate::wire::messages::v1;

    #[test]
    fn decompress_enforces_snappy_and_size() {
        let mut b = WriteBatch::default();
        assert!(matches!(
            b.decompress(b"\xff\xff\xff\xff\xffnot snappy", MAX_DECODED_SIZE),
            Err(SnappyError::Corrupt(_))
        ));
        let body = crate::wire::messages::snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(&[("a", "x")], &[(1, 1.0)])],
            metadata: vec![],
        });
        assert!(matches!(
            b.decompress(&body, 4),
            Err(SnappyError::TooLarge(_))
        ));
        b.decompress(&body, MAX_DECODED_SIZE).unwrap();
        b.decode(Protocol::V1).unwrap();
        assert_eq!(b.series.len(), 1);
    }

    #[test]
    fn series_keys_are_the_keys_of_their_labels() {
        let long = "v".repeat(40);
        let body = crate::wire::messages::snappy(&v1::WriteRequest {
            timeseries: vec![
                v1::series(&[("__name__", "up"), ("job", &long)], &[(1, 1.0)]),
                v1::series(&[("a", ""), ("zone", "eu-1")], &[(1, 1.0)]),
            ],
            metadata: vec![],
        });
        let mut b = WriteBatch::default();
        b.decompress(&body, MAX_DECODED_SIZE).unwrap();
        b.decode(Protocol::V1).unwrap();
        for i in 0..2 {
            let mut key = Vec::new();
            SeriesSource::append_key(&b, i, &mut key);
            let mut expected = Vec::new();
            labels::append_key(b.series_labels(i), &mut expected);
            assert_eq!(key, expected, "series {i}");
        }
    }

    #[test]
    fn a_reused_batch_holds_only_the_new_body() {
        let body = |n: usize| {
            crate::wire::messages::snappy(&v1::WriteRequest {
                timeseries: (0..n)
                    .map(|i| v1::series(&[("a", &i.to_string())], &[(1, 1.0)]))
                    .collect(),
                metadata: vec![],
            })
        };
        let mut b = WriteBatch::default();
        for n in [100, 3, 100, 1] {
            let body = body(n);
            b.decompress(&body, MAX_DECODED_SIZE).unwrap();
            assert_eq!(b.buf.len(), snap::raw::decompress_len(&body).unwrap());
            b.decode(Protocol::V1).unwrap();
            assert_eq!(b.series.len(), n);
            assert_eq!(b.series_string(n - 1), format!("{{a=\"{}\"}}", n - 1));
        }
    }

    #[test]
    fn series_string_is_bounded() {
        let long = "v".repeat(10_000);
        let labels: Vec<(String, String)> = (0..50)
            .map(|i| (format!("l{i:02}"), long.clone()))
            .collect();
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut b = WriteBatch::with_body(prost::Message::encode_to_vec(&v1::WriteRequest {
            timeseries: vec![v1::series(&pairs, &[(1, 1.0)])],
            metadata: vec![],
        }));
        b.decode(Protocol::V1).unwrap();
        let s = b.series_string(0);
        assert!(s.len() < 4 * MAX_SERIES_STRING, "{} bytes", s.len());
        assert!(s.ends_with(", ...}"), "{s}");
    }
}

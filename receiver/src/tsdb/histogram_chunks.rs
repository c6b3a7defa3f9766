//! A head series' native histogram chunks: closed ones as bytes and one open appender, integer
//! or float, cut as Prometheus cuts them (counter resets, layout and type changes, size, time).

use tsdb_format::chunkenc::{
    CounterResetHeader, ENCODING_FLOAT_HISTOGRAM, ENCODING_HISTOGRAM, FloatHistogramAppender,
    HistogramAppender, Placement, first_time, iter_float_histogram, iter_histogram,
};
use tsdb_format::histogram::{CounterResetHint, FloatHistogram, Histogram};

use super::HistogramValue;
use super::head::boundary_after;

/// Most samples in one histogram chunk, as float chunks.
const SAMPLES_PER_CHUNK: u16 = 120;
/// A histogram chunk is cut past this size once it holds [`MIN_SAMPLES_PER_CHUNK`] samples
/// (Prometheus' `targetBytesPerHistogramChunk`).
const TARGET_CHUNK_BYTES: usize = 1024;
/// Fewest samples of a chunk cut for size.
const MIN_SAMPLES_PER_CHUNK: u16 = 10;

/// A closed chunk of any encoding.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// Prometheus chunk encoding (2 or 3 here).
    pub encoding: u8,
    /// The chunk bytes.
    pub data: Box<[u8]>,
}

/// The chunk being appended to.
#[derive(Debug, Clone)]
pub enum OpenHistogram {
    /// Integer histograms.
    Int(HistogramAppender),
    /// Float histograms.
    Float(FloatHistogramAppender),
}

impl OpenHistogram {
    fn new(h: &HistogramValue, header: CounterResetHeader) -> Self {
        match h {
            HistogramValue::Int(_) => Self::Int(HistogramAppender::new(header)),
            HistogramValue::Float(_) => Self::Float(FloatHistogramAppender::new(header)),
        }
    }

    /// Samples in the chunk.
    pub fn num_samples(&self) -> u16 {
        match self {
            Self::Int(a) => a.num_samples(),
            Self::Float(a) => a.num_samples(),
        }
    }

    /// The chunk bytes as they stand.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Int(a) => a.bytes(),
            Self::Float(a) => a.bytes(),
        }
    }

    /// Prometheus chunk encoding.
    pub fn encoding(&self) -> u8 {
        match self {
            Self::Int(_) => ENCODING_HISTOGRAM,
            Self::Float(_) => ENCODING_FLOAT_HISTOGRAM,
        }
    }

    /// First and last sample time.
    pub fn time_range(&self) -> (i64, i64) {
        match self {
            Self::Int(a) => (a.min_time(), a.max_time()),
            Self::Float(a) => (a.min_time(), a.max_time()),
        }
    }

    fn close(self) -> EncodedChunk {
        let (min_time, max_time) = self.time_range();
        let encoding = self.encoding();
        let data = match self {
            Self::Int(a) => a.into_bytes(),
            Self::Float(a) => a.into_bytes(),
        };
        EncodedChunk {
            min_time,
            max_time,
            encoding,
            data,
        }
    }

    /// Where `h` goes: `None` to append here, else the header of the new chunk it opens.
    fn placement(&self, h: &HistogramValue) -> Option<CounterResetHeader> {
        let p = match (self, h) {
            (Self::Int(a), HistogramValue::Int(h)) => a.placement(h),
            (Self::Float(a), HistogramValue::Float(h)) => a.placement(h),
            _ => return Some(first_header(h)),
        };
        match p {
            Placement::Append => None,
            Placement::NewChunk(header) => Some(header),
        }
    }

    fn append(&mut self, t: i64, h: &HistogramValue) {
        match (self, h) {
            (Self::Int(a), HistogramValue::Int(h)) => a.append(t, h),
            (Self::Float(a), HistogramValue::Float(h)) => a.append(t, h),
            _ => unreachable!("placement opens a chunk of the histogram's kind"),
        }
    }
}

/// The header of a series' first chunk (or one after a type change): what the sender says.
fn first_header(h: &HistogramValue) -> CounterResetHeader {
    let hint = match h {
        HistogramValue::Int(h) => h.hint,
        HistogramValue::Float(h) => h.hint,
    };
    match hint {
        CounterResetHint::Gauge => CounterResetHeader::Gauge,
        CounterResetHint::CounterReset => CounterResetHeader::CounterReset,
        _ => CounterResetHeader::Unknown,
    }
}

/// The histogram chunks of one series, oldest first.
#[derive(Debug, Clone, Default)]
pub struct HistogramChunks {
    /// Closed chunks.
    pub closed: Vec<EncodedChunk>,
    /// The chunk being appended to.
    pub open: Option<OpenHistogram>,
}

impl HistogramChunks {
    /// Appends a histogram newer than every sample of the series; `chunk_range` keeps chunks
    /// inside one block range.
    pub fn append(&mut self, t: i64, h: &HistogramValue, chunk_range: i64) {
        let header = match &self.open {
            None => Some(first_header(h)),
            Some(open) => open.placement(h).or_else(|| {
                let n = open.num_samples();
                let full = n >= SAMPLES_PER_CHUNK
                    || (open.bytes().len() >= TARGET_CHUNK_BYTES && n >= MIN_SAMPLES_PER_CHUNK)
                    || n == u16::MAX
                    || t >= boundary_after(open.time_range().0, chunk_range);
                // A chunk cut for size continues the previous one: no reset in between.
                full.then(|| match first_header(h) {
                    CounterResetHeader::Gauge => CounterResetHeader::Gauge,
                    _ => CounterResetHeader::NotCounterReset,
                })
            }),
        };
        if let Some(header) = header {
            self.close_open();
            self.open = Some(OpenHistogram::new(h, header));
        }
        self.open.as_mut().expect("a chunk is open").append(t, h);
    }

    /// Closes the open chunk, if it holds samples (a float sample follows).
    pub fn close_open(&mut self) {
        if let Some(open) = self.open.take()
            && open.num_samples() > 0
        {
            self.closed.push(open.close());
        }
    }

    /// A stale marker of the open chunk's kind, if a chunk is open with samples.
    pub fn open_stale_marker(&self) -> Option<HistogramValue> {
        match self.open.as_ref()? {
            o if o.num_samples() == 0 => None,
            OpenHistogram::Int(_) => Some(HistogramValue::Int(Histogram::stale())),
            OpenHistogram::Float(_) => Some(HistogramValue::Float(FloatHistogram::stale())),
        }
    }

    /// Every chunk as `(min, max, encoding, bytes)`, oldest first.
    pub fn chunks(&self) -> impl Iterator<Item = (i64, i64, u8, &[u8])> + '_ {
        self.closed
            .iter()
            .map(|c| (c.min_time, c.max_time, c.encoding, &c.data[..]))
            .chain(self.open.iter().filter(|o| o.num_samples() > 0).map(|o| {
                let (min, max) = o.time_range();
                (min, max, o.encoding(), o.bytes())
            }))
    }

    /// Drops every sample older than `mint`, re-encoding a chunk that straddles it.
    pub fn drop_before(&mut self, mint: i64) {
        self.closed.retain(|c| c.max_time >= mint);
        if let Some(first) = self.closed.first_mut()
            && first.min_time < mint
        {
            match subset(first.encoding, &first.data, |t| t >= mint) {
                Some(kept) => *first = kept,
                None => {
                    self.closed.remove(0);
                }
            }
        }
        // An open chunk that straddles `mint` is closed with what it keeps; the next
        // histogram opens a new one.
        if let Some(open) = &self.open
            && open.num_samples() > 0
            && open.time_range().0 < mint
        {
            let kept = subset(open.encoding(), open.bytes(), |t| t >= mint);
            self.open = None;
            self.closed.extend(kept);
        }
    }

    /// Whether no chunk holds a sample.
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.as_ref().is_none_or(|o| o.num_samples() == 0)
    }
}

/// The samples of a histogram chunk for which `keep` holds, re-encoded with its header (which
/// only speaks for the chunk's first sample: without it, nothing is known but a gauge).
pub fn subset(encoding: u8, data: &[u8], keep: impl Fn(i64) -> bool) -> Option<EncodedChunk> {
    let header = match (CounterResetHeader::of(data), first_time(encoding, data)) {
        (CounterResetHeader::Gauge, _) => CounterResetHeader::Gauge,
        (header, Some(t)) if keep(t) => header,
        _ => CounterResetHeader::Unknown,
    };
    let open = match encoding {
        ENCODING_HISTOGRAM => {
            let mut app = HistogramAppender::new(header);
            for (t, h) in iter_histogram(data).filter(|&(t, _)| keep(t)) {
                app.append(t, &h);
            }
            OpenHistogram::Int(app)
        }
        ENCODING_FLOAT_HISTOGRAM => {
            let mut app = FloatHistogramAppender::new(header);
            for (t, h) in iter_float_histogram(data).filter(|&(t, _)| keep(t)) {
                app.append(t, &h);
            }
            OpenHistogram::Float(app)
        }
        _ => return None,
    };
    (open.num_samples() > 0).then(|| open.close())
}

/// Timestamps of a histogram chunk's samples.
pub fn timestamps(encoding: u8, data: &[u8]) -> Vec<i64> {
    match encoding {
        ENCODING_HISTOGRAM => iter_histogram(data).map(|(t, _)| t).collect(),
        ENCODING_FLOAT_HISTOGRAM => iter_float_histogram(data).map(|(t, _)| t).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb_format::histogram::Span;

    fn int(count: u64) -> HistogramValue {
        HistogramValue::Int(Histogram {
            count,
            sum: count as f64,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![count as i64],
            ..Histogram::default()
        })
    }

    fn headers(c: &HistogramChunks) -> Vec<CounterResetHeader> {
        c.chunks()
            .map(|(_, _, _, d)| CounterResetHeader::of(d))
            .collect()
    }

    #[test]
    fn chunks_are_cut_for_resets_size_type_and_range() {
        let mut c = HistogramChunks::default();
        for i in 0..130 {
            c.append(i * 1000, &int(i as u64 + 10), 7_200_000);
        }
        // 120 samples, then a chunk that continues without a reset.
        assert_eq!(
            headers(&c),
            vec![
                CounterResetHeader::Unknown,
                CounterResetHeader::NotCounterReset
            ]
        );
        c.append(131_000, &int(1), 7_200_000);
        assert_eq!(headers(&c)[2], CounterResetHeader::CounterReset);
        c.append(
            132_000,
            &HistogramValue::Float(FloatHistogram::default()),
            7_200_000,
        );
        assert_eq!(c.chunks().last().unwrap().2, ENCODING_FLOAT_HISTOGRAM);
        c.append(
            7_200_000,
            &HistogramValue::Float(FloatHistogram::default()),
            7_200_000,
        );
        let last = c.chunks().last().unwrap();
        assert_eq!(
            (last.0, last.1),
            (7_200_000, 7_200_000),
            "no chunk straddles a range"
        );
        assert_eq!(c.chunks().count(), 5);
    }

    #[test]
    fn dropping_keeps_only_newer_samples() {
        let mut c = HistogramChunks::default();
        for i in 0..200 {
            c.append(i * 1000, &int(i as u64), 7_200_000);
        }
        c.drop_before(150_500);
        let times: Vec<i64> = c
            .chunks()
            .flat_map(|(_, _, e, d)| timestamps(e, d))
            .collect();
        assert_eq!(times, (151..200).map(|i| i * 1000).collect::<Vec<_>>());
        c.drop_before(1_000_000);
        assert!(c.is_empty());
    }
}

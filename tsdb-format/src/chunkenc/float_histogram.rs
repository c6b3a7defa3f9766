//! Float histogram chunks, Prometheus chunk encoding 3 (`float_histogram.go`).
//!
//! Layout: `num_samples u16 | header byte | bucket layout`, then sample 0 as `varbit t` and
//! raw 64-bit count, zero count, sum and buckets; later samples as a delta-of-delta varbit of
//! time and every value XOR-coded against its predecessor, each with its own window.

use super::ChunkError;
use super::bstream::{BitReader, BitWriter, NO_WINDOW, xor_read, xor_write};
use super::histogram::Placement;
use super::histogram_meta::{CounterResetHeader, Layout};

use super::layout_ops;
use super::varbit;
use crate::histogram::{FloatHistogram, STALE_NAN_BITS, Span};

/// One XOR-coded value stream: the last value and its window.
#[derive(Debug, Clone, Copy)]
struct XorValue {
    bits: u64,
    leading: u8,
    trailing: u8,
}

impl XorValue {
    /// A writer's stream: no window yet.
    fn new(v: f64) -> Self {
        Self {
            bits: v.to_bits(),
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// A reader's stream: window 0/0 until the data sets one, as Go's iterator starts.
    fn reading(v: f64) -> Self {
        Self {
            bits: v.to_bits(),
            leading: 0,
            trailing: 0,
        }
    }

    fn write(&mut self, w: &mut BitWriter, v: f64) {
        xor_write(
            w,
            v.to_bits(),
            self.bits,
            &mut self.leading,
            &mut self.trailing,
        );
        self.bits = v.to_bits();
    }

    fn read(
        &mut self,
        br: &mut BitReader<'_>,
        truncated: impl Fn() -> ChunkError,
        sample: u16,
    ) -> Result<f64, ChunkError> {
        xor_read(
            br,
            &mut self.bits,
            &mut self.leading,
            &mut self.trailing,
            truncated,
            sample,
        )?;
        Ok(f64::from_bits(self.bits))
    }
}

/// The current values of XOR streams.
fn values(v: &[XorValue]) -> impl Iterator<Item = f64> + '_ {
    v.iter().map(|x| f64::from_bits(x.bits))
}

/// Incremental float-histogram-chunk encoder; its buffer is a complete chunk after every append.
#[derive(Debug, Clone)]
pub struct FloatHistogramAppender {
    w: BitWriter,
    num: u16,
    layout: Layout,
    t0: i64,
    t: i64,
    t_delta: i64,
    count: XorValue,
    zero_count: XorValue,
    sum: XorValue,
    positive: Vec<XorValue>,
    negative: Vec<XorValue>,
}

impl FloatHistogramAppender {
    /// An empty chunk with the given counter-reset header.
    pub fn new(header: CounterResetHeader) -> Self {
        Self {
            w: BitWriter::with_header(&[0, 0, header.bits()]),
            num: 0,
            layout: Layout::default(),
            t0: 0,
            t: 0,
            t_delta: 0,
            count: XorValue::new(0.0),
            zero_count: XorValue::new(0.0),
            sum: XorValue::new(0.0),
            positive: Vec::new(),
            negative: Vec::new(),
        }
    }

    /// The chunk's counter-reset header.
    pub fn header(&self) -> CounterResetHeader {
        CounterResetHeader::of(&self.w.buf)
    }

    /// Number of samples appended so far.
    pub fn num_samples(&self) -> u16 {
        self.num
    }

    /// The chunk as it stands: valid and decodable at any moment.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Closes the chunk, returning its bytes without spare capacity.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.w.buf.into_boxed_slice()
    }

    /// Timestamp of the first sample (meaningless while empty).
    pub fn min_time(&self) -> i64 {
        self.t0
    }

    /// Timestamp of the last sample (meaningless while empty).
    pub fn max_time(&self) -> i64 {
        self.t
    }

    /// Whether `h` continues this chunk or needs a new one, and with which header.
    pub fn placement(&self, h: &FloatHistogram) -> Placement {
        let shape = layout_ops::Shape {
            hint: h.hint,
            stale: h.is_stale(),
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            custom_values: &h.custom_values,
            positive_spans: &h.positive_spans,
            negative_spans: &h.negative_spans,
        };
        let chunk = (self.num, self.header(), self.sum.bits == STALE_NAN_BITS);
        layout_ops::placement(chunk, &self.layout, shape, || {
            h.count < f64::from_bits(self.count.bits)
                || h.zero_count < f64::from_bits(self.zero_count.bits)
                || layout_ops::decreased(
                    &self.layout.positive_spans,
                    values(&self.positive),
                    &h.positive_spans,
                    h.positive_buckets.iter().copied(),
                )
                || layout_ops::decreased(
                    &self.layout.negative_spans,
                    values(&self.negative),
                    &h.negative_spans,
                    h.negative_buckets.iter().copied(),
                )
        })
    }

    /// Appends `h` at `t` (after the last timestamp; [`Self::placement`] said `Append`). A bucket
    /// the chunk lacks widens the chunk's layout; a bucket `h` lacks is appended as empty.
    pub fn append(&mut self, t: i64, h: &FloatHistogram) {
        assert!(self.num < u16::MAX, "a chunk holds at most 65535 samples");
        if h.is_stale() {
            self.append_in_layout(t, &FloatHistogram::stale());
            return;
        }
        if self.num == 0 {
            self.layout = Layout {
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                positive_spans: h.positive_spans.clone(),
                negative_spans: h.negative_spans.clone(),
                custom_values: h.custom_values.clone(),
            };
            self.append_in_layout(t, h);
            return;
        }
        let positive = layout_ops::union(&self.layout.positive_spans, &h.positive_spans);
        let negative = layout_ops::union(&self.layout.negative_spans, &h.negative_spans);
        if positive != self.layout.positive_spans || negative != self.layout.negative_spans {
            self.recode(&positive, &negative);
        }
        if h.positive_spans == positive && h.negative_spans == negative {
            self.append_in_layout(t, h);
        } else {
            self.append_in_layout(t, &widen(h, &positive, &negative));
        }
    }

    /// Re-encodes every sample so far with a wider layout.
    fn recode(&mut self, positive: &[Span], negative: &[Span]) {
        let mut fresh = Self::new(self.header());
        fresh.layout = Layout {
            positive_spans: positive.to_vec(),
            negative_spans: negative.to_vec(),
            ..self.layout.clone()
        };
        for (t, old) in iter_float_histogram(self.bytes()) {
            let old = if old.is_stale() {
                old
            } else {
                widen(&old, positive, negative)
            };
            fresh.append_in_layout(t, &old);
        }
        *self = fresh;
    }

    /// Encodes `h`, whose layout is the chunk's (or which is a stale marker).
    fn append_in_layout(&mut self, t: i64, h: &FloatHistogram) {
        let mut t_delta = 0;
        if self.num == 0 {
            if h.is_stale() {
                self.layout = Layout::default();
            }
            self.layout.write(&mut self.w);
            varbit::put_int(&mut self.w, t);
            for v in [h.count, h.zero_count, h.sum]
                .iter()
                .chain(&h.positive_buckets)
                .chain(&h.negative_buckets)
            {
                self.w.write_bits(v.to_bits(), 64);
            }
            self.count = XorValue::new(h.count);
            self.zero_count = XorValue::new(h.zero_count);
            self.sum = XorValue::new(h.sum);
            self.positive = h
                .positive_buckets
                .iter()
                .map(|&v| XorValue::new(v))
                .collect();
            self.negative = h
                .negative_buckets
                .iter()
                .map(|&v| XorValue::new(v))
                .collect();
            self.t0 = t;
        } else {
            t_delta = t.wrapping_sub(self.t);
            varbit::put_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            self.count.write(&mut self.w, h.count);
            self.zero_count.write(&mut self.w, h.zero_count);
            self.sum.write(&mut self.w, h.sum);
            for (x, &v) in self.positive.iter_mut().zip(&h.positive_buckets) {
                x.write(&mut self.w, v);
            }
            for (x, &v) in self.negative.iter_mut().zip(&h.negative_buckets) {
                x.write(&mut self.w, v);
            }
        }
        self.num += 1;
        self.w.buf[..2].copy_from_slice(&self.num.to_be_bytes());
        self.t = t;
        self.t_delta = t_delta;
    }
}

fn widen(h: &FloatHistogram, positive: &[Span], negative: &[Span]) -> FloatHistogram {
    FloatHistogram {
        positive_buckets: layout_ops::expand_floats(
            &h.positive_spans,
            &h.positive_buckets,
            positive,
        ),
        negative_buckets: layout_ops::expand_floats(
            &h.negative_spans,
            &h.negative_buckets,
            negative,
        ),
        positive_spans: positive.to_vec(),
        negative_spans: negative.to_vec(),
        ..h.clone()
    }
}

/// Starts decoding a float histogram chunk.
pub fn iter_float_histogram(data: &[u8]) -> FloatHistogramIter<'_> {
    let (total, err) = match data {
        [a, b, _, ..] => (u16::from_be_bytes([*a, *b]), None),
        _ => (0, Some(ChunkError::MissingHeader(data.len()))),
    };
    FloatHistogramIter {
        br: BitReader { data, pos: 24 },
        header: CounterResetHeader::of(data),
        total,
        read: 0,
        layout: Layout::default(),
        t: 0,
        t_delta: 0,
        count: XorValue::new(0.0),
        zero_count: XorValue::new(0.0),
        sum: XorValue::new(0.0),
        positive: Vec::new(),
        negative: Vec::new(),
        err,
    }
}

/// Decoder over a float histogram chunk; check [`FloatHistogramIter::err`] after it ends.
#[derive(Debug, Clone)]
pub struct FloatHistogramIter<'a> {
    br: BitReader<'a>,
    header: CounterResetHeader,
    total: u16,
    read: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    count: XorValue,
    zero_count: XorValue,
    sum: XorValue,
    positive: Vec<XorValue>,
    negative: Vec<XorValue>,
    err: Option<ChunkError>,
}

impl FloatHistogramIter<'_> {
    /// The error that ended iteration early, if any.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// The chunk's counter-reset header.
    pub fn header(&self) -> CounterResetHeader {
        self.header
    }

    fn step(&mut self) -> Result<(), ChunkError> {
        let (read, total) = (self.read, self.total);
        let truncated = move || ChunkError::Truncated {
            read,
            expected: total,
        };
        if self.read == 0 {
            self.layout = Layout::read(&mut self.br, truncated)?;
            self.t = varbit::read_int(&mut self.br, truncated)?;
            let mut raw = || {
                self.br
                    .read_bits(64)
                    .map(f64::from_bits)
                    .ok_or_else(truncated)
            };
            self.count = XorValue::reading(raw()?);
            self.zero_count = XorValue::reading(raw()?);
            self.sum = XorValue::reading(raw()?);
            let (p, n) = (self.layout.positive_len(), self.layout.negative_len());
            self.positive = (0..p)
                .map(|_| raw().map(XorValue::reading))
                .collect::<Result<_, _>>()?;
            self.negative = (0..n)
                .map(|_| raw().map(XorValue::reading))
                .collect::<Result<_, _>>()?;
            return Ok(());
        }
        self.t_delta = self
            .t_delta
            .wrapping_add(varbit::read_int(&mut self.br, truncated)?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.count.read(&mut self.br, truncated, read)?;
        self.zero_count.read(&mut self.br, truncated, read)?;
        self.sum.read(&mut self.br, truncated, read)?;
        if self.sum.bits == STALE_NAN_BITS {
            return Ok(());
        }
        for x in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            x.read(&mut self.br, truncated, read)?;
        }
        Ok(())
    }

    fn current(&self) -> FloatHistogram {
        if self.sum.bits == STALE_NAN_BITS {
            return FloatHistogram::stale();
        }
        FloatHistogram {
            hint: self.header.hint_for(self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: f64::from_bits(self.zero_count.bits),
            count: f64::from_bits(self.count.bits),
            sum: f64::from_bits(self.sum.bits),
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: values(&self.positive).collect(),
            negative_buckets: values(&self.negative).collect(),
            custom_values: self.layout.custom_values.clone(),
        }
    }
}

impl Iterator for FloatHistogramIter<'_> {
    type Item = (i64, FloatHistogram);

    fn next(&mut self) -> Option<(i64, FloatHistogram)> {
        if self.err.is_some() || self.read >= self.total {
            return None;
        }
        match self.step() {
            Ok(()) => {
                let h = self.current();
                self.read += 1;
                Some((self.t, h))
            }
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::CounterResetHint;

    fn fh(count: f64, sum: f64, spans: &[(i32, u32)], counts: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 0.5,
            count,
            sum,
            positive_spans: spans
                .iter()
                .map(|&(offset, length)| Span { offset, length })
                .collect(),
            positive_buckets: counts.to_vec(),
            negative_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            negative_buckets: vec![0.25],
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn round_trip_with_widening_and_stale() {
        let mut app = FloatHistogramAppender::new(CounterResetHeader::NotCounterReset);
        app.append(10, &fh(1.5, 2.0, &[(0, 1)], &[0.75]));
        app.append(20, &fh(2.5, 3.5, &[(0, 1)], &[1.75]));
        let wider = fh(4.0, 7.25, &[(-1, 3)], &[0.5, 2.0, 1.0]);
        assert_eq!(app.placement(&wider), Placement::Append);
        app.append(30, &wider);
        let shrunk = fh(0.5, 0.5, &[(0, 1)], &[0.1]);
        assert_eq!(
            app.placement(&shrunk),
            Placement::NewChunk(CounterResetHeader::CounterReset)
        );
        app.append(40, &FloatHistogram::stale());
        let mut it = iter_float_histogram(app.bytes());
        let got: Vec<_> = it.by_ref().collect();
        assert_eq!(it.err(), None);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].1.positive_buckets, vec![0.0, 0.75, 0.0]);
        assert_eq!(got[1].1.positive_buckets, vec![0.0, 1.75, 0.0]);
        assert_eq!(
            got[2].1,
            FloatHistogram {
                hint: CounterResetHint::NotCounterReset,
                ..wider
            }
        );
        assert_eq!(got[0].1.hint, CounterResetHint::Unknown);
        assert!(got[3].1.is_stale());
        assert_eq!(
            got.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![10, 20, 30, 40]
        );
    }
}

//! Integer histogram chunks, Prometheus chunk encoding 2 (`histogram.go`).
//!
//! Layout: `num_samples u16 | header byte (counter-reset bits) | bucket layout`, then sample 0
//! as `varbit t | varbit_uint count | varbit_uint zero count | 64-bit sum | varbit buckets`, later
//! samples as delta-of-delta varbits of time, counts and every bucket, with the sum XOR-coded.
//! Every sample of a chunk has the chunk's bucket layout; a new bucket means re-encoding the
//! chunk with the wider layout, as Prometheus does.

use super::ChunkError;
use super::bstream::{BitReader, BitWriter, NO_WINDOW, xor_read, xor_write};
use super::histogram_meta::{CounterResetHeader, Layout};
use super::layout_ops;
use super::varbit;
use crate::histogram::{Histogram, STALE_NAN_BITS};

/// Where the next histogram of a series goes, as Prometheus' `Appendable` decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Into this chunk (widening its bucket layout if needed).
    Append,
    /// Into a new chunk with this header.
    NewChunk(CounterResetHeader),
}

/// Incremental histogram-chunk encoder; its buffer is a complete chunk after every append.
#[derive(Debug, Clone)]
pub struct HistogramAppender {
    w: BitWriter,
    num: u16,
    layout: Layout,
    t0: i64,
    t: i64,
    t_delta: i64,
    count: u64,
    zero_count: u64,
    count_delta: i64,
    zero_count_delta: i64,
    positive: Vec<i64>,
    negative: Vec<i64>,
    positive_delta: Vec<i64>,
    negative_delta: Vec<i64>,
    sum: u64,
    leading: u8,
    trailing: u8,
}

impl HistogramAppender {
    /// An empty chunk with the given counter-reset header.
    pub fn new(header: CounterResetHeader) -> Self {
        Self {
            w: BitWriter::with_header(&[0, 0, header.bits()]),
            num: 0,
            layout: Layout::default(),
            t0: 0,
            t: 0,
            t_delta: 0,
            count: 0,
            zero_count: 0,
            count_delta: 0,
            zero_count_delta: 0,
            positive: Vec::new(),
            negative: Vec::new(),
            positive_delta: Vec::new(),
            negative_delta: Vec::new(),
            sum: 0,
            leading: NO_WINDOW,
            trailing: 0,
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
    pub fn placement(&self, h: &Histogram) -> Placement {
        let shape = layout_ops::Shape {
            hint: h.hint,
            stale: h.is_stale(),
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            custom_values: &h.custom_values,
            positive_spans: &h.positive_spans,
            negative_spans: &h.negative_spans,
        };
        let chunk = (self.num, self.header(), self.sum == STALE_NAN_BITS);
        layout_ops::placement(chunk, &self.layout, shape, || {
            h.count < self.count
                || h.zero_count < self.zero_count
                || layout_ops::decreased(
                    &self.layout.positive_spans,
                    layout_ops::cumulative(&self.positive),
                    &h.positive_spans,
                    layout_ops::cumulative(&h.positive_buckets),
                )
                || layout_ops::decreased(
                    &self.layout.negative_spans,
                    layout_ops::cumulative(&self.negative),
                    &h.negative_spans,
                    layout_ops::cumulative(&h.negative_buckets),
                )
        })
    }

    /// Appends `h` at `t` (after the last timestamp; [`Self::placement`] said `Append`). A bucket
    /// the chunk lacks widens the chunk's layout; a bucket `h` lacks is appended as empty.
    pub fn append(&mut self, t: i64, h: &Histogram) {
        assert!(self.num < u16::MAX, "a chunk holds at most 65535 samples");
        if h.is_stale() {
            self.append_in_layout(t, &Histogram::stale());
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
            let mut wide = h.clone();
            wide.positive_buckets =
                layout_ops::expand_deltas(&h.positive_spans, &h.positive_buckets, &positive);
            wide.negative_buckets =
                layout_ops::expand_deltas(&h.negative_spans, &h.negative_buckets, &negative);
            wide.positive_spans = positive;
            wide.negative_spans = negative;
            self.append_in_layout(t, &wide);
        }
    }

    /// Re-encodes every sample so far with a wider layout.
    fn recode(&mut self, positive: &[crate::histogram::Span], negative: &[crate::histogram::Span]) {
        let mut fresh = Self::new(self.header());
        fresh.layout = Layout {
            positive_spans: positive.to_vec(),
            negative_spans: negative.to_vec(),
            ..self.layout.clone()
        };
        for (t, mut old) in iter_histogram(self.bytes()) {
            if !old.is_stale() {
                old.positive_buckets =
                    layout_ops::expand_deltas(&old.positive_spans, &old.positive_buckets, positive);
                old.negative_buckets =
                    layout_ops::expand_deltas(&old.negative_spans, &old.negative_buckets, negative);
                old.positive_spans = positive.to_vec();
                old.negative_spans = negative.to_vec();
            }
            fresh.append_in_layout(t, &old);
        }
        *self = fresh;
    }

    /// Encodes `h`, whose layout is the chunk's (or which is a stale marker).
    fn append_in_layout(&mut self, t: i64, h: &Histogram) {
        let mut t_delta = 0;
        let mut count_delta = 0;
        let mut zero_count_delta = 0;
        if self.num == 0 {
            if h.is_stale() {
                self.layout = Layout::default();
            }
            self.layout.write(&mut self.w);
            self.positive = vec![0; self.layout.positive_len()];
            self.negative = vec![0; self.layout.negative_len()];
            self.positive_delta = vec![0; self.positive.len()];
            self.negative_delta = vec![0; self.negative.len()];
            varbit::put_int(&mut self.w, t);
            varbit::put_uint(&mut self.w, h.count);
            varbit::put_uint(&mut self.w, h.zero_count);
            self.w.write_bits(h.sum.to_bits(), 64);
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                varbit::put_int(&mut self.w, b);
            }
            self.t0 = t;
        } else {
            t_delta = t.wrapping_sub(self.t);
            count_delta = (h.count as i64).wrapping_sub(self.count as i64);
            zero_count_delta = (h.zero_count as i64).wrapping_sub(self.zero_count as i64);
            let (count_dod, zero_dod) = if h.is_stale() {
                (0, 0)
            } else {
                (
                    count_delta.wrapping_sub(self.count_delta),
                    zero_count_delta.wrapping_sub(self.zero_count_delta),
                )
            };
            varbit::put_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
            varbit::put_int(&mut self.w, count_dod);
            varbit::put_int(&mut self.w, zero_dod);
            xor_write(
                &mut self.w,
                h.sum.to_bits(),
                self.sum,
                &mut self.leading,
                &mut self.trailing,
            );
            for (i, &b) in h.positive_buckets.iter().enumerate() {
                let delta = b.wrapping_sub(self.positive[i]);
                varbit::put_int(&mut self.w, delta.wrapping_sub(self.positive_delta[i]));
                self.positive_delta[i] = delta;
            }
            for (i, &b) in h.negative_buckets.iter().enumerate() {
                let delta = b.wrapping_sub(self.negative[i]);
                varbit::put_int(&mut self.w, delta.wrapping_sub(self.negative_delta[i]));
                self.negative_delta[i] = delta;
            }
        }
        self.num += 1;
        self.w.buf[..2].copy_from_slice(&self.num.to_be_bytes());
        self.t = t;
        self.t_delta = t_delta;
        self.count = h.count;
        self.zero_count = h.zero_count;
        self.count_delta = count_delta;
        self.zero_count_delta = zero_count_delta;
        for (dst, src) in [
            (&mut self.positive, &h.positive_buckets),
            (&mut self.negative, &h.negative_buckets),
        ] {
            dst[..src.len()].copy_from_slice(src);
        }
        self.sum = h.sum.to_bits();
    }
}

/// Starts decoding an integer histogram chunk.
pub fn iter_histogram(data: &[u8]) -> HistogramIter<'_> {
    let (total, err) = match data {
        [a, b, _, ..] => (u16::from_be_bytes([*a, *b]), None),
        _ => (0, Some(ChunkError::MissingHeader(data.len()))),
    };
    HistogramIter {
        br: BitReader { data, pos: 24 },
        header: CounterResetHeader::of(data),
        total,
        read: 0,
        layout: Layout::default(),
        t: 0,
        t_delta: 0,
        count: 0,
        zero_count: 0,
        count_delta: 0,
        zero_count_delta: 0,
        positive: Vec::new(),
        negative: Vec::new(),
        positive_delta: Vec::new(),
        negative_delta: Vec::new(),
        sum: 0,
        leading: 0,
        trailing: 0,
        err,
    }
}

/// Decoder over an integer histogram chunk; check [`HistogramIter::err`] after it ends.
#[derive(Debug, Clone)]
pub struct HistogramIter<'a> {
    br: BitReader<'a>,
    header: CounterResetHeader,
    total: u16,
    read: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    count: u64,
    zero_count: u64,
    count_delta: i64,
    zero_count_delta: i64,
    positive: Vec<i64>,
    negative: Vec<i64>,
    positive_delta: Vec<i64>,
    negative_delta: Vec<i64>,
    sum: u64,
    leading: u8,
    trailing: u8,
    err: Option<ChunkError>,
}

impl HistogramIter<'_> {
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
            self.positive = vec![0; self.layout.positive_len()];
            self.negative = vec![0; self.layout.negative_len()];
            self.positive_delta = vec![0; self.positive.len()];
            self.negative_delta = vec![0; self.negative.len()];
            self.t = varbit::read_int(&mut self.br, truncated)?;
            self.count = varbit::read_uint(&mut self.br, truncated)?;
            self.zero_count = varbit::read_uint(&mut self.br, truncated)?;
            self.sum = self.br.read_bits(64).ok_or_else(truncated)?;
            for b in self.positive.iter_mut().chain(self.negative.iter_mut()) {
                *b = varbit::read_int(&mut self.br, truncated)?;
            }
            return Ok(());
        }
        self.t_delta = self
            .t_delta
            .wrapping_add(varbit::read_int(&mut self.br, truncated)?);
        self.t = self.t.wrapping_add(self.t_delta);
        self.count_delta = self
            .count_delta
            .wrapping_add(varbit::read_int(&mut self.br, truncated)?);
        self.count = (self.count as i64).wrapping_add(self.count_delta) as u64;
        self.zero_count_delta = self
            .zero_count_delta
            .wrapping_add(varbit::read_int(&mut self.br, truncated)?);
        self.zero_count = (self.zero_count as i64).wrapping_add(self.zero_count_delta) as u64;
        xor_read(
            &mut self.br,
            &mut self.sum,
            &mut self.leading,
            &mut self.trailing,
            truncated,
            read,
        )?;
        if self.sum == STALE_NAN_BITS {
            return Ok(());
        }
        for (b, d) in self
            .positive
            .iter_mut()
            .zip(self.positive_delta.iter_mut())
            .chain(self.negative.iter_mut().zip(self.negative_delta.iter_mut()))
        {
            *d = d.wrapping_add(varbit::read_int(&mut self.br, truncated)?);
            *b = b.wrapping_add(*d);
        }
        Ok(())
    }

    fn current(&self) -> Histogram {
        if self.sum == STALE_NAN_BITS {
            return Histogram::stale();
        }
        Histogram {
            hint: self.header.hint_for(self.read),
            schema: self.layout.schema,
            zero_threshold: self.layout.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: f64::from_bits(self.sum),
            positive_spans: self.layout.positive_spans.clone(),
            negative_spans: self.layout.negative_spans.clone(),
            positive_buckets: self.positive.clone(),
            negative_buckets: self.negative.clone(),
            custom_values: self.layout.custom_values.clone(),
        }
    }
}

impl Iterator for HistogramIter<'_> {
    type Item = (i64, Histogram);

    fn next(&mut self) -> Option<(i64, Histogram)> {
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
    use crate::histogram::Span;

    fn h(count: u64, zero: u64, sum: f64, spans: &[(i32, u32)], counts: &[i64]) -> Histogram {
        let mut prev = 0;
        Histogram {
            schema: 1,
            zero_threshold: 2f64.powi(-128),
            zero_count: zero,
            count,
            sum,
            positive_spans: spans
                .iter()
                .map(|&(offset, length)| Span { offset, length })
                .collect(),
            positive_buckets: counts
                .iter()
                .map(|&c| {
                    let d = c - prev;
                    prev = c;
                    d
                })
                .collect(),
            ..Histogram::default()
        }
    }

    fn decode(data: &[u8]) -> Vec<(i64, Histogram)> {
        let mut it = iter_histogram(data);
        let out: Vec<_> = it.by_ref().collect();
        assert_eq!(it.err(), None);
        out
    }

    #[test]
    fn round_trip_in_one_layout() {
        let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
        let mut want = Vec::new();
        for i in 0..120u64 {
            let s = h(
                3 * i + 1,
                i,
                i as f64 * 0.25,
                &[(-1, 2), (3, 1)],
                &[i as i64, 2 * i as i64, 1],
            );
            assert_eq!(app.placement(&s), Placement::Append);
            app.append(15_000 * i as i64 + (i % 3) as i64, &s);
            want.push((15_000 * i as i64 + (i % 3) as i64, s));
        }
        let got = decode(app.bytes());
        assert_eq!(got.len(), 120);
        for (i, ((t, g), (wt, w))) in got.iter().zip(&want).enumerate() {
            assert_eq!(t, wt);
            assert_eq!(g.positive_buckets, w.positive_buckets, "sample {i}");
            assert_eq!(
                (g.count, g.zero_count, g.sum),
                (w.count, w.zero_count, w.sum)
            );
            assert_eq!(g.positive_spans, w.positive_spans);
        }
        assert_eq!(got[0].1.hint, CounterResetHint::Unknown);
        assert_eq!(got[1].1.hint, CounterResetHint::NotCounterReset);
        assert_eq!((app.min_time(), app.max_time()), (0, 15_000 * 119 + 2));
    }

    #[test]
    fn a_new_bucket_recodes_the_chunk_and_a_missing_one_reads_as_empty() {
        let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
        app.append(1000, &h(1, 0, 1.0, &[(0, 1)], &[1]));
        app.append(2000, &h(3, 0, 5.0, &[(0, 1), (2, 1)], &[1, 2]));
        assert_eq!(
            app.placement(&h(4, 0, 6.0, &[(3, 1)], &[4])),
            Placement::NewChunk(CounterResetHeader::CounterReset)
        );
        // Bucket 0 stays at 1 while it is left out: not a reset only if it stays in the layout.
        let same = h(4, 0, 6.0, &[(0, 1), (2, 1)], &[1, 3]);
        assert_eq!(app.placement(&same), Placement::Append);
        app.append(3000, &same);
        let got = decode(app.bytes());
        let spans = vec![
            Span {
                offset: 0,
                length: 1,
            },
            Span {
                offset: 2,
                length: 1,
            },
        ];
        assert!(got.iter().all(|(_, g)| g.positive_spans == spans));
        assert_eq!(got[0].1.positive_counts(), vec![1, 0]);
        assert_eq!(got[1].1.positive_counts(), vec![1, 2]);
        assert_eq!(got[2].1.positive_counts(), vec![1, 3]);
    }

    #[test]
    fn counter_resets_gauges_and_stale_markers_choose_chunks() {
        let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
        app.append(1000, &h(5, 1, 3.0, &[(0, 2)], &[2, 2]));
        for (next, want) in [
            (
                h(4, 1, 3.0, &[(0, 2)], &[1, 2]),
                Placement::NewChunk(CounterResetHeader::CounterReset),
            ),
            (
                h(5, 0, 3.0, &[(0, 2)], &[3, 2]),
                Placement::NewChunk(CounterResetHeader::CounterReset),
            ),
            (
                h(5, 1, 3.0, &[(0, 2)], &[3, 1]),
                Placement::NewChunk(CounterResetHeader::CounterReset),
            ),
            (h(6, 1, 3.0, &[(0, 2)], &[3, 2]), Placement::Append),
        ] {
            assert_eq!(app.placement(&next), want);
        }
        let mut other_schema = h(6, 1, 3.0, &[(0, 2)], &[3, 2]);
        other_schema.schema = 2;
        assert_eq!(
            app.placement(&other_schema),
            Placement::NewChunk(CounterResetHeader::Unknown)
        );
        let mut gauge = h(1, 0, 1.0, &[(0, 1)], &[1]);
        gauge.hint = CounterResetHint::Gauge;
        assert_eq!(
            app.placement(&gauge),
            Placement::NewChunk(CounterResetHeader::Gauge)
        );
        let mut hinted = h(9, 1, 3.0, &[(0, 2)], &[4, 4]);
        hinted.hint = CounterResetHint::CounterReset;
        assert_eq!(
            app.placement(&hinted),
            Placement::NewChunk(CounterResetHeader::CounterReset)
        );

        assert_eq!(app.placement(&Histogram::stale()), Placement::Append);
        app.append(2000, &Histogram::stale());
        assert_eq!(
            app.placement(&h(6, 1, 3.0, &[(0, 2)], &[3, 2])),
            Placement::NewChunk(CounterResetHeader::Unknown)
        );
        let got = decode(app.bytes());
        assert!(got[1].1.is_stale());
        assert_eq!(got[1].0, 2000);

        // Gauges go up and down in one chunk, layout changes both ways included.
        let mut g = HistogramAppender::new(CounterResetHeader::Gauge);
        let mut up = h(5, 0, 3.0, &[(0, 2)], &[2, 3]);
        up.hint = CounterResetHint::Gauge;
        let mut down = h(1, 0, 1.0, &[(1, 2)], &[0, 1]);
        down.hint = CounterResetHint::Gauge;
        g.append(1, &up);
        assert_eq!(g.placement(&down), Placement::Append);
        g.append(2, &down);
        let got = decode(g.bytes());
        assert_eq!(got[1].1.positive_counts(), vec![0, 0, 1]);
        assert!(got.iter().all(|(_, s)| s.hint == CounterResetHint::Gauge));
    }

    #[test]
    fn a_layout_never_grows_past_what_a_reader_accepts() {
        let wide = |first: i32| {
            let mut g = h(16_384, 0, 1.0, &[(first, 16_384)], &vec![1; 16_384]);
            g.hint = CounterResetHint::Gauge;
            g
        };
        let mut app = HistogramAppender::new(CounterResetHeader::Gauge);
        app.append(1, &wide(0));
        assert_eq!(app.placement(&wide(16_384)), Placement::Append);
        app.append(2, &wide(16_384));
        assert_eq!(
            app.placement(&wide(40_000)),
            Placement::NewChunk(CounterResetHeader::Gauge)
        );
        assert_eq!(decode(app.bytes()).len(), 2);
    }

    #[test]
    fn a_stale_marker_can_open_a_chunk() {
        let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
        app.append(5, &Histogram::stale());
        let got = decode(app.bytes());
        assert_eq!(got.len(), 1);
        assert!(got[0].1.is_stale());
    }

    #[test]
    fn truncated_chunks_are_errors() {
        let mut app = HistogramAppender::new(CounterResetHeader::Unknown);
        for i in 0..10 {
            app.append(i * 1000, &h(i as u64, 0, 0.0, &[(0, 1)], &[i]));
        }
        let bytes = app.bytes();
        for cut in [0, 2, 3, 6, bytes.len() - 1] {
            let mut it = iter_histogram(&bytes[..cut]);
            assert!(it.by_ref().count() < 10);
            assert!(it.err().is_some(), "cut {cut}");
        }
        // A layout claiming a million buckets is refused, not allocated.
        let mut w = BitWriter::with_header(&[0, 1, 0]);
        Layout {
            positive_spans: vec![Span {
                offset: 0,
                length: 1_000_000,
            }],
            ..Layout::default()
        }
        .write(&mut w);
        let mut it = iter_histogram(&w.buf);
        assert_eq!(it.next(), None);
        assert!(matches!(it.err(), Some(ChunkError::Corrupt { .. })));
    }
}

//! What histogram chunks share (`histogram_meta.go`): the counter-reset header in the third
//! byte and the bucket layout written once per chunk after it.

use super::ChunkError;
use super::bstream::{BitReader, BitWriter};
use super::varbit;
use crate::histogram::{CUSTOM_BUCKETS_SCHEMA, CounterResetHint, Span};

/// The top two bits of a histogram chunk's third byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CounterResetHeader {
    /// Nothing known (a series' first chunk, or a chunk cut for a layout change).
    #[default]
    Unknown,
    /// The chunk starts with a counter reset.
    CounterReset,
    /// The chunk continues the previous one without a reset.
    NotCounterReset,
    /// The chunk holds gauge histograms.
    Gauge,
}

impl CounterResetHeader {
    pub(crate) fn bits(self) -> u8 {
        match self {
            Self::Unknown => 0b0000_0000,
            Self::CounterReset => 0b1000_0000,
            Self::NotCounterReset => 0b0100_0000,
            Self::Gauge => 0b1100_0000,
        }
    }

    /// The header stored in a chunk's third byte.
    pub fn of(data: &[u8]) -> Self {
        match data.get(2).map(|b| b & 0b1100_0000) {
            Some(0b1000_0000) => Self::CounterReset,
            Some(0b0100_0000) => Self::NotCounterReset,
            Some(0b1100_0000) => Self::Gauge,
            _ => Self::Unknown,
        }
    }

    /// The hint a reader gives the sample at `index` (Prometheus' `counterResetHint`): only a
    /// chunk's first sample carries the header's news; gauges say so throughout.
    pub fn hint_for(self, index: u16) -> CounterResetHint {
        match (self, index) {
            (Self::Gauge, _) => CounterResetHint::Gauge,
            (Self::CounterReset, 0) => CounterResetHint::CounterReset,
            (_, 0) => CounterResetHint::Unknown,
            _ => CounterResetHint::NotCounterReset,
        }
    }
}

/// Bucket layout fixed for all samples of a chunk.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Layout {
    pub schema: i32,
    pub zero_threshold: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub custom_values: Vec<f64>,
}

impl Layout {
    pub(crate) fn write(&self, w: &mut BitWriter) {
        put_zero_threshold(w, self.zero_threshold);
        varbit::put_int(w, i64::from(self.schema));
        put_spans(w, &self.positive_spans);
        put_spans(w, &self.negative_spans);
        if self.schema == CUSTOM_BUCKETS_SCHEMA {
            varbit::put_uint(w, self.custom_values.len() as u64);
            for &b in &self.custom_values {
                put_custom_bound(w, b);
            }
        }
    }

    pub(crate) fn read(
        br: &mut BitReader<'_>,
        truncated: impl Fn() -> ChunkError + Copy,
    ) -> Result<Self, ChunkError> {
        let zero_threshold = read_zero_threshold(br).ok_or_else(truncated)?;
        let schema = varbit::read_int(br, truncated)?;
        let schema = i32::try_from(schema).map_err(|_| corrupt("schema out of range"))?;
        let positive_spans = read_spans(br, truncated)?;
        let negative_spans = read_spans(br, truncated)?;
        let mut custom_values = Vec::new();
        if schema == CUSTOM_BUCKETS_SCHEMA {
            let n = varbit::read_uint(br, truncated)?;
            for _ in 0..n {
                custom_values.push(read_custom_bound(br, truncated)?);
                if custom_values.len() > MAX_BUCKETS {
                    return Err(corrupt("too many custom bounds"));
                }
            }
        }
        Ok(Self {
            schema,
            zero_threshold,
            positive_spans,
            negative_spans,
            custom_values,
        })
    }

    pub(crate) fn positive_len(&self) -> usize {
        span_len(&self.positive_spans)
    }

    pub(crate) fn negative_len(&self) -> usize {
        span_len(&self.negative_spans)
    }
}

/// More buckets than any schema can have: a layout claiming more is corrupt, not allocated.
const MAX_BUCKETS: usize = 1 << 16;

fn corrupt(reason: &'static str) -> ChunkError {
    ChunkError::Corrupt { sample: 0, reason }
}

fn span_len(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

fn put_spans(w: &mut BitWriter, spans: &[Span]) {
    varbit::put_uint(w, spans.len() as u64);
    for s in spans {
        varbit::put_uint(w, u64::from(s.length));
        varbit::put_int(w, i64::from(s.offset));
    }
}

fn read_spans(
    br: &mut BitReader<'_>,
    truncated: impl Fn() -> ChunkError + Copy,
) -> Result<Vec<Span>, ChunkError> {
    let n = varbit::read_uint(br, truncated)?;
    let mut spans = Vec::new();
    let mut buckets = 0usize;
    for _ in 0..n {
        let length = varbit::read_uint(br, truncated)?;
        let offset = varbit::read_int(br, truncated)?;
        let length = u32::try_from(length).map_err(|_| corrupt("span length out of range"))?;
        let offset = i32::try_from(offset).map_err(|_| corrupt("span offset out of range"))?;
        buckets += length as usize;
        if buckets > MAX_BUCKETS || spans.len() >= MAX_BUCKETS {
            return Err(corrupt("too many buckets"));
        }
        spans.push(Span { offset, length });
    }
    Ok(spans)
}

/// 0 as one zero byte; a power of two 2^-243..2^10 as one byte; anything else as 0xFF + f64.
fn put_zero_threshold(w: &mut BitWriter, threshold: f64) {
    if threshold == 0.0 {
        w.write_bits(0, 8);
        return;
    }
    match frexp(threshold) {
        (frac, exp) if frac == 0.5 && (-242..=11).contains(&exp) => {
            w.write_bits((exp + 243) as u64, 8);
        }
        _ => {
            w.write_bits(0xff, 8);
            w.write_bits(threshold.to_bits(), 64);
        }
    }
}

fn read_zero_threshold(br: &mut BitReader<'_>) -> Option<f64> {
    match br.read_bits(8)? {
        0 => Some(0.0),
        0xff => Some(f64::from_bits(br.read_bits(64)?)),
        b => Some(0.5 * 2f64.powi(b as i32 - 243)),
    }
}

/// Go's `math.Frexp` for finite non-zero values: `x = frac × 2^exp`, `0.5 ≤ |frac| < 1`.
fn frexp(x: f64) -> (f64, i32) {
    if !x.is_finite() || x == 0.0 {
        return (x, 0);
    }
    let (x, bias) = if x.abs() < f64::MIN_POSITIVE {
        // Subnormal: scale into the normal range first.
        (x * (1u64 << 54) as f64, -54)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp + bias)
}

/// Custom bounds that are whole multiples of 0.001 up to 33554.43 take a varbit; others 65 bits.
fn put_custom_bound(w: &mut BitWriter, b: f64) {
    let scaled = b * 1000.0;
    let whole = (scaled.round() / 1000.0) == b;
    if !(0.0..=33_554_430.0).contains(&scaled) || !whole {
        w.write_bits(0, 1);
        w.write_bits(b.to_bits(), 64);
        return;
    }
    varbit::put_uint(w, scaled.round() as u64 + 1);
}

fn read_custom_bound(
    br: &mut BitReader<'_>,
    truncated: impl Fn() -> ChunkError + Copy,
) -> Result<f64, ChunkError> {
    match varbit::read_uint(br, truncated)? {
        0 => Ok(f64::from_bits(br.read_bits(64).ok_or_else(truncated)?)),
        n => Ok((n - 1) as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_go() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(2f64.powi(-128)), (0.5, -127));
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(f64::from_bits(1)), (0.5, -1073));
    }

    #[test]
    fn zero_thresholds_take_one_byte_when_powers_of_two() {
        for (t, bytes) in [
            (0.0, 1),
            (2f64.powi(-128), 1),
            (1024.0, 1),
            (2048.0, 9),
            (0.001, 9),
        ] {
            let mut w = BitWriter::with_header(&[]);
            put_zero_threshold(&mut w, t);
            assert_eq!(w.buf.len(), bytes, "{t}");
            let mut br = BitReader {
                data: &w.buf,
                pos: 0,
            };
            assert_eq!(read_zero_threshold(&mut br), Some(t));
        }
    }

    #[test]
    fn custom_bounds_round_trip() {
        let layout = Layout {
            schema: CUSTOM_BUCKETS_SCHEMA,
            positive_spans: vec![Span {
                offset: 0,
                length: 4,
            }],
            custom_values: vec![0.005, 0.1, 2.5, 1e9, 0.1234567],
            ..Layout::default()
        };
        let mut w = BitWriter::with_header(&[]);
        layout.write(&mut w);
        let mut br = BitReader {
            data: &w.buf,
            pos: 0,
        };
        let back = Layout::read(&mut br, || ChunkError::MissingHeader(0)).unwrap();
        assert_eq!(back, layout);
    }
}

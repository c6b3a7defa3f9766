//! The body of one histogram row in Prometheus' WAL histogram records (`tsdb/record`): types 7
//! (integer), 8 (float), and 9/10 for custom-bucket histograms, which append their bounds.
//!
//! Row: `hint u8 | schema varint | zero threshold f64 BE | zero count | count | sum f64 BE |
//! (n uvarint, (offset varint, length uvarint)*) twice | (n uvarint, bucket*) twice`, counts
//! as uvarints and buckets as varint deltas for integer histograms, both as f64 BE for float
//! histograms; custom-bucket rows end with `n uvarint, bound f64 BE *`.

use tsdb_format::encoding::{put_uvarint, put_varint, uvarint, varint};
use tsdb_format::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, STALE_NAN_BITS, Span,
};

use super::HistogramValue;

/// Integer histogram samples.
pub const RECORD_HISTOGRAMS: u8 = 7;
/// Float histogram samples.
pub const RECORD_FLOAT_HISTOGRAMS: u8 = 8;
/// Integer histogram samples with custom buckets.
pub const RECORD_CUSTOM_HISTOGRAMS: u8 = 9;
/// Float histogram samples with custom buckets.
pub const RECORD_CUSTOM_FLOAT_HISTOGRAMS: u8 = 10;

/// Most spans or buckets a row may declare; more is corruption, not an allocation.
const MAX_ITEMS: u64 = 1 << 16;

/// The record type a histogram's rows go in.
pub fn record_type(h: &HistogramValue) -> u8 {
    match h {
        HistogramValue::Int(h) if h.schema == CUSTOM_BUCKETS_SCHEMA => RECORD_CUSTOM_HISTOGRAMS,
        HistogramValue::Int(_) => RECORD_HISTOGRAMS,
        HistogramValue::Float(h) if h.schema == CUSTOM_BUCKETS_SCHEMA => {
            RECORD_CUSTOM_FLOAT_HISTOGRAMS
        }
        HistogramValue::Float(_) => RECORD_FLOAT_HISTOGRAMS,
    }
}

fn hint_byte(h: CounterResetHint) -> u8 {
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::CounterReset => 1,
        CounterResetHint::NotCounterReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

fn hint_of(b: u8) -> CounterResetHint {
    match b {
        1 => CounterResetHint::CounterReset,
        2 => CounterResetHint::NotCounterReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    }
}

fn put_spans(buf: &mut Vec<u8>, spans: &[Span]) {
    put_uvarint(buf, spans.len() as u64);
    for s in spans {
        put_varint(buf, i64::from(s.offset));
        put_uvarint(buf, u64::from(s.length));
    }
}

fn put_f64(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_bits().to_be_bytes());
}

fn put_custom(buf: &mut Vec<u8>, schema: i32, values: &[f64]) {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        put_uvarint(buf, values.len() as u64);
        for &v in values {
            put_f64(buf, v);
        }
    }
}

/// Appends a histogram's row body (what follows the ref and time deltas).
pub fn encode(buf: &mut Vec<u8>, h: &HistogramValue) {
    match h {
        HistogramValue::Int(h) => {
            buf.push(hint_byte(h.hint));
            put_varint(buf, i64::from(h.schema));
            put_f64(buf, h.zero_threshold);
            put_uvarint(buf, h.zero_count);
            put_uvarint(buf, h.count);
            put_f64(buf, h.sum);
            put_spans(buf, &h.positive_spans);
            put_spans(buf, &h.negative_spans);
            for side in [&h.positive_buckets, &h.negative_buckets] {
                put_uvarint(buf, side.len() as u64);
                for &b in side {
                    put_varint(buf, b);
                }
            }
            put_custom(buf, h.schema, &h.custom_values);
        }
        HistogramValue::Float(h) => {
            buf.push(hint_byte(h.hint));
            put_varint(buf, i64::from(h.schema));
            put_f64(buf, h.zero_threshold);
            put_f64(buf, h.zero_count);
            put_f64(buf, h.count);
            put_f64(buf, h.sum);
            put_spans(buf, &h.positive_spans);
            put_spans(buf, &h.negative_spans);
            for side in [&h.positive_buckets, &h.negative_buckets] {
                put_uvarint(buf, side.len() as u64);
                for &b in side {
                    put_f64(buf, b);
                }
            }
            put_custom(buf, h.schema, &h.custom_values);
        }
    }
}

/// A cursor over a row body.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn uvarint(&mut self) -> Option<u64> {
        let (v, n) = uvarint(self.0)?;
        self.0 = &self.0[n..];
        Some(v)
    }

    fn varint(&mut self) -> Option<i64> {
        let (v, n) = varint(self.0)?;
        self.0 = &self.0[n..];
        Some(v)
    }

    fn f64(&mut self) -> Option<f64> {
        let b = self.0.get(..8)?;
        let v = f64::from_bits(u64::from_be_bytes(b.try_into().ok()?));
        self.0 = &self.0[8..];
        Some(v)
    }

    fn count(&mut self) -> Option<usize> {
        self.uvarint()
            .filter(|&n| n <= MAX_ITEMS)
            .map(|n| n as usize)
    }

    fn spans(&mut self) -> Option<Vec<Span>> {
        (0..self.count()?)
            .map(|_| {
                Some(Span {
                    offset: i32::try_from(self.varint()?).ok()?,
                    length: u32::try_from(self.uvarint()?).ok()?,
                })
            })
            .collect()
    }

    fn custom(&mut self, kind: u8) -> Option<Vec<f64>> {
        if kind == RECORD_CUSTOM_HISTOGRAMS || kind == RECORD_CUSTOM_FLOAT_HISTOGRAMS {
            (0..self.count()?).map(|_| self.f64()).collect()
        } else {
            Some(Vec::new())
        }
    }
}

/// Reads one row body of a record of type `kind` from the start of `*rest`, advancing it.
pub fn decode(kind: u8, rest: &mut &[u8]) -> Option<HistogramValue> {
    let mut c = Cursor(rest);
    let hint = hint_of(c.byte()?);
    let schema = i32::try_from(c.varint()?).ok()?;
    let zero_threshold = c.f64()?;
    let h = if kind == RECORD_HISTOGRAMS || kind == RECORD_CUSTOM_HISTOGRAMS {
        let zero_count = c.uvarint()?;
        let count = c.uvarint()?;
        let sum = c.f64()?;
        let positive_spans = c.spans()?;
        let negative_spans = c.spans()?;
        let positive_buckets = (0..c.count()?).map(|_| c.varint()).collect::<Option<_>>()?;
        let negative_buckets = (0..c.count()?).map(|_| c.varint()).collect::<Option<_>>()?;
        let custom_values = c.custom(kind)?;
        HistogramValue::Int(Histogram {
            hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values,
        })
    } else {
        let zero_count = c.f64()?;
        let count = c.f64()?;
        let sum = c.f64()?;
        let positive_spans = c.spans()?;
        let negative_spans = c.spans()?;
        let positive_buckets = (0..c.count()?).map(|_| c.f64()).collect::<Option<_>>()?;
        let negative_buckets = (0..c.count()?).map(|_| c.f64()).collect::<Option<_>>()?;
        let custom_values = c.custom(kind)?;
        HistogramValue::Float(FloatHistogram {
            hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values,
        })
    };
    *rest = c.0;
    Some(h)
}

/// A 64-bit fingerprint of a histogram, to tell a resent duplicate from a conflicting value
/// at the same timestamp without keeping the histogram. Every stale marker has the float stale
/// marker's bits, so a float and a histogram stale marker at one time are duplicates.
pub fn fingerprint(h: &HistogramValue) -> u64 {
    if h.is_stale() {
        return STALE_NAN_BITS;
    }
    let mut buf = Vec::with_capacity(128);
    buf.push(record_type(h));
    encode(&mut buf, h);
    xxhash_rust::xxh3::xxh3_64(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_for_every_record_type() {
        let int = Histogram {
            hint: CounterResetHint::Gauge,
            schema: -1,
            zero_threshold: 0.001,
            zero_count: 3,
            count: 10,
            sum: -2.5,
            positive_spans: vec![Span {
                offset: -3,
                length: 2,
            }],
            positive_buckets: vec![4, -1],
            negative_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            negative_buckets: vec![0],
            custom_values: vec![],
        };
        let nhcb = Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            zero_threshold: 0.0,
            negative_spans: vec![],
            negative_buckets: vec![],
            custom_values: vec![0.1, 0.5],
            ..int.clone()
        };
        let float = int.to_float();
        let float_nhcb = nhcb.to_float();
        for h in [
            HistogramValue::Int(int),
            HistogramValue::Int(nhcb),
            HistogramValue::Float(float),
            HistogramValue::Float(float_nhcb),
        ] {
            let mut buf = Vec::new();
            encode(&mut buf, &h);
            buf.push(0xAB);
            let mut rest = &buf[..];
            assert_eq!(decode(record_type(&h), &mut rest), Some(h.clone()));
            assert_eq!(rest, &[0xAB], "the row is consumed exactly");
            // Every truncation is refused.
            for cut in 0..buf.len() - 1 {
                let mut short = &buf[..cut];
                assert_eq!(decode(record_type(&h), &mut short), None, "cut {cut}");
            }
        }
    }

    #[test]
    fn fingerprints_tell_values_apart() {
        let a = HistogramValue::Int(Histogram {
            count: 1,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![1],
            ..Histogram::default()
        });
        let mut b = a.clone();
        if let HistogramValue::Int(h) = &mut b {
            h.sum = 1.0;
        }
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}

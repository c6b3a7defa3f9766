//! Decoding `prometheus.Histogram` (remote write 1.0 `TimeSeries.histograms = 4`, and 2.0
//! `TimeSeries.histograms = 3`, which shares fields 1-16) into a [`HistogramSample`].
//!
//! Histograms are rare next to float samples and own their spans and buckets, so they are
//! decoded into owned values rather than spans of the body.

use tsdb_format::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};

use super::DecodeError;
use super::protobuf::{Reader, WIRE_I64, WIRE_LEN, WIRE_VARINT};
use crate::tsdb::{HistogramSample, HistogramValue};

/// Most buckets one histogram may carry on one side (schema 8 spans ~2^8 buckets per power of
/// two; this is far above any real histogram and bounds what a hostile one can allocate).
pub const MAX_BUCKETS: usize = 1 << 14;

fn zigzag32(v: u64) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn decode_span(buf: &[u8], start: usize, end: usize) -> Result<Span, DecodeError> {
    let mut span = Span {
        offset: 0,
        length: 0,
    };
    let mut r = Reader::new(start, end);
    while !r.done() {
        let (field, wire) = r.key(buf)?;
        match (field, wire) {
            (1, WIRE_VARINT) => span.offset = zigzag32(r.varint(buf)?),
            (2, WIRE_VARINT) => span.length = r.varint(buf)? as u32,
            _ => r.skip(buf, field, wire)?,
        }
    }
    Ok(span)
}

/// Reads a repeated `sint64` (packed or not) into `out`.
fn push_sint64s(
    r: &mut Reader,
    buf: &[u8],
    wire: u8,
    out: &mut Vec<i64>,
) -> Result<(), DecodeError> {
    if wire == WIRE_LEN {
        let (s, e) = r.len_delimited(buf)?;
        let mut packed = Reader::new(s, e);
        while !packed.done() {
            out.push(zigzag64(packed.varint(buf)?));
            if out.len() > MAX_BUCKETS {
                return Err(DecodeError::TooManyBuckets);
            }
        }
    } else {
        out.push(zigzag64(r.varint(buf)?));
    }
    if out.len() > MAX_BUCKETS {
        return Err(DecodeError::TooManyBuckets);
    }
    Ok(())
}

/// Reads a repeated `double` (packed or not) into `out`.
fn push_doubles(
    r: &mut Reader,
    buf: &[u8],
    wire: u8,
    out: &mut Vec<f64>,
) -> Result<(), DecodeError> {
    if wire == WIRE_LEN {
        let (s, e) = r.len_delimited(buf)?;
        if (e - s) % 8 != 0 {
            return Err(DecodeError::Truncated);
        }
        if out.len() + (e - s) / 8 > MAX_BUCKETS {
            return Err(DecodeError::TooManyBuckets);
        }
        out.extend(
            buf[s..e]
                .chunks_exact(8)
                .map(|c| f64::from_bits(u64::from_le_bytes(c.try_into().expect("8 bytes")))),
        );
    } else {
        out.push(f64::from_bits(r.fixed64(buf)?));
        if out.len() > MAX_BUCKETS {
            return Err(DecodeError::TooManyBuckets);
        }
    }
    Ok(())
}

fn push_span(r: &mut Reader, buf: &[u8], out: &mut Vec<Span>) -> Result<(), DecodeError> {
    let (s, e) = r.len_delimited(buf)?;
    out.push(decode_span(buf, s, e)?);
    if out.len() > MAX_BUCKETS {
        return Err(DecodeError::TooManyBuckets);
    }
    Ok(())
}

/// Decodes one `prometheus.Histogram` message in `buf[start..end]`. It is a float histogram
/// when its count is `count_float` (or it carries float bucket counts), as Prometheus decides.
pub fn decode_histogram(
    buf: &[u8],
    start: usize,
    end: usize,
) -> Result<HistogramSample, DecodeError> {
    let mut count_int = None;
    let mut count_float = None;
    let mut zero_int = 0u64;
    let mut zero_float = None;
    let mut sum = 0.0;
    let mut schema = 0;
    let mut zero_threshold = 0.0;
    let (mut pos_spans, mut neg_spans) = (Vec::new(), Vec::new());
    let (mut pos_deltas, mut neg_deltas) = (Vec::new(), Vec::new());
    let (mut pos_counts, mut neg_counts) = (Vec::new(), Vec::new());
    let mut custom_values = Vec::new();
    let mut hint = CounterResetHint::Unknown;
    let mut t = 0i64;
    let mut r = Reader::new(start, end);
    while !r.done() {
        let (field, wire) = r.key(buf)?;
        match (field, wire) {
            (1, WIRE_VARINT) => count_int = Some(r.varint(buf)?),
            (2, WIRE_I64) => count_float = Some(f64::from_bits(r.fixed64(buf)?)),
            (3, WIRE_I64) => sum = f64::from_bits(r.fixed64(buf)?),
            (4, WIRE_VARINT) => schema = zigzag32(r.varint(buf)?),
            (5, WIRE_I64) => zero_threshold = f64::from_bits(r.fixed64(buf)?),
            (6, WIRE_VARINT) => zero_int = r.varint(buf)?,
            (7, WIRE_I64) => zero_float = Some(f64::from_bits(r.fixed64(buf)?)),
            (8, WIRE_LEN) => push_span(&mut r, buf, &mut neg_spans)?,
            (9, WIRE_LEN | WIRE_VARINT) => push_sint64s(&mut r, buf, wire, &mut neg_deltas)?,
            (10, WIRE_LEN | WIRE_I64) => push_doubles(&mut r, buf, wire, &mut neg_counts)?,
            (11, WIRE_LEN) => push_span(&mut r, buf, &mut pos_spans)?,
            (12, WIRE_LEN | WIRE_VARINT) => push_sint64s(&mut r, buf, wire, &mut pos_deltas)?,
            (13, WIRE_LEN | WIRE_I64) => push_doubles(&mut r, buf, wire, &mut pos_counts)?,
            (14, WIRE_VARINT) => {
                hint = match r.varint(buf)? {
                    1 => CounterResetHint::CounterReset,
                    2 => CounterResetHint::NotCounterReset,
                    3 => CounterResetHint::Gauge,
                    _ => CounterResetHint::Unknown,
                }
            }
            (15, WIRE_VARINT) => t = r.varint(buf)? as i64,
            (16, WIRE_LEN | WIRE_I64) => push_doubles(&mut r, buf, wire, &mut custom_values)?,
            _ => r.skip(buf, field, wire)?,
        }
    }
    let float = count_float.is_some()
        || zero_float.is_some()
        || (count_int.is_none() && (!pos_counts.is_empty() || !neg_counts.is_empty()));
    let h = if float {
        HistogramValue::Float(FloatHistogram {
            hint,
            schema,
            zero_threshold,
            zero_count: zero_float.unwrap_or(zero_int as f64),
            count: count_float.unwrap_or(count_int.unwrap_or(0) as f64),
            sum,
            positive_spans: pos_spans,
            negative_spans: neg_spans,
            positive_buckets: pos_counts,
            negative_buckets: neg_counts,
            custom_values,
        })
    } else {
        HistogramValue::Int(Histogram {
            hint,
            schema,
            zero_threshold,
            zero_count: zero_int,
            count: count_int.unwrap_or(0),
            sum,
            positive_spans: pos_spans,
            negative_spans: neg_spans,
            positive_buckets: pos_deltas,
            negative_buckets: neg_deltas,
            custom_values,
        })
    };
    Ok(HistogramSample { t, h })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::v1;
    use prost::Message;

    #[test]
    fn integer_and_float_histograms_decode_as_prost_encodes_them() {
        let int = Histogram {
            hint: CounterResetHint::NotCounterReset,
            schema: -2,
            zero_threshold: 1e-3,
            zero_count: 2,
            count: 9,
            sum: 12.5,
            positive_spans: vec![
                Span {
                    offset: -1,
                    length: 2,
                },
                Span {
                    offset: 3,
                    length: 1,
                },
            ],
            positive_buckets: vec![1, 2, -1],
            negative_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            negative_buckets: vec![1],
            custom_values: vec![],
        };
        let bytes = v1::Histogram::from_int(1234, &int).encode_to_vec();
        let got = decode_histogram(&bytes, 0, bytes.len()).unwrap();
        assert_eq!(
            got,
            HistogramSample {
                t: 1234,
                h: HistogramValue::Int(int.clone())
            }
        );

        let float = FloatHistogram {
            hint: CounterResetHint::Gauge,
            ..int.to_float()
        };
        let bytes = v1::Histogram::from_float(-5, &float).encode_to_vec();
        let got = decode_histogram(&bytes, 0, bytes.len()).unwrap();
        assert_eq!(
            got,
            HistogramSample {
                t: -5,
                h: HistogramValue::Float(float)
            }
        );

        let nhcb = Histogram {
            schema: -53,
            count: 1,
            sum: 0.5,
            positive_spans: vec![Span {
                offset: 0,
                length: 1,
            }],
            positive_buckets: vec![1],
            custom_values: vec![0.5, 1.0],
            ..Histogram::default()
        };
        let bytes = v1::Histogram::from_int(7, &nhcb).encode_to_vec();
        assert_eq!(
            decode_histogram(&bytes, 0, bytes.len()).unwrap().h,
            HistogramValue::Int(nhcb)
        );
    }

    #[test]
    fn hostile_histograms_are_refused_not_allocated() {
        // positive_counts (13) packed, claiming 2^15 doubles.
        let mut body = vec![0x6a];
        let n = 8 * (MAX_BUCKETS + 1);
        let mut len = n;
        while len >= 0x80 {
            body.push(len as u8 | 0x80);
            len >>= 7;
        }
        body.push(len as u8);
        body.extend(std::iter::repeat_n(0u8, n));
        assert!(matches!(
            decode_histogram(&body, 0, body.len()),
            Err(DecodeError::TooManyBuckets)
        ));
        // A packed double field whose length is not a multiple of 8.
        let body = [0x6a, 3, 0, 0, 0];
        assert!(decode_histogram(&body, 0, body.len()).is_err());
    }
}

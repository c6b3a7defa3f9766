//! Native histograms as Prometheus models them (`model/histogram`): sparse exponential
//! buckets described by spans, integer or float counts, and custom-bucket (NHCB) schema -53.

use std::fmt;

/// Smallest exponential schema (buckets grow by 2^16 per bucket).
pub const SCHEMA_MIN: i32 = -4;
/// Largest exponential schema (buckets grow by 2^(2^-8) per bucket).
pub const SCHEMA_MAX: i32 = 8;
/// The schema of histograms with custom bucket bounds (NHCB).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// Prometheus' stale marker; a histogram whose sum has these bits is a stale marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A run of consecutive buckets: `offset` buckets after the previous span (or from index 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Gap to the previous span's end; the first span's offset is the first bucket's index.
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// What the sender says about counter resets (`ResetHint` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// Nothing known; the store decides by comparing with the previous sample.
    #[default]
    Unknown,
    /// This sample follows a counter reset.
    CounterReset,
    /// This sample does not follow a counter reset.
    NotCounterReset,
    /// A gauge histogram: counts go up and down.
    Gauge,
}

/// An integer-count native histogram; bucket counts are deltas from the previous bucket.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter-reset hint.
    pub hint: CounterResetHint,
    /// Resolution: -4..=8 exponential, or -53 for custom buckets.
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Observations in total.
    pub count: u64,
    /// Sum of observations.
    pub sum: f64,
    /// Layout of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Layout of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, each a delta to the previous bucket's count.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts, each a delta to the previous bucket's count.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of the custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// A float-count native histogram; bucket counts are absolute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter-reset hint.
    pub hint: CounterResetHint,
    /// Resolution: -4..=8 exponential, or -53 for custom buckets.
    pub schema: i32,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Observations in total.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Layout of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Layout of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// Why a histogram is not valid (Prometheus' `histogram.Validate` rules).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HistogramError {
    /// Schema outside -4..=8 and not -53.
    InvalidSchema(i32),
    /// A span after the first has a negative offset.
    NegativeSpanOffset {
        /// "positive" or "negative".
        side: &'static str,
    },
    /// The spans reach bucket indices outside 32 bits.
    BucketIndexOutOfRange {
        /// "positive" or "negative".
        side: &'static str,
    },
    /// The spans describe a different number of buckets than given.
    SpansBucketsMismatch {
        /// "positive" or "negative".
        side: &'static str,
        /// Buckets the spans describe.
        spans: u64,
        /// Buckets given.
        buckets: usize,
    },
    /// A bucket's (absolute) count is negative.
    NegativeBucketCount {
        /// "positive" or "negative".
        side: &'static str,
    },
    /// A count is negative or NaN (float histograms).
    NegativeCount,
    /// The buckets hold more or other observations than the count says.
    CountMismatch {
        /// Observations in buckets and the zero bucket.
        in_buckets: u64,
        /// The count field.
        count: u64,
    },
    /// Custom bounds are missing, unsorted, infinite or NaN, or custom buckets use fields
    /// they must not.
    CustomBuckets(&'static str),
    /// An exponential histogram carries custom bounds.
    ExponentialWithCustomBounds,
}

impl fmt::Display for HistogramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSchema(s) => write!(
                f,
                "histogram has an invalid schema {s}: it must be between {SCHEMA_MIN} and {SCHEMA_MAX} for exponential buckets, or {CUSTOM_BUCKETS_SCHEMA} for custom buckets"
            ),
            Self::NegativeSpanOffset { side } => {
                write!(
                    f,
                    "{side} side: histogram has a span whose offset is negative"
                )
            }
            Self::BucketIndexOutOfRange { side } => {
                write!(f, "{side} side: spans reach bucket indices outside 32 bits")
            }
            Self::SpansBucketsMismatch {
                side,
                spans,
                buckets,
            } => write!(
                f,
                "{side} side: spans need {spans} buckets, have {buckets} buckets"
            ),
            Self::NegativeBucketCount { side } => write!(
                f,
                "{side} side: histogram has a bucket whose observation count is negative"
            ),
            Self::NegativeCount => write!(f, "histogram's observation count is negative"),
            Self::CountMismatch { in_buckets, count } => write!(
                f,
                "{in_buckets} observations found in buckets, but the Count field is {count}"
            ),
            Self::CustomBuckets(why) => write!(f, "custom buckets: {why}"),
            Self::ExponentialWithCustomBounds => {
                write!(
                    f,
                    "histogram with exponential schema must not have custom bounds"
                )
            }
        }
    }
}

impl std::error::Error for HistogramError {}

impl Histogram {
    /// Whether this is a stale marker.
    pub fn is_stale(&self) -> bool {
        self.sum.to_bits() == STALE_NAN_BITS
    }

    /// A stale marker.
    pub fn stale() -> Self {
        Self {
            sum: f64::from_bits(STALE_NAN_BITS),
            ..Self::default()
        }
    }

    /// Checks the histogram as Prometheus does before storing it.
    pub fn validate(&self) -> Result<(), HistogramError> {
        check_layout(
            self.schema,
            self.zero_threshold,
            self.zero_count != 0,
            &self.positive_spans,
            self.positive_buckets.len(),
            &self.negative_spans,
            self.negative_buckets.len(),
            &self.custom_values,
        )?;
        let positive = absolute_sum(&self.positive_buckets, "positive")?;
        let negative = absolute_sum(&self.negative_buckets, "negative")?;
        let in_buckets = positive
            .saturating_add(negative)
            .saturating_add(self.zero_count);
        // Without a sum (NaN) some observations may have been NaN and sit in no bucket.
        let ok = if self.sum.is_nan() {
            in_buckets <= self.count
        } else {
            in_buckets == self.count
        };
        if !ok {
            return Err(HistogramError::CountMismatch {
                in_buckets,
                count: self.count,
            });
        }
        Ok(())
    }

    /// Absolute positive bucket counts.
    pub fn positive_counts(&self) -> Vec<i64> {
        cumulative(&self.positive_buckets)
    }

    /// Absolute negative bucket counts.
    pub fn negative_counts(&self) -> Vec<i64> {
        cumulative(&self.negative_buckets)
    }

    /// The same histogram with float counts.
    pub fn to_float(&self) -> FloatHistogram {
        let floats = |d: &[i64]| cumulative(d).into_iter().map(|c| c as f64).collect();
        FloatHistogram {
            hint: self.hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: floats(&self.positive_buckets),
            negative_buckets: floats(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }
}

impl FloatHistogram {
    /// Whether this is a stale marker.
    pub fn is_stale(&self) -> bool {
        self.sum.to_bits() == STALE_NAN_BITS
    }

    /// A stale marker.
    pub fn stale() -> Self {
        Self {
            sum: f64::from_bits(STALE_NAN_BITS),
            ..Self::default()
        }
    }

    /// Checks the histogram as Prometheus does before storing it (float counts are not
    /// summed against the count: rounding would give false alarms).
    pub fn validate(&self) -> Result<(), HistogramError> {
        check_layout(
            self.schema,
            self.zero_threshold,
            self.zero_count != 0.0,
            &self.positive_spans,
            self.positive_buckets.len(),
            &self.negative_spans,
            self.negative_buckets.len(),
            &self.custom_values,
        )?;
        for (side, buckets) in [
            ("positive", &self.positive_buckets),
            ("negative", &self.negative_buckets),
        ] {
            if buckets.iter().any(|&c| c < 0.0) {
                return Err(HistogramError::NegativeBucketCount { side });
            }
        }
        if self.count < 0.0 || self.zero_count < 0.0 {
            return Err(HistogramError::NegativeCount);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn check_layout(
    schema: i32,
    zero_threshold: f64,
    has_zero_count: bool,
    positive_spans: &[Span],
    positive_buckets: usize,
    negative_spans: &[Span],
    negative_buckets: usize,
    custom_values: &[f64],
) -> Result<(), HistogramError> {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        check_spans(positive_spans, positive_buckets, "positive")?;
        check_custom_bounds(custom_values, positive_spans)?;
        if has_zero_count {
            return Err(HistogramError::CustomBuckets("must have zero count of 0"));
        }
        if zero_threshold != 0.0 {
            return Err(HistogramError::CustomBuckets(
                "must have zero threshold of 0",
            ));
        }
        if !negative_spans.is_empty() {
            return Err(HistogramError::CustomBuckets(
                "must not have negative spans",
            ));
        }
        if negative_buckets != 0 {
            return Err(HistogramError::CustomBuckets(
                "must not have negative buckets",
            ));
        }
        return Ok(());
    }
    if !(SCHEMA_MIN..=SCHEMA_MAX).contains(&schema) {
        return Err(HistogramError::InvalidSchema(schema));
    }
    check_spans(positive_spans, positive_buckets, "positive")?;
    check_spans(negative_spans, negative_buckets, "negative")?;
    if !custom_values.is_empty() {
        return Err(HistogramError::ExponentialWithCustomBounds);
    }
    Ok(())
}

fn check_spans(spans: &[Span], buckets: usize, side: &'static str) -> Result<(), HistogramError> {
    if spans.iter().skip(1).any(|s| s.offset < 0) {
        return Err(HistogramError::NegativeSpanOffset { side });
    }
    // Bucket indices are 32-bit in Prometheus; past that, layouts cannot be merged.
    let mut end = 0i64;
    for s in spans {
        let start = end + i64::from(s.offset);
        end = start + i64::from(s.length);
        if start < i64::from(i32::MIN) || end > i64::from(i32::MAX) {
            return Err(HistogramError::BucketIndexOutOfRange { side });
        }
    }
    let described: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if described != buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch {
            side,
            spans: described,
            buckets,
        });
    }
    Ok(())
}

fn check_custom_bounds(bounds: &[f64], spans: &[Span]) -> Result<(), HistogramError> {
    let mut prev = f64::NEG_INFINITY;
    for &b in bounds {
        if b.is_nan() {
            return Err(HistogramError::CustomBuckets("bounds must not be NaN"));
        }
        if b.is_infinite() {
            return Err(HistogramError::CustomBuckets("bounds must be finite"));
        }
        if b <= prev {
            return Err(HistogramError::CustomBuckets(
                "bounds must be in strictly increasing order",
            ));
        }
        prev = b;
    }
    // The bucket past the last bound is the +Inf bucket: index len(bounds) at most.
    let mut next = 0i64;
    for (i, s) in spans.iter().enumerate() {
        next += i64::from(s.offset);
        if i == 0 && s.offset < 0 {
            return Err(HistogramError::NegativeSpanOffset { side: "positive" });
        }
        next += i64::from(s.length);
    }
    if next > bounds.len() as i64 + 1 {
        return Err(HistogramError::CustomBuckets(
            "bounds are too few for the buckets",
        ));
    }
    Ok(())
}

fn absolute_sum(deltas: &[i64], side: &'static str) -> Result<u64, HistogramError> {
    let mut current = 0i64;
    let mut total = 0u64;
    for &d in deltas {
        current = current.saturating_add(d);
        if current < 0 {
            return Err(HistogramError::NegativeBucketCount { side });
        }
        total = total.saturating_add(current as u64);
    }
    Ok(total)
}

fn cumulative(deltas: &[i64]) -> Vec<i64> {
    let mut current = 0i64;
    deltas
        .iter()
        .map(|&d| {
            current = current.wrapping_add(d);
            current
        })
        .collect()
}

/// The bucket indices a span list describes, in order.
pub fn bucket_indices(spans: &[Span]) -> impl Iterator<Item = i64> + '_ {
    let mut next = 0i64;
    spans.iter().flat_map(move |s| {
        let start = next + i64::from(s.offset);
        next = start + i64::from(s.length);
        start..next
    })
}

/// Spans describing exactly the given ascending bucket indices.
pub fn spans_from_indices(indices: &[i64]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut end = 0i64;
    for &i in indices {
        match spans.last_mut() {
            Some(last) if i == end => last.length += 1,
            _ => spans.push(Span {
                offset: (i - end) as i32,
                length: 1,
            }),
        }
        end = i + 1;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(count: u64, zero: u64, sum: f64, spans: &[(i32, u32)], deltas: &[i64]) -> Histogram {
        Histogram {
            schema: 3,
            zero_threshold: 1e-128,
            zero_count: zero,
            count,
            sum,
            positive_spans: spans
                .iter()
                .map(|&(offset, length)| Span { offset, length })
                .collect(),
            positive_buckets: deltas.to_vec(),
            ..Histogram::default()
        }
    }

    #[test]
    fn validation_follows_prometheus() {
        assert_eq!(
            exp(5, 1, 3.0, &[(0, 2), (1, 1)], &[1, 1, -1]).validate(),
            Ok(())
        );
        assert_eq!(
            exp(6, 1, 3.0, &[(0, 2), (1, 1)], &[1, 1, -1]).validate(),
            Err(HistogramError::CountMismatch {
                in_buckets: 5,
                count: 6
            })
        );
        // A NaN sum allows observations outside every bucket.
        assert_eq!(exp(6, 1, f64::NAN, &[(0, 1)], &[4]).validate(), Ok(()));
        assert!(matches!(
            exp(1, 0, 1.0, &[(0, 2)], &[1, -2]).validate(),
            Err(HistogramError::NegativeBucketCount { side: "positive" })
        ));
        assert!(matches!(
            exp(1, 0, 1.0, &[(0, 2)], &[1]).validate(),
            Err(HistogramError::SpansBucketsMismatch { .. })
        ));
        assert!(matches!(
            exp(2, 0, 1.0, &[(0, 1), (-2, 1)], &[1, 0]).validate(),
            Err(HistogramError::NegativeSpanOffset { .. })
        ));
        assert!(matches!(
            exp(2, 0, 1.0, &[(0, 1), (i32::MAX, 0), (i32::MAX, 1)], &[1, 0]).validate(),
            Err(HistogramError::BucketIndexOutOfRange { .. })
        ));
        let mut bad_schema = exp(0, 0, 0.0, &[], &[]);
        bad_schema.schema = 9;
        assert_eq!(bad_schema.validate(), Err(HistogramError::InvalidSchema(9)));
        assert!(Histogram::stale().validate().is_ok());
        assert!(Histogram::stale().is_stale());
    }

    #[test]
    fn custom_buckets_rules() {
        let nhcb = Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 3,
            sum: 2.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![1, 0, 0],
            custom_values: vec![0.5, 1.0],
            ..Histogram::default()
        };
        assert_eq!(nhcb.validate(), Ok(()));
        let mut unsorted = nhcb.clone();
        unsorted.custom_values = vec![1.0, 0.5];
        assert!(matches!(
            unsorted.validate(),
            Err(HistogramError::CustomBuckets(_))
        ));
        let mut too_few = nhcb.clone();
        too_few.custom_values = vec![0.5];
        assert!(matches!(
            too_few.validate(),
            Err(HistogramError::CustomBuckets(_))
        ));
        let mut with_zero = nhcb;
        with_zero.zero_threshold = 0.1;
        assert!(matches!(
            with_zero.validate(),
            Err(HistogramError::CustomBuckets(_))
        ));
    }

    #[test]
    fn spans_and_indices_round_trip() {
        let spans = vec![
            Span {
                offset: -2,
                length: 2,
            },
            Span {
                offset: 3,
                length: 1,
            },
            Span {
                offset: 0,
                length: 2,
            },
        ];
        let idx: Vec<_> = bucket_indices(&spans).collect();
        assert_eq!(idx, vec![-2, -1, 3, 4, 5]);
        assert_eq!(
            spans_from_indices(&idx),
            vec![
                Span {
                    offset: -2,
                    length: 2
                },
                Span {
                    offset: 3,
                    length: 3
                }
            ]
        );
    }

    #[test]
    fn to_float_makes_counts_absolute() {
        let h = exp(5, 1, 3.0, &[(0, 3)], &[1, 1, -1]);
        assert_eq!(h.to_float().positive_buckets, vec![1.0, 2.0, 1.0]);
    }
}

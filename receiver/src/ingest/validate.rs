//! The remote-write rules a decoded series must follow before it is stored: label names and
//! values, metric names, sample order within a request.
//!
//! Names: remote write 1.0 requires the classic charsets its specification names (label names
//! `[a-zA-Z_][a-zA-Z0-9_]*`, metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`); 2.0 allows any UTF-8
//! name for both, as Prometheus 3 does. Label and metric names follow the same rule per protocol.

use tsdb_format::histogram::HistogramError;

use crate::tsdb::HistogramSample;
use crate::tsdb::histogram_record::fingerprint;
use crate::wire::{Protocol, WriteBatch};

/// Longest label name, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 1024;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 64 << 10;

/// Why one series of an otherwise well-formed request is rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rejection {
    /// The series has no labels.
    EmptyLabelSet,
    /// A label name is empty.
    EmptyLabelName,
    /// A label value is empty.
    EmptyLabelValue,
    /// A remote write 1.0 label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    InvalidLabelName,
    /// A remote write 1.0 metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    InvalidMetricName,
    /// A label name or value is not UTF-8.
    InvalidUtf8,
    /// Labels are not sorted by name.
    UnsortedLabels,
    /// A label name or value is longer than allowed.
    LabelTooLong,
    /// A label name appears twice.
    DuplicateLabel,
    /// Samples of the series are not in timestamp order.
    OutOfOrderInRequest,
    /// Two samples share a timestamp but differ in value.
    ConflictingDuplicateInRequest,
    /// A remote write 2.0 series carries both samples and histograms.
    SamplesAndHistograms,
    /// A native histogram breaks Prometheus' rules (schema, spans, bucket counts).
    InvalidHistogram(HistogramError),
}

impl Rejection {
    /// Short reason used as a metric label value.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::EmptyLabelSet => "empty_labels",
            Rejection::EmptyLabelName => "empty_label_name",
            Rejection::EmptyLabelValue => "empty_label_value",
            Rejection::InvalidLabelName => "invalid_label_name",
            Rejection::InvalidMetricName => "invalid_metric_name",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::UnsortedLabels => "out_of_order_labels",
            Rejection::LabelTooLong => "label_too_long",
            Rejection::DuplicateLabel => "duplicate_labels",
            Rejection::OutOfOrderInRequest => "out_of_order_in_request",
            Rejection::ConflictingDuplicateInRequest => "duplicate_sample_for_timestamp",
            Rejection::SamplesAndHistograms => "samples_and_histograms",
            Rejection::InvalidHistogram(_) => "invalid_histogram",
        }
    }

    /// Human-readable description for the response body.
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::EmptyLabelSet => "series has no labels",
            Rejection::EmptyLabelName => "empty label name",
            Rejection::EmptyLabelValue => "empty label value",
            Rejection::InvalidLabelName => {
                "invalid label name: remote write 1.0 names match [a-zA-Z_][a-zA-Z0-9_]*"
            }
            Rejection::InvalidMetricName => {
                "invalid metric name: remote write 1.0 names match [a-zA-Z_:][a-zA-Z0-9_:]*"
            }
            Rejection::InvalidUtf8 => "label is not valid UTF-8",
            Rejection::UnsortedLabels => "labels are not sorted by name",
            Rejection::LabelTooLong => {
                "label name longer than 1024 bytes or value longer than 65536 bytes"
            }
            Rejection::DuplicateLabel => "duplicate label name",
            Rejection::OutOfOrderInRequest => "samples are not in timestamp order",
            Rejection::ConflictingDuplicateInRequest => {
                "two samples share a timestamp with different values"
            }
            Rejection::SamplesAndHistograms => "series carries both samples and histograms",
            Rejection::InvalidHistogram(_) => "invalid native histogram",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::InvalidHistogram(e) => write!(f, "invalid native histogram: {e}"),
            r => f.write_str(r.describe()),
        }
    }
}

/// The rules a series is held to: those of the protocol it arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Metric and label names must use the classic charsets (remote write 1.0).
    classic_names: bool,
    /// A series carries samples or histograms, not both (remote write 2.0).
    one_kind_per_series: bool,
    /// Labels are checked only for series the head lacks, as Prometheus' head does (a stored
    /// series' labels passed the rules when it was created), and under 1.0 for series not yet
    /// held to its name rules.
    labels_of_new_series_only: bool,
}

impl Rules {
    /// A forward from another receiver: the sender held each series to the rules of the protocol
    /// it arrived in, which the forward message does not record, so names are only checked to
    /// be UTF-8 here; a 2.0 write with a UTF-8 metric name is stored on every replica alike.
    pub const FORWARDED: Rules = Rules {
        classic_names: false,
        one_kind_per_series: false,
        labels_of_new_series_only: false,
    };

    /// These rules, with labels left to the series that need them when `deferred` (a write
    /// stored locally, whose lookup tells known series from new ones).
    pub fn checking_labels_of_new_series_only(self, deferred: bool) -> Rules {
        Rules {
            labels_of_new_series_only: deferred,
            ..self
        }
    }

    /// Whether labels are left to the series that need them.
    pub fn defers_labels(self) -> bool {
        self.labels_of_new_series_only
    }

    /// Whether names must use remote write 1.0's classic charsets.
    pub fn classic_names(self) -> bool {
        self.classic_names
    }
}

impl From<Protocol> for Rules {
    fn from(protocol: Protocol) -> Self {
        Rules {
            classic_names: protocol == Protocol::V1,
            one_kind_per_series: protocol == Protocol::V2,
            labels_of_new_series_only: false,
        }
    }
}

/// Checks labels and sample order of series `i` of a batch against the remote-write rules.
pub fn validate_series(
    batch: &WriteBatch,
    i: usize,
    rules: impl Into<Rules>,
) -> Result<(), Rejection> {
    let rules = rules.into();
    validate_labels(batch, i, rules)?;
    validate_samples(batch, i, rules)
}

/// Checks the labels of series `i` of a batch against the remote-write rules.
pub fn validate_labels(batch: &WriteBatch, i: usize, rules: Rules) -> Result<(), Rejection> {
    if batch.series[i].labels.is_empty() {
        return Err(Rejection::EmptyLabelSet);
    }
    let mut prev: Option<&[u8]> = None;
    for (name, value) in batch.series_labels(i) {
        if name.is_empty() {
            return Err(Rejection::EmptyLabelName);
        }
        if name.len() > MAX_LABEL_NAME_LEN || value.len() > MAX_LABEL_VALUE_LEN {
            return Err(Rejection::LabelTooLong);
        }
        if value.is_empty() {
            return Err(Rejection::EmptyLabelValue);
        }
        // Labels are nearly always ASCII, which is checked a word at a time.
        let utf8 = |b: &[u8]| b.is_ascii() || std::str::from_utf8(b).is_ok();
        if !utf8(name) || !utf8(value) {
            return Err(Rejection::InvalidUtf8);
        }
        // One rule for label and metric names: 2.0 allows any UTF-8 name (as Prometheus 3
        // does), 1.0 requires the classic charsets its specification names.
        if rules.classic_names {
            if !valid_label_name(name) {
                return Err(Rejection::InvalidLabelName);
            }
            if name == b"__name__" && !valid_metric_name(value) {
                return Err(Rejection::InvalidMetricName);
            }
        }
        if let Some(p) = prev {
            match p.cmp(name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Err(Rejection::DuplicateLabel),
                std::cmp::Ordering::Greater => return Err(Rejection::UnsortedLabels),
            }
        }
        prev = Some(name);
    }
    Ok(())
}

/// Checks the samples and histograms of series `i` of a batch: valid histograms, time order.
pub fn validate_samples(batch: &WriteBatch, i: usize, rules: Rules) -> Result<(), Rejection> {
    let histograms = batch.series_histograms(i);
    if !histograms.is_empty() {
        if rules.one_kind_per_series && !batch.series[i].samples.is_empty() {
            return Err(Rejection::SamplesAndHistograms);
        }
        validate_histograms(histograms)?;
    }
    let samples = batch.series_samples(i);
    for w in samples.windows(2) {
        if w[1].t < w[0].t {
            return Err(Rejection::OutOfOrderInRequest);
        }
        if w[1].t == w[0].t && w[1].v.to_bits() != w[0].v.to_bits() {
            return Err(Rejection::ConflictingDuplicateInRequest);
        }
    }
    Ok(())
}

/// Each histogram valid, and all in time order (a repeated timestamp only with an identical
/// histogram).
#[cold]
fn validate_histograms(histograms: &[HistogramSample]) -> Result<(), Rejection> {
    for h in histograms {
        h.h.validate().map_err(Rejection::InvalidHistogram)?;
    }
    for w in histograms.windows(2) {
        if w[1].t < w[0].t {
            return Err(Rejection::OutOfOrderInRequest);
        }
        // Compared by fingerprint: two stale markers (NaN sums) are the same histogram.
        if w[1].t == w[0].t && fingerprint(&w[1].h) != fingerprint(&w[0].h) {
            return Err(Rejection::ConflictingDuplicateInRequest);
        }
    }
    Ok(())
}

/// Byte classes of the classic charsets, one table lookup per byte on the validation hot path.
const LABEL_CHAR: u8 = 1;
const METRIC_CHAR: u8 = 2;
const DIGIT: u8 = 4;

const CHARSET: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphabetic() || c == b'_' {
            t[b] = LABEL_CHAR | METRIC_CHAR;
        } else if c.is_ascii_digit() {
            t[b] = LABEL_CHAR | METRIC_CHAR | DIGIT;
        } else if c == b':' {
            t[b] = METRIC_CHAR;
        }
        b += 1;
    }
    t
};

/// Whether every byte is of `class` and the first is not a digit.
#[inline]
fn classic(name: &[u8], class: u8) -> bool {
    match name.first() {
        Some(&first) => {
            CHARSET[first as usize] & DIGIT == 0
                && name.iter().all(|&b| CHARSET[b as usize] & class != 0)
        }
        None => false,
    }
}

/// Whether `name` matches the classic label-name charset `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &[u8]) -> bool {
    classic(name, LABEL_CHAR)
}

/// Whether `name` matches the classic metric-name charset `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &[u8]) -> bool {
    classic(name, METRIC_CHAR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::{v1, v2};
    use prost::Message;

    fn batch_of(bytes: Vec<u8>, protocol: Protocol) -> WriteBatch {
        let mut b = WriteBatch::with_body(bytes);
        b.decode(protocol).unwrap();
        b
    }

    fn v1_request(series: Vec<v1::TimeSeries>) -> Vec<u8> {
        v1::WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec()
    }

    trait Validate {
        fn validate(self, protocol: Protocol) -> Result<(), Rejection>;
    }

    impl Validate for WriteBatch {
        fn validate(self, protocol: Protocol) -> Result<(), Rejection> {
            validate_series(&self, 0, protocol)
        }
    }

    #[test]
    fn every_label_rule_has_its_rejection() {
        let cases: Vec<(Vec<(&str, &str)>, Rejection)> = vec![
            (vec![], Rejection::EmptyLabelSet),
            (vec![("", "x")], Rejection::EmptyLabelName),
            (vec![("a", "")], Rejection::EmptyLabelValue),
            (vec![("1a", "x")], Rejection::InvalidLabelName),
            (vec![("b", "x"), ("a", "y")], Rejection::UnsortedLabels),
            (vec![("a", "x"), ("a", "y")], Rejection::DuplicateLabel),
        ];
        for (labels, want) in cases {
            let body = v1_request(vec![v1::series(&labels, &[(1, 1.0)])]);
            let b = batch_of(body, Protocol::V1);
            assert_eq!(
                validate_series(&b, 0, Protocol::V1),
                Err(want),
                "{labels:?}"
            );
        }
        // Invalid UTF-8 cannot be built with prost strings: patch the encoded value byte.
        let mut body = v1_request(vec![v1::series(&[("a", "x")], &[(1, 1.0)])]);
        let pos = body.iter().position(|&b| b == b'x').unwrap();
        body[pos] = 0xff;
        let b = batch_of(body, Protocol::V1);
        assert_eq!(
            validate_series(&b, 0, Protocol::V1),
            Err(Rejection::InvalidUtf8)
        );
    }

    #[test]
    fn utf8_label_names_are_valid_in_v2_only() {
        let req = v2::request(&[(&[("ünïcode.name", "x")], &[(1, 1.0)])]);
        let b = batch_of(req.encode_to_vec(), Protocol::V2);
        assert!(validate_series(&b, 0, Protocol::V2).is_ok());
        let body = v1_request(vec![v1::series(&[("ünïcode.name", "x")], &[(1, 1.0)])]);
        let b = batch_of(body, Protocol::V1);
        assert_eq!(
            validate_series(&b, 0, Protocol::V1),
            Err(Rejection::InvalidLabelName)
        );
    }

    #[test]
    fn sample_order_rules() {
        let check = |samples: &[(i64, f64)]| {
            let body = v1_request(vec![v1::series(&[("a", "x")], samples)]);
            batch_of(body, Protocol::V1).validate(Protocol::V1)
        };
        assert_eq!(
            check(&[(2, 1.0), (1, 1.0)]),
            Err(Rejection::OutOfOrderInRequest)
        );
        assert_eq!(
            check(&[(1, 1.0), (1, 2.0)]),
            Err(Rejection::ConflictingDuplicateInRequest)
        );
        assert_eq!(check(&[(1, 1.0), (1, 1.0)]), Ok(()));
    }

    #[test]
    fn v2_series_with_samples_and_histograms_is_rejected() {
        let mut req = v2::request(&[(&[("a", "x")], &[(1, 1.0)])]);
        req.timeseries[0].histograms.push(v1::Histogram::default());
        let b = batch_of(req.encode_to_vec(), Protocol::V2);
        assert_eq!(
            validate_series(&b, 0, Protocol::V2),
            Err(Rejection::SamplesAndHistograms)
        );
    }

    #[test]
    fn charsets_match_their_regexes() {
        for b in 0..=255u8 {
            let label_first = b.is_ascii_alphabetic() || b == b'_';
            let label_rest = label_first || b.is_ascii_digit();
            assert_eq!(valid_label_name(&[b]), label_first, "{b}");
            assert_eq!(valid_label_name(&[b'a', b]), label_rest, "{b}");
            assert_eq!(valid_metric_name(&[b]), label_first || b == b':', "{b}");
            assert_eq!(
                valid_metric_name(&[b'a', b]),
                label_rest || b == b':',
                "{b}"
            );
        }
        assert!(!valid_label_name(b"") && !valid_metric_name(b""));
    }

    #[test]
    fn metric_and_label_names_follow_one_rule_per_protocol() {
        let check = |labels: &[(&str, &str)], protocol: Protocol| match protocol {
            Protocol::V1 => validate_series(
                &batch_of(v1_request(vec![v1::series(labels, &[(1, 1.0)])]), protocol),
                0,
                protocol,
            ),
            Protocol::V2 => {
                let req = v2::request(&[(labels, &[(1, 1.0)])]);
                validate_series(&batch_of(req.encode_to_vec(), protocol), 0, protocol)
            }
        };
        // 1.0: the classic charsets, for metric names (colons allowed) and label names alike.
        assert_eq!(
            check(&[("__name__", "1up")], Protocol::V1),
            Err(Rejection::InvalidMetricName)
        );
        assert_eq!(
            check(&[("__name__", "up-time")], Protocol::V1),
            Err(Rejection::InvalidMetricName)
        );
        assert_eq!(
            check(&[("__name__", "up"), ("a-b", "x")], Protocol::V1),
            Err(Rejection::InvalidLabelName)
        );
        assert_eq!(
            check(&[("__name__", "job:up:rate5m"), ("a_b", "x")], Protocol::V1),
            Ok(())
        );
        assert_eq!(
            check(&[("__name__", "up"), ("a:b", "x")], Protocol::V1),
            Err(Rejection::InvalidLabelName)
        );
        // 2.0: any UTF-8, for both.
        assert_eq!(
            check(&[("__name__", "1up"), ("a-b", "x")], Protocol::V2),
            Ok(())
        );
        assert_eq!(
            check(&[("__name__", "ünïcode.metric")], Protocol::V2),
            Ok(())
        );
        // Forwarded: the sender applied its protocol's rule; UTF-8 names pass on every replica.
        let b = batch_of(
            v1_request(vec![v1::series(
                &[("__name__", "http.server.duration"), ("a-b", "x")],
                &[(1, 1.0)],
            )]),
            Protocol::V1,
        );
        assert_eq!(validate_series(&b, 0, Rules::FORWARDED), Ok(()));
    }
}

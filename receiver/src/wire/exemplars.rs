//! Thanos' `thanos.Exemplars/Exemplars` messages, with the field numbers of Thanos v0.42's
//! `pkg/exemplars/exemplarspb/rpc.proto`.

use super::info::ZLabelSet;

/// `thanos.ExemplarsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExemplarsRequest {
    /// A PromQL expression; exemplars of the series its selectors select are returned.
    #[prost(string, tag = "1")]
    pub query: String,
    /// Start of the range, in milliseconds.
    #[prost(int64, tag = "2")]
    pub start: i64,
    /// End of the range, in milliseconds.
    #[prost(int64, tag = "3")]
    pub end: i64,
    /// `thanos.PartialResponseStrategy` (0 warn, 1 abort).
    #[prost(int32, tag = "4")]
    pub partial_response_strategy: i32,
}

/// `thanos.ExemplarsResponse`: a `oneof` of `data = 1` and `warning = 2`; exactly one is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExemplarsResponse {
    /// One series' exemplars.
    #[prost(message, optional, tag = "1")]
    pub data: Option<ExemplarData>,
    /// A warning.
    #[prost(string, optional, tag = "2")]
    pub warning: Option<String>,
}

/// `thanos.ExemplarData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExemplarData {
    /// The series' labels, external labels included.
    #[prost(message, optional, tag = "1")]
    pub series_labels: Option<ZLabelSet>,
    /// Its exemplars, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub exemplars: Vec<Exemplar>,
}

/// `thanos.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// The exemplar's own labels.
    #[prost(message, optional, tag = "1")]
    pub labels: Option<ZLabelSet>,
    /// Its value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Its time, in milliseconds.
    #[prost(int64, tag = "3")]
    pub ts: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::info::Label;
    use prost::Message;

    #[test]
    fn encodes_thanos_field_numbers() {
        let response = ExemplarsResponse {
            data: Some(ExemplarData {
                series_labels: Some(ZLabelSet {
                    labels: vec![Label {
                        name: "a".into(),
                        value: "b".into(),
                    }],
                }),
                exemplars: vec![Exemplar {
                    labels: Some(ZLabelSet { labels: vec![] }),
                    value: 1.0,
                    ts: 5,
                }],
            }),
            warning: None,
        };
        let bytes = response.encode_to_vec();
        // data(1, LEN){ seriesLabels(1, LEN){ labels(1, LEN){ name(1) "a", value(2) "b" } },
        //   exemplars(2, LEN){ labels(1, LEN){}, value(2, I64) 1.0, ts(3, VARINT) 5 } }
        let expected: Vec<u8> = [
            vec![0x0a, 25, 0x0a, 8, 0x0a, 6, 0x0a, 1, b'a', 0x12, 1, b'b'],
            vec![0x12, 13, 0x0a, 0, 0x11],
            1.0f64.to_le_bytes().to_vec(),
            vec![0x18, 5],
        ]
        .concat();
        assert_eq!(bytes, expected);
        let warning = ExemplarsResponse {
            data: None,
            warning: Some("w".into()),
        };
        assert_eq!(warning.encode_to_vec(), [0x12, 1, b'w']);
        let request =
            ExemplarsRequest::decode(&[0x0a, 2, b'u', b'p', 0x10, 1, 0x18, 9][..]).unwrap();
        assert_eq!(
            (request.query.as_str(), request.start, request.end),
            ("up", 1, 9)
        );
    }
}

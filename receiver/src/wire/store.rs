//! Thanos' `thanos.Store` messages (`Series`, `LabelNames`, `LabelValues`), with the field numbers
//! of Thanos v0.42's `pkg/store/storepb/rpc.proto` and `types.proto`. Fields a receiver does not
//! use (hints, query hints, sharding, aggregates) are left out: prost skips them when they come.

use super::info::Label;
use super::remote_read::LabelMatcher;

/// `thanos.SeriesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesRequest {
    /// Start of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// End of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    /// `thanos.LabelMatcher` has the field numbers and types of `prometheus.LabelMatcher`.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// `true` asks that a failing store fail the request rather than warn.
    #[prost(bool, tag = "6")]
    pub partial_response_disabled: bool,
    /// `WARN` (0) or `ABORT` (1).
    #[prost(int32, tag = "7")]
    pub partial_response_strategy: i32,
    /// Labels only, no chunks.
    #[prost(bool, tag = "8")]
    pub skip_chunks: bool,
    /// External labels to leave off the series (Thanos Query's replica labels).
    #[prost(string, repeated, tag = "14")]
    pub without_replica_labels: Vec<String>,
    /// Most series to return; 0 means no limit.
    #[prost(int64, tag = "15")]
    pub limit: i64,
}

/// `thanos.PartialResponseStrategy.ABORT`.
pub const ABORT: i32 = 1;

/// `thanos.SeriesResponse`: one frame of the `Series` stream.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesResponse {
    /// The frame's content.
    #[prost(oneof = "series_response::Result", tags = "1, 2")]
    pub result: Option<series_response::Result>,
}

/// The `oneof` of [`SeriesResponse`].
pub mod series_response {
    /// `SeriesResponse.result`.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        /// A series, or part of one's chunks.
        #[prost(message, tag = "1")]
        Series(super::Series),
        /// A warning to pass on to the user.
        #[prost(string, tag = "2")]
        Warning(String),
    }
}

/// `thanos.Series`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Series {
    /// Labels sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Chunks in time order.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<AggrChunk>,
}

/// `thanos.AggrChunk`: a receiver sends raw chunks only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggrChunk {
    /// First sample's timestamp.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// Last sample's timestamp.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    /// The chunk as stored.
    #[prost(message, optional, tag = "3")]
    pub raw: Option<Chunk>,
}

/// `thanos.Chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// `XOR` (0), `HISTOGRAM` (1), `FLOAT_HISTOGRAM` (2): the TSDB encoding minus one.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The chunk bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// xxHash64 of `data`.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `thanos.Chunk.Encoding.XOR`.
pub const CHUNK_XOR: i32 = 0;

/// The `thanos.Chunk.Encoding` of a TSDB chunk encoding (XOR 0, HISTOGRAM 1, FLOAT_HISTOGRAM 2).
pub fn chunk_type(encoding: u8) -> i32 {
    i32::from(encoding) - 1
}

/// `thanos.LabelNamesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelNamesRequest {
    /// See [`SeriesRequest::partial_response_disabled`].
    #[prost(bool, tag = "1")]
    pub partial_response_disabled: bool,
    /// See [`SeriesRequest::partial_response_strategy`].
    #[prost(int32, tag = "2")]
    pub partial_response_strategy: i32,
    /// Start of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "3")]
    pub start: i64,
    /// End of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "4")]
    pub end: i64,
    /// Series the names are taken from; none means every series.
    #[prost(message, repeated, tag = "6")]
    pub matchers: Vec<LabelMatcher>,
    /// External labels to leave out.
    #[prost(string, repeated, tag = "7")]
    pub without_replica_labels: Vec<String>,
    /// Most names to return; 0 means no limit.
    #[prost(int64, tag = "8")]
    pub limit: i64,
}

/// `thanos.LabelNamesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelNamesResponse {
    /// Names, sorted.
    #[prost(string, repeated, tag = "1")]
    pub names: Vec<String>,
    /// Warnings to pass on.
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}

/// `thanos.LabelValuesRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelValuesRequest {
    /// The label whose values are asked for.
    #[prost(string, tag = "1")]
    pub label: String,
    /// See [`SeriesRequest::partial_response_disabled`].
    #[prost(bool, tag = "2")]
    pub partial_response_disabled: bool,
    /// See [`SeriesRequest::partial_response_strategy`].
    #[prost(int32, tag = "3")]
    pub partial_response_strategy: i32,
    /// Start of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "4")]
    pub start: i64,
    /// End of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "5")]
    pub end: i64,
    /// Series the values are taken from; none means every series.
    #[prost(message, repeated, tag = "7")]
    pub matchers: Vec<LabelMatcher>,
    /// External labels to leave out.
    #[prost(string, repeated, tag = "8")]
    pub without_replica_labels: Vec<String>,
    /// Most values to return; 0 means no limit.
    #[prost(int64, tag = "9")]
    pub limit: i64,
}

/// `thanos.LabelValuesResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelValuesResponse {
    /// Values, sorted.
    #[prost(string, repeated, tag = "1")]
    pub values: Vec<String>,
    /// Warnings to pass on.
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A request as Thanos Query's gogo-generated code writes it, spelled out byte by byte from
    /// the `.proto` field numbers, with fields we ignore (hints, step, range, batch size).
    #[test]
    fn decodes_a_thanos_series_request() {
        let mut b = vec![0x08, 0x0a]; // min_time(1) = 10
        b.extend_from_slice(&[0x10, 0x14]); // max_time(2) = 20
        // matchers(3) { type(1) = RE, name(2) "job", value(3) "a.*" }
        b.extend_from_slice(&[0x1a, 0x0c, 0x08, 0x02, 0x12, 0x03]);
        b.extend_from_slice(b"job");
        b.extend_from_slice(&[0x1a, 0x03]);
        b.extend_from_slice(b"a.*");
        b.extend_from_slice(&[0x30, 0x01]); // partial_response_disabled(6) = true
        b.extend_from_slice(&[0x38, 0x01]); // partial_response_strategy(7) = ABORT
        b.extend_from_slice(&[0x40, 0x01]); // skip_chunks(8) = true
        b.extend_from_slice(&[0x4a, 0x02, 0x0a, 0x00]); // hints(9): an Any, ignored
        b.extend_from_slice(&[0x50, 0x3c]); // step(10) = 60, ignored
        b.extend_from_slice(&[0x72, 0x07]); // without_replica_labels(14) "replica"
        b.extend_from_slice(b"replica");
        b.extend_from_slice(&[0x78, 0x05]); // limit(15) = 5
        b.extend_from_slice(&[0x80, 0x01, 0x40]); // response_batch_size(16) = 64, ignored
        let r = SeriesRequest::decode(&b[..]).unwrap();
        assert_eq!((r.min_time, r.max_time), (10, 20));
        assert_eq!(r.matchers.len(), 1);
        assert_eq!(
            (
                r.matchers[0].r#type,
                &*r.matchers[0].name,
                &*r.matchers[0].value
            ),
            (2, "job", "a.*")
        );
        assert!(r.partial_response_disabled && r.skip_chunks);
        assert_eq!(r.partial_response_strategy, ABORT);
        assert_eq!(r.without_replica_labels, ["replica"]);
        assert_eq!(r.limit, 5);
    }

    /// The frame bytes Thanos Query expects for one series with one XOR chunk.
    #[test]
    fn encodes_a_series_frame_with_thanos_field_numbers() {
        let frame = SeriesResponse {
            result: Some(series_response::Result::Series(Series {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                chunks: vec![AggrChunk {
                    min_time: 1,
                    max_time: 2,
                    raw: Some(Chunk {
                        r#type: CHUNK_XOR,
                        data: vec![0, 1],
                        hash: 3,
                    }),
                }],
            })),
        };
        // series(1) { labels(1) { name(1) "a" value(2) "b" }
        //             chunks(2) { min_time(1) 1 max_time(2) 2 raw(3) { data(2) [0 1] hash(3) 3 } } }
        // (type XOR is 0, the default, so it is not written.)
        let want = [
            0x0a, 0x16, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x12, 0x0c, 0x08, 0x01,
            0x10, 0x02, 0x1a, 0x06, 0x12, 0x02, 0x00, 0x01, 0x18, 0x03,
        ];
        assert_eq!(frame.encode_to_vec(), want);
        let warning = SeriesResponse {
            result: Some(series_response::Result::Warning("w".into())),
        };
        assert_eq!(warning.encode_to_vec(), [0x12, 0x01, b'w']);
    }

    #[test]
    fn label_requests_use_thanos_field_numbers() {
        // LabelValuesRequest: label(1) "job", start(4) 1, end(5) 2,
        // matchers(7) { name(2) "a" value(3) "b" }, limit(9) 3
        let mut b = vec![0x0a, 0x03];
        b.extend_from_slice(b"job");
        b.extend_from_slice(&[0x20, 0x01, 0x28, 0x02]);
        b.extend_from_slice(&[0x3a, 0x06, 0x12, 0x01, b'a', 0x1a, 0x01, b'b']);
        b.extend_from_slice(&[0x48, 0x03]);
        let r = LabelValuesRequest::decode(&b[..]).unwrap();
        assert_eq!((&*r.label, r.start, r.end, r.limit), ("job", 1, 2, 3));
        assert_eq!(r.matchers[0].name, "a");
        // LabelNamesRequest: start(3) 1, end(4) 2, matchers(6) { name(2) "a" }, limit(8) 3
        let b = [
            0x18, 0x01, 0x20, 0x02, 0x32, 0x03, 0x12, 0x01, b'a', 0x40, 0x03,
        ];
        let r = LabelNamesRequest::decode(&b[..]).unwrap();
        assert_eq!((r.start, r.end, r.limit), (1, 2, 3));
        assert_eq!(r.matchers[0].name, "a");
        // Responses: names/values(1), warnings(2).
        let names = LabelNamesResponse {
            names: vec!["x".into()],
            warnings: vec!["w".into()],
        };
        assert_eq!(names.encode_to_vec(), [0x0a, 0x01, b'x', 0x12, 0x01, b'w']);
    }
}

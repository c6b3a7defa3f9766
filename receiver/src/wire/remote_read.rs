//! Prometheus remote read 1.0: `prometheus.ReadRequest` in (snappy block-compressed protobuf),
//! and out either one snappy `prometheus.ReadResponse` (SAMPLES) or, when the client accepts it
//! first, a stream of `prometheus.ChunkedReadResponse` frames (STREAMED_XOR_CHUNKS): each
//! `uvarint length | CRC32C (big endian) | message`, uncompressed, as Prometheus'
//! `ChunkedWriter` writes them.
//!
//! Reads are rare and small next to writes, so these are prost types rather than a borrowing
//! decoder. Field numbers are those of Prometheus' `prompb/remote.proto` and `types.proto`.

use prost::Message;

use super::messages::v1;

/// Largest compressed read request accepted; a request is a few matchers per query.
pub const MAX_READ_REQUEST: usize = 1 << 20;

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries, answered in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// Response types the client accepts, in order of preference; empty means SAMPLES.
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.ReadRequest.ResponseType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    /// One `ReadResponse` with every sample.
    Samples = 0,
    /// A stream of `ChunkedReadResponse` frames of XOR chunks.
    StreamedXorChunks = 1,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Start of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// End of the range, inclusive, in milliseconds.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Matchers every returned series satisfies.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// `prometheus.LabelMatcher.Type`.
    #[prost(enumeration = "MatchType", tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.LabelMatcher.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatchType {
    /// `=`.
    Eq = 0,
    /// `!=`.
    Neq = 1,
    /// `=~`.
    Re = 2,
    /// `!~`.
    Nre = 3,
}

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// One result per query, in request order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// Series sorted by labels, samples in time order.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<v1::TimeSeries>,
}

/// Content type of a STREAMED_XOR_CHUNKS answer.
pub const CHUNKED_CONTENT_TYPE: &str =
    "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Largest frame of chunks, as Prometheus' `--storage.remote.read-max-bytes-in-frame` default.
pub const MAX_BYTES_IN_FRAME: usize = 1 << 20;

/// `prometheus.ChunkedReadResponse`: one frame of a STREAMED_XOR_CHUNKS answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    /// Series (or parts of one series' chunks) of one query.
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// The query these series answer, by position in the request.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    /// Labels sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<v1::Label>,
    /// Chunks in time order.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.Chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// First sample's timestamp.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample's timestamp.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// `XOR` is 1 (`UNKNOWN` 0): the TSDB encoding.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// The chunk bytes.
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// `prometheus.Chunk.Encoding.XOR`.
pub const CHUNK_XOR: i32 = 1;

/// Appends one frame of a chunked answer: `uvarint length | CRC32C big endian | message`.
pub fn put_frame(frame: &ChunkedReadResponse, out: &mut Vec<u8>) {
    let message = frame.encode_to_vec();
    tsdb_format::encoding::put_uvarint(out, message.len() as u64);
    out.extend_from_slice(&crc32c::crc32c(&message).to_be_bytes());
    out.extend_from_slice(&message);
}

/// Why a read request body is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReadDecodeError {
    /// Not snappy block format, or larger than [`MAX_READ_REQUEST`] once decompressed.
    #[error("snappy: {0}")]
    Snappy(String),
    /// Not a `prometheus.ReadRequest` (or, for a client, not its response).
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A chunked answer's frame is cut short or fails its CRC32C.
    #[error("frame: {0}")]
    Frame(String),
}

/// Decodes a snappy-compressed `ReadRequest`.
pub fn decode_request(body: &[u8]) -> Result<ReadRequest, ReadDecodeError> {
    let len =
        snap::raw::decompress_len(body).map_err(|e| ReadDecodeError::Snappy(e.to_string()))?;
    if len > MAX_READ_REQUEST {
        return Err(ReadDecodeError::Snappy(format!(
            "{len} bytes decompressed, more than {MAX_READ_REQUEST}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ReadDecodeError::Snappy(e.to_string()))?;
    Ok(ReadRequest::decode(&raw[..])?)
}

/// Encodes a `ReadResponse`, snappy-compressed.
pub fn encode_response(response: &ReadResponse) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&response.encode_to_vec())
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// Encodes a `ReadRequest`, snappy-compressed, as a client sends it.
pub fn encode_request(request: &ReadRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// Decodes a snappy-compressed `ReadResponse`, as a client reads it.
pub fn decode_response(body: &[u8]) -> Result<ReadResponse, ReadDecodeError> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ReadDecodeError::Snappy(e.to_string()))?;
    Ok(ReadResponse::decode(&raw[..])?)
}

/// The frames of a chunked answer, each CRC32C checked, as a client reads them.
pub fn read_frames(mut body: &[u8]) -> Result<Vec<ChunkedReadResponse>, ReadDecodeError> {
    let cut = || ReadDecodeError::Frame("cut short".into());
    let mut frames = Vec::new();
    while !body.is_empty() {
        let (len, n) = tsdb_format::encoding::uvarint(body).ok_or_else(cut)?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| (n + 4).checked_add(len))
            .filter(|&end| end <= body.len())
            .ok_or_else(cut)?;
        let crc = u32::from_be_bytes(body[n..n + 4].try_into().expect("four bytes"));
        let message = &body[n + 4..end];
        if crc32c::crc32c(message) != crc {
            return Err(ReadDecodeError::Frame("CRC32C mismatch".into()));
        }
        frames.push(ChunkedReadResponse::decode(message)?);
        body = &body[end..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as Prometheus' client reads it, spelled out from `prompb/remote.proto`,
    /// `types.proto` and `storage/remote/chunked.go`.
    #[test]
    fn frames_a_chunked_response() {
        let frame = ChunkedReadResponse {
            chunked_series: vec![ChunkedSeries {
                labels: vec![v1::Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                chunks: vec![Chunk {
                    min_time_ms: 1,
                    max_time_ms: 2,
                    r#type: CHUNK_XOR,
                    data: vec![0, 0],
                }],
            }],
            query_index: 1,
        };
        // chunked_series(1) { labels(1) { name(1) "a" value(2) "b" }
        //   chunks(2) { min_time_ms(1) 1 max_time_ms(2) 2 type(3) XOR data(4) [0 0] } }
        // query_index(2) 1
        let message = [
            0x0a, 0x14, 0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x12, 0x0a, 0x08, 0x01,
            0x10, 0x02, 0x18, 0x01, 0x22, 0x02, 0x00, 0x00, 0x10, 0x01,
        ];
        let mut want = vec![message.len() as u8];
        want.extend_from_slice(&crc32c::crc32c(&message).to_be_bytes());
        want.extend_from_slice(&message);
        let mut out = Vec::new();
        put_frame(&frame, &mut out);
        assert_eq!(out, want);
        assert_eq!(read_frames(&out).unwrap(), [frame]);
        let mut corrupt = out.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert!(matches!(
            read_frames(&corrupt),
            Err(ReadDecodeError::Frame(_))
        ));
        assert!(matches!(
            read_frames(&out[..out.len() - 1]),
            Err(ReadDecodeError::Frame(_))
        ));
    }

    /// A request as Prometheus 2.42's remote-read client encodes it, written out field by field
    /// from `prompb/remote.proto`, so the field numbers do not rest on these types alone.
    #[test]
    fn decodes_a_hand_encoded_request() {
        let matcher = [
            0x08, 0x02, // type = RE
            0x12, 0x03, b'j', b'o', b'b', // name
            0x1a, 0x02, b'a', b'.', // value
        ];
        let mut query = vec![
            0x08,
            0xe8,
            0x07,
            0x10,
            0xd0,
            0x0f,
            0x1a,
            matcher.len() as u8,
        ];
        query.extend_from_slice(&matcher); // start 1000, end 2000, one matcher
        let mut request = vec![0x0a, query.len() as u8];
        request.extend_from_slice(&query);
        request.extend_from_slice(&[0x12, 0x01, 0x01]); // accepted: [STREAMED_XOR_CHUNKS]
        let body = snap::raw::Encoder::new().compress_vec(&request).unwrap();
        let req = decode_request(&body).unwrap();
        assert_eq!(req.accepted_response_types, vec![1]);
        let q = &req.queries[0];
        assert_eq!((q.start_timestamp_ms, q.end_timestamp_ms), (1000, 2000));
        assert_eq!(q.matchers[0].r#type, MatchType::Re as i32);
        assert_eq!(
            (q.matchers[0].name.as_str(), q.matchers[0].value.as_str()),
            ("job", "a.")
        );
    }

    #[test]
    fn encodes_the_response_prometheus_reads() {
        let response = ReadResponse {
            results: vec![QueryResult {
                timeseries: vec![v1::series(&[("a", "b")], &[(5, 2.0)])],
            }],
        };
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&encode_response(&response))
            .unwrap();
        // results(1) { timeseries(1) { labels(1) { name(1) "a" value(2) "b" } samples(2) { value(1) 2.0 timestamp(2) 5 } } }
        let sample = [0x09, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x10, 0x05];
        let mut ts = vec![
            0x0a,
            0x06,
            0x0a,
            0x01,
            b'a',
            0x12,
            0x01,
            b'b',
            0x12,
            sample.len() as u8,
        ];
        ts.extend_from_slice(&sample);
        let mut result = vec![0x0a, ts.len() as u8];
        result.extend_from_slice(&ts);
        let mut want = vec![0x0a, result.len() as u8];
        want.extend_from_slice(&result);
        assert_eq!(raw, want);
        assert!(decode_request(b"\xff\xff\xff\xff\xff\x01").is_err());
    }
}

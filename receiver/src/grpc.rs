//! gRPC between receivers: Thanos' `thanos.WriteableStore/RemoteWrite` on tonic.
//!
//! Messages travel as raw bytes through a pass-through codec: the server hands them to the same
//! borrowing decoder the HTTP path uses, and the client encodes `thanos.WriteRequest`
//! (`timeseries = 1`, `tenant = 2`, `replica = 3`) straight from a decoded batch, so a forward
//! costs no intermediate message objects. The wire format is Thanos', so Thanos receivers and
//! ours can share a ring (with `--receive.grpc-compression=none` on the Thanos side; tonic has no
//! snappy codec).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};

use crate::decode::WriteBatch;
use crate::tsdb::labels::put_uvarint;

/// Path of the forward method.
pub const REMOTE_WRITE_PATH: &str = "/thanos.WriteableStore/RemoteWrite";
/// Largest gRPC message sent or accepted: twice the largest decompressed remote-write body, so
/// any forward of an accepted HTTP request fits, and a hostile peer cannot send gigabytes.
pub const MAX_MESSAGE_SIZE: usize = 2 * crate::decode::MAX_DECODED_SIZE;

/// A codec that moves message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// Decoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Handles one forwarded `thanos.WriteRequest`.
pub trait RemoteWriteHandler: Send + Sync + 'static {
    /// Stores the request (raw `thanos.WriteRequest` bytes); errors carry Thanos' gRPC codes.
    fn remote_write(self: &Arc<Self>, request: Bytes) -> BoxFuture<(), Status>;
}

/// The `thanos.WriteableStore` gRPC service.
pub struct WriteableStoreServer<H> {
    handler: Arc<H>,
}

impl<H> Clone for WriteableStoreServer<H> {
    fn clone(&self) -> Self {
        WriteableStoreServer {
            handler: Arc::clone(&self.handler),
        }
    }
}

impl<H: RemoteWriteHandler> WriteableStoreServer<H> {
    /// A service that hands requests to `handler`.
    pub fn new(handler: Arc<H>) -> Self {
        WriteableStoreServer { handler }
    }
}

impl<H> tonic::server::NamedService for WriteableStoreServer<H> {
    const NAME: &'static str = "thanos.WriteableStore";
}

struct Unary<H>(Arc<H>);

impl<H: RemoteWriteHandler> tonic::server::UnaryService<Bytes> for Unary<H> {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let handler = Arc::clone(&self.0);
        Box::pin(async move {
            handler.remote_write(request.into_inner()).await?;
            // `thanos.WriteResponse` is an empty message.
            Ok(tonic::Response::new(Bytes::new()))
        })
    }
}

impl<H: RemoteWriteHandler> Service<http::Request<tonic::body::Body>> for WriteableStoreServer<H> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let handler = Arc::clone(&self.handler);
        Box::pin(async move {
            if req.uri().path() == REMOTE_WRITE_PATH {
                let mut grpc = tonic::server::Grpc::new(RawCodec)
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE);
                Ok(grpc.unary(Unary(handler), req).await)
            } else {
                Ok(
                    Status::unimplemented(format!("unknown method {}", req.uri().path()))
                        .into_http(),
                )
            }
        })
    }
}

/// Calls `RemoteWrite` on a peer.
pub async fn remote_write(
    channel: tonic::transport::Channel,
    request: Bytes,
) -> Result<(), Status> {
    let mut client = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    client
        .ready()
        .await
        .map_err(|e| Status::new(Code::Unavailable, format!("peer not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(REMOTE_WRITE_PATH);
    client
        .unary(tonic::Request::new(request), path, RawCodec)
        .await
        .map(|_| ())
}

fn uvarint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_field_bytes(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    out.push(key);
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes `thanos.WriteRequest{timeseries: series of batch, tenant, replica}`.
pub fn encode_forward(
    batch: &WriteBatch,
    series: &[usize],
    tenant: &str,
    replica: i64,
    out: &mut Vec<u8>,
) {
    out.clear();
    for &i in series {
        let label_len =
            |n: usize, v: usize| 1 + uvarint_len(n as u64) + n + 1 + uvarint_len(v as u64) + v;
        let sample_len = |t: i64| 9 + 1 + uvarint_len(t as u64);
        let mut ts_len = 0;
        for (n, v) in batch.series_labels(i) {
            let l = label_len(n.len(), v.len());
            ts_len += 1 + uvarint_len(l as u64) + l;
        }
        for s in batch.series_samples(i) {
            let l = sample_len(s.t);
            ts_len += 1 + uvarint_len(l as u64) + l;
        }
        out.push(0x0a);
        put_uvarint(out, ts_len as u64);
        for (n, v) in batch.series_labels(i) {
            out.push(0x0a);
            put_uvarint(out, label_len(n.len(), v.len()) as u64);
            put_field_bytes(out, 0x0a, n);
            put_field_bytes(out, 0x12, v);
        }
        for s in batch.series_samples(i) {
            out.push(0x12);
            put_uvarint(out, sample_len(s.t) as u64);
            out.push(0x09);
            out.extend_from_slice(&s.v.to_bits().to_le_bytes());
            out.push(0x10);
            put_uvarint(out, s.t as u64);
        }
    }
    put_field_bytes(out, 0x12, tenant.as_bytes());
    out.push(0x18);
    put_uvarint(out, replica as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Protocol;
    use crate::proto::v1;
    use prost::Message;

    /// `thanos.WriteRequest` as Thanos defines it, for cross-checking our encoder.
    #[derive(Clone, PartialEq, prost::Message)]
    struct ThanosWriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<v1::TimeSeries>,
        #[prost(string, tag = "2")]
        tenant: String,
        #[prost(int64, tag = "3")]
        replica: i64,
    }

    #[test]
    fn forward_encoding_matches_prost_and_decodes_back() {
        let series = vec![
            v1::series(
                &[("__name__", "up"), ("job", "a")],
                &[(1000, 1.0), (-5, f64::from_bits(0x7ff0_0000_0000_0002))],
            ),
            v1::series(&[("__name__", "x")], &[(1_700_000_000_000, 42.5)]),
            v1::series(&[("__name__", "skipped")], &[(1, 1.0)]),
        ];
        let mut batch = WriteBatch::with_body(
            v1::WriteRequest {
                timeseries: series.clone(),
                metadata: vec![],
            }
            .encode_to_vec(),
        );
        batch.decode(Protocol::V1).unwrap();
        let mut out = Vec::new();
        encode_forward(&batch, &[0, 1], "team-a", 2, &mut out);
        let decoded = ThanosWriteRequest::decode(&out[..]).unwrap();
        assert_eq!(decoded.tenant, "team-a");
        assert_eq!(decoded.replica, 2);
        assert_eq!(decoded.timeseries.len(), 2);
        assert_eq!(decoded.timeseries[0].labels, series[0].labels);
        assert_eq!(decoded.timeseries[0].samples[0], series[0].samples[0]);
        assert_eq!(
            decoded.timeseries[0].samples[1].value.to_bits(),
            0x7ff0_0000_0000_0002
        );
        assert_eq!(decoded.timeseries[0].samples[1].timestamp, -5);
        assert_eq!(decoded.timeseries[1], series[1]);

        let mut back = WriteBatch::with_body(out);
        let meta = back.decode_forward().unwrap();
        assert_eq!(meta.replica, 2);
        assert_eq!(meta.groups, vec![("team-a".to_string(), 0..2)]);
        assert_eq!(back.series_string(1), r#"{__name__="x"}"#);
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert_eq!(uvarint_len(v), b.len(), "{v}");
        }
    }
}

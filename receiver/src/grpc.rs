//! gRPC transport between receivers: Thanos' `thanos.WriteableStore/RemoteWrite` on tonic.
//!
//! Messages travel as raw bytes through a pass-through codec: the server hands them to a
//! [`RemoteWriteHandler`], which decodes them with [`crate::wire::forward`], and the client sends
//! bytes that module encoded. The message is Thanos', so Thanos receivers and ours can share a
//! ring (with `--receive.grpc-compression=none` on the Thanos side; tonic has no snappy codec).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};

/// Path of the forward method.
pub const REMOTE_WRITE_PATH: &str = "/thanos.WriteableStore/RemoteWrite";
/// Largest gRPC message sent or accepted: twice the largest decompressed remote-write body, so
/// any forward of an accepted HTTP request fits, and a hostile peer cannot send gigabytes.
pub const MAX_MESSAGE_SIZE: usize = 2 * crate::wire::MAX_DECODED_SIZE;

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

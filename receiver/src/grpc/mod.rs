//! gRPC transport on tonic: Thanos' `thanos.WriteableStore/RemoteWrite` between receivers, and
//! `thanos.info.Info/Info` and `thanos.Store` for Thanos Query.
//!
//! Messages travel as raw bytes through a pass-through codec: the server hands them to a
//! [`UnaryMethod`] (the replicator decodes forwards with [`crate::wire::forward`]) or to the
//! [`StoreMethods`] of the read path, and the client
//! sends bytes that module encoded. The message is Thanos', so Thanos receivers and ours can share a
//! ring: forwards compressed with Thanos' snappy compressor are accepted, and sent with
//! `--receive.grpc-compression=snappy` ([`snappy`]).

pub mod snappy;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::time::Instant;

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};

use crate::metrics::{GrpcCall, GrpcMetrics};

/// Path of the forward method.
pub const REMOTE_WRITE_PATH: &str = "/thanos.WriteableStore/RemoteWrite";
/// Path of the Info method Thanos Query discovers endpoints with.
pub const INFO_PATH: &str = "/thanos.info.Info/Info";
/// Path of the Store API's streaming series method.
pub const SERIES_PATH: &str = "/thanos.Store/Series";
/// Path of the Store API's label names method.
pub const LABEL_NAMES_PATH: &str = "/thanos.Store/LabelNames";
/// Path of the Store API's label values method.
pub const LABEL_VALUES_PATH: &str = "/thanos.Store/LabelValues";
/// Path of the exemplars method.
pub const EXEMPLARS_PATH: &str = "/thanos.Exemplars/Exemplars";
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

/// The server side of a raw-bytes call, messages bounded by [`MAX_MESSAGE_SIZE`] both ways.
fn raw_server() -> tonic::server::Grpc<RawCodec> {
    tonic::server::Grpc::new(RawCodec)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// One unary gRPC method whose messages its implementor decodes and encodes itself.
pub trait UnaryMethod: Send + Sync + 'static {
    /// The service's full name, e.g. `thanos.WriteableStore`.
    const SERVICE: &'static str;
    /// The method's path, e.g. [`REMOTE_WRITE_PATH`].
    const PATH: &'static str;
    /// Answers one request: raw message bytes in, raw message bytes out.
    fn call(self: &Arc<Self>, request: Bytes) -> BoxFuture<Bytes, Status>;
    /// A buffer to decompress a request's message into; its bytes may be stale (a reused one).
    fn message_buffer(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// A gRPC service serving one [`UnaryMethod`].
pub struct UnaryServer<M> {
    method: Arc<M>,
    metrics: GrpcMetrics,
}

impl<M> Clone for UnaryServer<M> {
    fn clone(&self) -> Self {
        UnaryServer {
            method: Arc::clone(&self.method),
            metrics: self.metrics.clone(),
        }
    }
}

impl<M: UnaryMethod> UnaryServer<M> {
    /// A service that hands requests to `method`, counting calls in `metrics`.
    pub fn new(method: Arc<M>, metrics: GrpcMetrics) -> Self {
        UnaryServer { method, metrics }
    }
}

/// The metric labels of the method at `path` of `service`.
fn call_of(service: &'static str, path: &'static str, grpc_type: &'static str) -> GrpcCall {
    GrpcCall {
        grpc_service: service,
        grpc_method: path.rsplit('/').next().unwrap_or(path),
        grpc_type,
    }
}

/// Runs one call, counting it started and handled with the code it ended with.
async fn observed<T>(
    metrics: &GrpcMetrics,
    call: GrpcCall,
    f: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let start = Instant::now();
    metrics.started(call);
    let result = f.await;
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    metrics.handled(call, code, start.elapsed().as_secs_f64());
    result
}

impl<M: UnaryMethod> tonic::server::NamedService for UnaryServer<M> {
    const NAME: &'static str = M::SERVICE;
}

struct Unary<M>(Arc<M>, GrpcMetrics);

impl<M: UnaryMethod> tonic::server::UnaryService<Bytes> for Unary<M> {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, mut request: tonic::Request<Bytes>) -> Self::Future {
        let (method, metrics) = (Arc::clone(&self.0), self.1.clone());
        let message = match request.extensions_mut().remove::<Decompressed>() {
            Some(Decompressed(message)) => message,
            None => request.into_inner(),
        };
        Box::pin(async move {
            let call = call_of(M::SERVICE, M::PATH, "unary");
            let response = observed(&metrics, call, method.call(message)).await?;
            Ok(tonic::Response::new(response))
        })
    }
}

impl<M: UnaryMethod> Service<http::Request<tonic::body::Body>> for UnaryServer<M> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (method, metrics) = (Arc::clone(&self.method), self.metrics.clone());
        Box::pin(async move {
            if req.uri().path() != M::PATH {
                return Ok(
                    Status::unimplemented(format!("unknown method {}", req.uri().path()))
                        .into_http(),
                );
            }
            match uncompressed(req, || method.message_buffer()).await {
                Ok(req) => Ok(raw_server().unary(Unary(method, metrics), req).await),
                Err(status) => {
                    let call = call_of(M::SERVICE, M::PATH, "unary");
                    metrics.started(call);
                    metrics.handled(call, status.code(), 0.0);
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// The stream of a server-streaming answer whose messages are all known up front.
type Frames = futures::stream::Iter<
    std::iter::Map<std::vec::IntoIter<Bytes>, fn(Bytes) -> Result<Bytes, Status>>,
>;

/// Streams `frames` as the answer.
fn frames_response(frames: Vec<Bytes>) -> tonic::Response<Frames> {
    let ok: fn(Bytes) -> Result<Bytes, Status> = Ok;
    tonic::Response::new(futures::stream::iter(frames.into_iter().map(ok)))
}

/// One server-streaming gRPC method whose messages its implementor decodes and encodes itself.
pub trait StreamMethod: Send + Sync + 'static {
    /// The service's full name, e.g. `thanos.Exemplars`.
    const SERVICE: &'static str;
    /// The method's path, e.g. [`EXEMPLARS_PATH`].
    const PATH: &'static str;
    /// Answers one request with the messages of its stream.
    fn call(self: &Arc<Self>, request: Bytes) -> BoxFuture<Vec<Bytes>, Status>;
}

/// A gRPC service serving one [`StreamMethod`].
pub struct StreamServer<M> {
    method: Arc<M>,
    metrics: GrpcMetrics,
}

impl<M> Clone for StreamServer<M> {
    fn clone(&self) -> Self {
        StreamServer {
            method: Arc::clone(&self.method),
            metrics: self.metrics.clone(),
        }
    }
}

impl<M: StreamMethod> StreamServer<M> {
    /// A service that hands requests to `method`, counting calls in `metrics`.
    pub fn new(method: Arc<M>, metrics: GrpcMetrics) -> Self {
        StreamServer { method, metrics }
    }
}

impl<M: StreamMethod> tonic::server::NamedService for StreamServer<M> {
    const NAME: &'static str = M::SERVICE;
}

struct OneStream<M>(Arc<M>, GrpcMetrics);

impl<M: StreamMethod> tonic::server::ServerStreamingService<Bytes> for OneStream<M> {
    type Response = Bytes;
    type ResponseStream = Frames;
    type Future = BoxFuture<tonic::Response<Frames>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (method, metrics) = (Arc::clone(&self.0), self.1.clone());
        Box::pin(async move {
            let call = call_of(M::SERVICE, M::PATH, "server_stream");
            let frames = observed(&metrics, call, method.call(request.into_inner())).await?;
            Ok(frames_response(frames))
        })
    }
}

impl<M: StreamMethod> Service<http::Request<tonic::body::Body>> for StreamServer<M> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (method, metrics) = (Arc::clone(&self.method), self.metrics.clone());
        Box::pin(async move {
            if req.uri().path() != M::PATH {
                return Ok(
                    Status::unimplemented(format!("unknown method {}", req.uri().path()))
                        .into_http(),
                );
            }
            Ok(raw_server()
                .server_streaming(OneStream(method, metrics), req)
                .await)
        })
    }
}

/// A unary request's message, decompressed before tonic and handed to the method beside it:
/// tonic gets an empty frame instead, so it does not copy the message into its own buffer again.
#[derive(Clone)]
struct Decompressed(Bytes);

/// `req` with its snappy-compressed messages (Thanos' forwards by default) decompressed, so
/// tonic, which has no snappy codec, reads them; other requests pass untouched. The message of
/// a one-frame request travels in its extensions as [`Decompressed`].
async fn uncompressed(
    req: http::Request<tonic::body::Body>,
    buffer: impl FnOnce() -> Vec<u8>,
) -> Result<http::Request<tonic::body::Body>, Status> {
    use http_body_util::BodyExt as _;
    if req
        .headers()
        .get("grpc-encoding")
        .is_none_or(|v| v != snappy::ENCODING)
    {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    parts.headers.remove("grpc-encoding");
    let body = http_body_util::Limited::new(body, MAX_MESSAGE_SIZE + 5)
        .collect()
        .await
        .map_err(|e| Status::resource_exhausted(format!("compressed gRPC request: {e}")))?
        .to_bytes();
    if let Some(message) = snappy::single_message(body.clone(), MAX_MESSAGE_SIZE, buffer)? {
        parts.extensions.insert(Decompressed(message));
        let empty = Bytes::from_static(&[0, 0, 0, 0, 0]);
        return Ok(http::Request::from_parts(
            parts,
            tonic::body::Body::new(http_body_util::Full::new(empty)),
        ));
    }
    let plain = snappy::decompress_frames(body, MAX_MESSAGE_SIZE)?;
    Ok(http::Request::from_parts(
        parts,
        tonic::body::Body::new(http_body_util::Full::new(plain)),
    ))
}

/// The methods of `thanos.Store`, raw message bytes in and out.
pub trait StoreMethods: Send + Sync + 'static {
    /// Answers `Series` with the frames of its stream.
    fn series(self: &Arc<Self>, request: Bytes) -> BoxFuture<Vec<Bytes>, Status>;
    /// Answers `LabelNames`.
    fn label_names(self: &Arc<Self>, request: Bytes) -> BoxFuture<Bytes, Status>;
    /// Answers `LabelValues`.
    fn label_values(self: &Arc<Self>, request: Bytes) -> BoxFuture<Bytes, Status>;
}

/// The `thanos.Store` gRPC service over [`StoreMethods`].
pub struct StoreServer<M> {
    methods: Arc<M>,
    metrics: GrpcMetrics,
}

impl<M> Clone for StoreServer<M> {
    fn clone(&self) -> Self {
        StoreServer {
            methods: Arc::clone(&self.methods),
            metrics: self.metrics.clone(),
        }
    }
}

impl<M: StoreMethods> StoreServer<M> {
    /// A service that hands requests to `methods`, counting calls in `metrics`.
    pub fn new(methods: Arc<M>, metrics: GrpcMetrics) -> Self {
        StoreServer { methods, metrics }
    }
}

/// Name of the `thanos.Store` service.
const STORE_SERVICE: &str = "thanos.Store";

impl<M: StoreMethods> tonic::server::NamedService for StoreServer<M> {
    const NAME: &'static str = STORE_SERVICE;
}

struct Streaming<M>(Arc<M>, GrpcMetrics);

impl<M: StoreMethods> tonic::server::ServerStreamingService<Bytes> for Streaming<M> {
    type Response = Bytes;
    type ResponseStream = Frames;
    type Future = BoxFuture<tonic::Response<Frames>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (methods, metrics) = (Arc::clone(&self.0), self.1.clone());
        Box::pin(async move {
            let call = call_of(STORE_SERVICE, SERIES_PATH, "server_stream");
            let frames = observed(&metrics, call, methods.series(request.into_inner())).await?;
            Ok(frames_response(frames))
        })
    }
}

struct Labels<M>(Arc<M>, bool, GrpcMetrics);

impl<M: StoreMethods> tonic::server::UnaryService<Bytes> for Labels<M> {
    type Response = Bytes;
    type Future = BoxFuture<tonic::Response<Bytes>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let (methods, names, metrics) = (Arc::clone(&self.0), self.1, self.2.clone());
        Box::pin(async move {
            let request = request.into_inner();
            let path = if names {
                LABEL_NAMES_PATH
            } else {
                LABEL_VALUES_PATH
            };
            let call = call_of(STORE_SERVICE, path, "unary");
            let response = observed(&metrics, call, async {
                match names {
                    true => methods.label_names(request).await,
                    false => methods.label_values(request).await,
                }
            })
            .await?;
            Ok(tonic::Response::new(response))
        })
    }
}

impl<M: StoreMethods> Service<http::Request<tonic::body::Body>> for StoreServer<M> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (methods, metrics) = (Arc::clone(&self.methods), self.metrics.clone());
        Box::pin(async move {
            let mut grpc = raw_server();
            Ok(match req.uri().path() {
                SERIES_PATH => {
                    grpc.server_streaming(Streaming(methods, metrics), req)
                        .await
                }
                LABEL_NAMES_PATH => grpc.unary(Labels(methods, true, metrics), req).await,
                LABEL_VALUES_PATH => grpc.unary(Labels(methods, false, metrics), req).await,
                path => Status::unimplemented(format!("unknown method {path}")).into_http(),
            })
        })
    }
}

/// A forward's message ready to send: as it is, or in one gRPC frame compressed as Thanos'
/// snappy compressor writes it. Built once for every peer (and every retry) that sends it.
#[derive(Debug, Clone)]
pub enum Forward {
    /// The message bytes.
    Plain(Bytes),
    /// A gRPC frame holding the message compressed ([`snappy::compressed_frame`]).
    Snappy(Bytes),
}

impl Forward {
    /// Prepares `message`, compressing it when `snappy`.
    pub fn new(message: Bytes, snappy: bool) -> Self {
        if snappy {
            Forward::Snappy(snappy::compressed_frame(&message))
        } else {
            Forward::Plain(message)
        }
    }
}

/// Calls `RemoteWrite` on a peer.
pub async fn remote_write(
    channel: tonic::transport::Channel,
    request: Forward,
) -> Result<(), Status> {
    let request = match request {
        Forward::Plain(message) => message,
        Forward::Snappy(frame) => return remote_write_snappy(channel, frame).await,
    };
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

/// `RemoteWrite` with a snappy-compressed `frame`: tonic's client cannot set the compressed flag
/// for a codec it lacks, so the call is made on the channel directly.
async fn remote_write_snappy(
    mut channel: tonic::transport::Channel,
    frame: Bytes,
) -> Result<(), Status> {
    use http_body_util::BodyExt as _;
    let req = http::Request::post(REMOTE_WRITE_PATH)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header("grpc-encoding", snappy::ENCODING)
        .header("grpc-accept-encoding", "identity")
        .body(tonic::body::Body::new(http_body_util::Full::new(frame)))
        .map_err(|e| Status::internal(format!("building the forward: {e}")))?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::new(Code::Unavailable, format!("peer not ready: {e}")))?;
    let response = channel
        .call(req)
        .await
        .map_err(|e| Status::new(Code::Unavailable, format!("forward: {e}")))?;
    // A trailers-only response carries the status in its headers.
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status_result(status);
    }
    if response.status() != http::StatusCode::OK {
        return Err(Status::new(
            Code::Unavailable,
            format!("peer answered HTTP {}", response.status()),
        ));
    }
    let collected = http_body_util::Limited::new(response.into_body(), MAX_MESSAGE_SIZE)
        .collect()
        .await
        .map_err(|e| Status::new(Code::Unavailable, format!("forward response: {e}")))?;
    match collected.trailers().and_then(Status::from_header_map) {
        Some(status) => status_result(status),
        None => Err(Status::internal("forward response without grpc-status")),
    }
}

fn status_result(status: Status) -> Result<(), Status> {
    match status.code() {
        Code::Ok => Ok(()),
        _ => Err(status),
    }
}

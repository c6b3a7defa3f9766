//! A mixed ring with Thanos receivers: Thanos forwards with `grpc-encoding: snappy` by default
//! (its compressor writes each message as a snappy framed stream); ours accepts such forwards and
//! sends them when `--receive.grpc-compression=snappy`. The frames are built and read here with
//! the `snap` crate and by hand, not with the receiver's own codec.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use e2e::{Receiver, eventually, free_port, now_ms, post_v1};
use http_body_util::BodyExt as _;
use receiver::wire::messages::{snappy, v1};

/// Posts `body` to the receiver's RemoteWrite with `grpc-encoding: snappy`; returns grpc-status.
async fn post_snappy(grpc_port: u16, body: Bytes) -> String {
    let channel = e2e::grpc_channel(grpc_port).await;
    let mut channel = channel;
    std::future::poll_fn(|cx| tonic::codegen::Service::poll_ready(&mut channel, cx))
        .await
        .unwrap();
    let req = http::Request::post(receiver::grpc::REMOTE_WRITE_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "snappy")
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .unwrap();
    let resp = tonic::codegen::Service::call(&mut channel, req)
        .await
        .unwrap();
    if let Some(s) = resp.headers().get("grpc-status") {
        return s.to_str().unwrap().to_owned();
    }
    let collected = resp.into_body().collect().await.unwrap();
    collected.trailers().unwrap()["grpc-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thanos_snappy_compressed_forwards_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;

    let mut encoder = snap::write::FrameEncoder::new(Vec::new());
    encoder
        .write_all(&e2e::forward_message("from_thanos"))
        .unwrap();
    let stream = encoder.into_inner().unwrap();
    assert_eq!(
        &stream[..10],
        b"\xff\x06\x00\x00sNaPpY",
        "a snappy framed stream"
    );
    assert_eq!(
        post_snappy(recv.grpc_port, e2e::grpc_frame(true, &stream)).await,
        "0"
    );
    assert_eq!(e2e::head_series(&client, &recv).await, 1);

    // Garbage under the snappy flag is refused; the receiver keeps serving.
    let status = post_snappy(recv.grpc_port, e2e::grpc_frame(true, b"not snappy at all")).await;
    assert_eq!(status, (tonic::Code::InvalidArgument as i32).to_string());
    let (s, b) = post_v1(
        &client,
        &recv.write_url(),
        snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(&[("__name__", "after")], &[(now_ms(), 1.0)])],
            metadata: vec![],
        }),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

/// A request as the peer saw it: its `grpc-encoding` header and its body.
type Seen = (Option<String>, Bytes);

/// A gRPC peer that records what it is sent and answers OK.
#[derive(Clone)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl tonic::server::NamedService for Recorder {
    const NAME: &'static str = "thanos.WriteableStore";
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Recorder {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let seen = Arc::clone(&self.0);
        Box::pin(async move {
            let encoding = req
                .headers()
                .get("grpc-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push((encoding, body));
            Ok(http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "0")
                .body(tonic::body::Body::empty())
                .unwrap())
        })
    }
}

/// What the receiver forwarded to a recording peer with `compression`: (grpc-encoding, body).
async fn forwarded(compression: &str) -> Seen {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let seen = Recorder(Arc::default());
    let peer_port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], peer_port).into();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(seen.clone())
            .serve(addr),
    );
    let grpc = free_port();
    let ring = tmp.path().join("hashrings.json");
    e2e::write_atomic(
        &ring,
        &e2e::ring_json(
            &[
                format!("127.0.0.1:{grpc}"),
                format!("127.0.0.1:{peer_port}"),
            ],
            "hashmod",
        ),
    );
    let mut recv = Receiver::start_on(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        grpc,
        &[
            format!("--receive.hashrings-file={}", ring.display()),
            format!("--receive.local-endpoint=127.0.0.1:{grpc}"),
            "--receive.replication-factor=2".into(),
            format!("--receive.grpc-compression={compression}"),
        ],
    );
    recv.wait_ready(&client).await;
    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(
            &[("__name__", "forwarded_metric")],
            &[(now_ms(), 1.0)],
        )],
        metadata: vec![],
    });
    let (s, b) = post_v1(&client, &recv.write_url(), body, None).await;
    assert_eq!(s, 200, "{b}");
    let got = eventually(Duration::from_secs(10), "a forward at the peer", || async {
        seen.0.lock().unwrap().first().cloned()
    })
    .await;
    server.abort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_carry_thanos_snappy_when_the_flag_says_so() {
    let (encoding, body) = forwarded("snappy").await;
    assert_eq!(encoding.as_deref(), Some("snappy"));
    assert_eq!(body[0], 1, "the compressed flag");
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, body.len() - 5);
    let mut message = Vec::new();
    snap::read::FrameDecoder::new(&body[5..])
        .read_to_end(&mut message)
        .unwrap();
    assert!(
        message
            .windows(b"forwarded_metric".len())
            .any(|w| w == b"forwarded_metric"),
        "the decompressed forward holds the series"
    );

    let (encoding, body) = forwarded("none").await;
    assert_eq!(encoding, None);
    assert_eq!(body[0], 0);
}

//! Hostile input, as an attacker who reaches the ports would send it: decoded-size bombs, slow
//! connections, oversized gRPC messages, non-ASCII tenants, exposed status pages and hostile
//! ring files. Each is answered correctly, memory stays bounded, the ops port stays responsive
//! and a canary write succeeds afterwards.

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{Receiver, eventually, free_port, post_v1, post_v2, write_atomic};
use prost::Message;
use receiver::wire::messages::{snappy, v1, v2};

/// Peak resident memory of a process in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn raw_snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

/// A remote write 1.0 body of one series whose labels are `n` empty label messages: 2 bytes of
/// protobuf each, 16 bytes each once decoded.
fn empty_labels_bomb(n: usize) -> Vec<u8> {
    let mut series = Vec::with_capacity(2 * n + 8);
    for _ in 0..n {
        series.extend_from_slice(&[0x0a, 0x00]);
    }
    let mut body = vec![0x0a];
    prost::encoding::encode_varint(series.len() as u64, &mut body);
    body.extend_from_slice(&series);
    body
}

/// `n` empty series (2 bytes each).
fn empty_series_bomb(n: usize) -> Vec<u8> {
    [0x0a, 0x00].repeat(n)
}

async fn canary(client: &reqwest::Client, recv: &Receiver, t: i64) {
    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(&[("__name__", "canary")], &[(t, 1.0)])],
        metadata: vec![],
    });
    let (s, b) = post_v1(client, &recv.write_url(), body, None).await;
    assert_eq!(s, 200, "canary write: {b}");
}

/// `/-/ready` and `/metrics` answer quickly on new connections (a pooled one would hide a port
/// that accepts nothing).
async fn ops_responsive(recv: &Receiver) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let start = Instant::now();
    for path in ["/-/ready", "/metrics"] {
        let r = client
            .get(recv.http_url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} does not answer: {e}"));
        assert_eq!(r.status(), 200, "{path}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "ops port slow: {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_size_bombs_are_refused_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;
    let baseline = peak_rss(recv.child.id());

    let v1_headers = |req: reqwest::RequestBuilder| {
        req.header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
    };
    // 16 M empty labels in one series, and 16 M empty series: 32 MiB decoded, ~1.5 MiB sent.
    let bombs = [
        (
            raw_snappy(&empty_labels_bomb((32 << 20) / 2 - 8)),
            400,
            "more than 1024 labels",
        ),
        (
            raw_snappy(&empty_series_bomb((32 << 20) / 2)),
            413,
            "decoded",
        ),
    ];
    for (body, want, text) in &bombs {
        assert!(
            body.len() < 2 << 20,
            "bomb is small on the wire: {}",
            body.len()
        );
        // Eight at once, as an attacker would.
        let sends = (0..8).map(|_| {
            v1_headers(client.post(recv.write_url()))
                .body(body.clone())
                .send()
        });
        for r in futures::future::join_all(sends).await {
            let r = r.unwrap();
            let status = r.status().as_u16();
            let reason = r.text().await.unwrap();
            assert_eq!(status, *want, "{reason}");
            assert!(reason.contains(text), "{reason}");
            assert!(
                reason.len() < 1024,
                "reason is short: {} bytes",
                reason.len()
            );
        }
    }

    // Remote write 2.0: one 60 KiB symbol referenced by thousands of series resolves to far more
    // label bytes than were sent.
    let big = "x".repeat(60 << 10);
    let names: Vec<String> = (0..2000).map(|i| format!("s{i}")).collect();
    let labels: Vec<[(&str, &str); 2]> = names
        .iter()
        .map(|n| [("__name__", n.as_str()), ("big", big.as_str())])
        .collect();
    let spec_refs: Vec<v2::SeriesSpec<'_>> = labels
        .iter()
        .map(|l| (l.as_slice(), &[(1, 1.0)][..]))
        .collect();
    let req = v2::request(&spec_refs);
    let (s, reason) = post_v2(&client, &recv.write_url(), snappy(&req)).await;
    assert_eq!(s, 413, "{reason}");

    // A series whose labels are long: the reason names it without repeating all of it.
    let long: Vec<(String, String)> = (0..500)
        .map(|i| (format!("l{i:03}"), "v".repeat(1000)))
        .collect();
    let mut pairs: Vec<(&str, &str)> = long.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    pairs.push(("__name__", "m"));
    pairs.sort();
    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(&pairs, &[(2, 1.0), (1, 1.0)])],
        metadata: vec![],
    });
    let (s, reason) = post_v1(&client, &recv.write_url(), body, None).await;
    assert_eq!(s, 400, "{reason}");
    assert!(
        reason.len() < 1024,
        "reason is short: {} bytes",
        reason.len()
    );

    let peak = peak_rss(recv.child.id());
    eprintln!(
        "peak RSS {} MiB (baseline {} MiB)",
        peak >> 20,
        baseline >> 20
    );
    assert!(
        peak < baseline + (1 << 30),
        "peak RSS {} MiB after the bombs (baseline {} MiB)",
        peak >> 20,
        baseline >> 20
    );
    ops_responsive(&recv).await;
    canary(&client, &recv, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_exhaust_no_port() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let limits = tmp.path().join("limits.yml");
    std::fs::write(&limits, "write:\n  global: {max_concurrency: 4}\n").unwrap();
    // 160 descriptors at most: the write port gets 80 connections, gRPC 40, the ops port its own 20.
    let mut recv = Receiver::start_with_nofile(
        &tmp.path().join("data"),
        160,
        &[format!("--receive.limits-config-file={}", limits.display())],
    );
    recv.wait_ready(&client).await;

    // 200 connections that send half a request line and stall (more than the write port's cap;
    // the rest wait in the listen backlog), 40 more on the gRPC port.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", recv.rw_port)).unwrap();
        s.write_all(b"POST /api/v1/receive HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stalled.push(s);
    }
    for _ in 0..40 {
        stalled.push(TcpStream::connect(("127.0.0.1", recv.grpc_port)).unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ops_responsive(&recv).await;
    drop(stalled);

    // Four uploads that send their headers and stall mid-body hold no write slot.
    let mut slow_bodies = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(("127.0.0.1", recv.rw_port)).unwrap();
        s.write_all(
            b"POST /api/v1/receive HTTP/1.1\r\nHost: x\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\nabc",
        )
        .unwrap();
        slow_bodies.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    canary(&client, &recv, 1).await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "canary waited {:?}",
        start.elapsed()
    );
    ops_responsive(&recv).await;
    drop(slow_bodies);
    canary(&client, &recv, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_grpc_messages_and_bad_tenants_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;
    let baseline = peak_rss(recv.child.id());

    // 200 MiB through the gRPC port: refused before it is buffered whole.
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(recv.grpc_port).await)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready().await.unwrap();
    let huge = bytes::Bytes::from(vec![0u8; 200 << 20]);
    let err = grpc
        .unary(
            tonic::Request::new(huge),
            http::uri::PathAndQuery::from_static(receiver::grpc::REMOTE_WRITE_PATH),
            receiver::grpc::RawCodec,
        )
        .await
        .expect_err("a 200 MiB message is refused");
    assert!(
        matches!(
            err.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{err:?}"
    );
    let peak = peak_rss(recv.child.id());
    assert!(
        peak < baseline + (200 << 20),
        "peak RSS {} MiB after a 200 MiB gRPC message (baseline {} MiB)",
        peak >> 20,
        baseline >> 20
    );

    // A tenant header that is not ASCII: 400, not the default tenant.
    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(&[("__name__", "m")], &[(1, 1.0)])],
        metadata: vec![],
    });
    let r = client
        .post(recv.write_url())
        .header("Content-Encoding", "snappy")
        .header(
            "THANOS-TENANT",
            reqwest::header::HeaderValue::from_bytes(b"t\xe9nant").unwrap(),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not ASCII"));
    // The default tenant (open from the start) got nothing either.
    assert_eq!(e2e::head_series(&client, &recv).await, 0);

    // A 2.0 body sent as 1.0 (and the reverse) is refused, never 2xx with nothing stored.
    let v2_body = snappy(&v2::request(&[(&[("__name__", "m")], &[(1, 1.0)])]));
    let (s, b) = post_v1(&client, &recv.write_url(), v2_body, None).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("Content-Type"), "{b}");
    let (s, reason) = post_v2(&client, &recv.write_url(), body).await;
    assert_eq!(s, 400, "{reason}");

    // A symbol reference beyond 32 bits does not alias another symbol.
    let mut req = v2::request(&[(&[("__name__", "m")], &[(1, 1.0)])]).encode_to_vec();
    // Append a series whose label refs are [1 + 2^32, 1]: packed varints, field 1 of field 5.
    let mut refs = Vec::new();
    prost::encoding::encode_varint(1 + (1u64 << 32), &mut refs);
    prost::encoding::encode_varint(1, &mut refs);
    let mut series = vec![0x0a];
    prost::encoding::encode_varint(refs.len() as u64, &mut series);
    series.extend_from_slice(&refs);
    req.push(0x2a);
    prost::encoding::encode_varint(series.len() as u64, &mut req);
    req.extend_from_slice(&series);
    let (s, reason) = post_v2(&client, &recv.write_url(), raw_snappy(&req)).await;
    assert_eq!(s, 400, "{reason}");
    assert!(reason.contains("symbol reference 4294967297"));

    // Status pages are served on the ops port only.
    let r = client
        .get(format!(
            "http://127.0.0.1:{}/api/v1/status/tsdb",
            recv.rw_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    canary(&client, &recv, 5).await;
    let r = client
        .get(recv.http_url("/api/v1/status/tsdb?limit=100000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ops_responsive(&recv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ring_files_are_refused_and_the_receiver_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let ring = tmp.path().join("hashrings.json");
    let (rw, http, grpc) = (free_port(), free_port(), free_port());
    let me = format!("127.0.0.1:{grpc}");
    write_atomic(&ring, &e2e::ring_json(std::slice::from_ref(&me), "hashmod"));
    let mut recv = Receiver::start_on(
        &tmp.path().join("data"),
        rw,
        http,
        grpc,
        &[
            format!("--receive.hashrings-file={}", ring.display()),
            format!("--receive.local-endpoint={me}"),
        ],
    );
    recv.wait_ready(&client).await;
    canary(&client, &recv, 1).await;
    let errors =
        |text: &str| e2e::metric_sum(text, "thanos_receive_hashrings_file_errors_total", &[]);
    let before = errors(&recv.metrics_text(&client).await.unwrap());

    // Unparseable endpoint addresses: refused, the ring in force stays.
    write_atomic(
        &ring,
        r#"[{"endpoints": ["not an address", "x:notaport"]}]"#,
    );
    e2e::eventually(
        Duration::from_secs(10),
        "the bad ring to be refused",
        || async {
            let text = recv.metrics_text(&client).await?;
            (errors(&text) > before).then_some(())
        },
    )
    .await;
    canary(&client, &recv, 2).await;

    // A FIFO at the ring path (no writer) and a symlink to /dev/zero: neither hangs nor fills memory.
    std::fs::remove_file(&ring).unwrap();
    let status = Command::new("mkfifo").arg(&ring).status().unwrap();
    assert!(status.success());
    let errors_metric = "thanos_receive_hashrings_file_errors_total";
    let seen = recv.metric(&client, errors_metric, &[]).await;
    let seen = recv.metric_above(&client, errors_metric, &[], seen).await;
    ops_responsive(&recv).await;
    canary(&client, &recv, 3).await;
    std::fs::remove_file(&ring).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &ring).unwrap();
    recv.metric_above(&client, errors_metric, &[], seen).await;
    ops_responsive(&recv).await;
    canary(&client, &recv, 4).await;
    assert!(peak_rss(recv.child.id()) < 512 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_tenants_restart_under_a_low_descriptor_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let data = tmp.path().join("data");
    let flags = ["--tsdb.head-compaction-interval=1s".to_string()];
    let mut recv = Receiver::start_with_nofile(&data, 512, &flags);
    recv.wait_ready(&client).await;
    let baseline_fds = recv.open_fds();
    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(&[("__name__", "per_tenant")], &[(1000, 1.0)])],
        metadata: vec![],
    });
    for i in 0..600 {
        let tenant = format!("t{i:03}");
        let (s, b) = post_v1(&client, &recv.write_url(), body.clone(), Some(&tenant)).await;
        assert_eq!(s, 200, "tenant {tenant}: {b}");
        if i % 100 == 99 {
            // Idle tenants give their WAL descriptors back at a compaction tick.
            eventually(
                Duration::from_secs(30),
                "idle WALs to be closed",
                || async { (recv.open_fds() < baseline_fds + 50).then_some(()) },
            )
            .await;
        }
    }
    recv.kill9();

    let mut recv = Receiver::start_with_nofile(&data, 512, &flags);
    recv.wait_ready(&client).await;
    ops_responsive(&recv).await;
    for i in (0..600).step_by(37) {
        let tenant = format!("t{i:03}");
        let r = client
            .get(recv.http_url("/api/v1/status/tsdb"))
            .header("THANOS-TENANT", &tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{tenant} after restart");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["data"][0]["headStats"]["numSeries"], 1, "{tenant}: {v}");
        assert_eq!(v["data"][0]["tenant"], tenant.as_str(), "{v}");
    }
    let (s, b) = post_v1(&client, &recv.write_url(), body, Some("t599")).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_beyond_max_tenants_get_429_and_known_ones_keep_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let limits = tmp.path().join("limits.yml");
    // The default tenant is opened at start and counts: room for two more.
    std::fs::write(&limits, "write:\n  global: {max_tenants: 3}\n").unwrap();
    let flags = [format!("--receive.limits-config-file={}", limits.display())];
    let data = tmp.path().join("data");
    let mut recv = Receiver::start(&data, &flags);
    recv.wait_ready(&client).await;
    let body = |t: i64| {
        snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(&[("__name__", "m")], &[(t, 1.0)])],
            metadata: vec![],
        })
    };
    for tenant in ["a", "b"] {
        let (s, b) = post_v1(&client, &recv.write_url(), body(1), Some(tenant)).await;
        assert_eq!(s, 200, "{tenant}: {b}");
    }
    let (s, b) = post_v1(&client, &recv.write_url(), body(1), Some("c")).await;
    assert_eq!(s, 429, "{b}");
    assert!(b.contains("tenants"), "{b}");
    assert!(
        !data.join("c").exists(),
        "a refused tenant gets no directory"
    );
    let (s, b) = post_v1(&client, &recv.write_url(), body(2), Some("a")).await;
    assert_eq!(s, 200, "a known tenant keeps writing: {b}");
    let hit = recv
        .metric(
            &client,
            "thanos_receive_write_limits_hit_total",
            &[("limit", "tenants")],
        )
        .await;
    assert_eq!(hit, 1.0);
}

/// Sends one forward message to the receiver's gRPC port as a peer would.
async fn forward(recv: &Receiver, message: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(recv.grpc_port).await);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(bytes::Bytes::from(message)),
        http::uri::PathAndQuery::from_static(receiver::grpc::REMOTE_WRITE_PATH),
        receiver::grpc::RawCodec,
    )
    .await
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_checked_for_every_series_that_needs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;
    let good: &[(&str, &str)] = &[("__name__", "fwd"), ("job", "a")];
    forward(&recv, e2e::forward_series(&[good])).await.unwrap();
    assert_eq!(e2e::head_series(&client, &recv).await, 1);
    // Peers check labels before forwarding; a replica checks them again for every series it
    // would create, so a forward from anything else cannot store unsorted, duplicate or empty
    // labels: the bad series is refused, the others are stored.
    let bad_sets: [&[(&str, &str)]; 3] = [
        &[("__name__", "fwd"), ("job", "b"), ("a", "x")],
        &[("__name__", "fwd"), ("job", "b"), ("job", "c")],
        &[("__name__", "fwd"), ("job", "")],
    ];
    for (k, bad) in bad_sets.into_iter().enumerate() {
        let job = format!("new-{k}");
        let other: &[(&str, &str)] = &[("__name__", "fwd"), ("job", &job)];
        let err = forward(&recv, e2e::forward_series(&[good, bad, other]))
            .await
            .expect_err("a series with bad labels is refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
        assert!(err.message().contains("1 series"), "{err:?}");
        assert_eq!(
            e2e::head_series(&client, &recv).await,
            k as u64 + 2,
            "{bad:?}"
        );
    }

    // A series created by a 2.0 write with a UTF-8 name is refused to 1.0, whose names must
    // use the classic charset, although the head knows it.
    let utf8: &[(&str, &str)] = &[("__name__", "http.server.duration"), ("job", "a")];
    let body = snappy(&v2::request(&[(utf8, &[(e2e::now_ms(), 1.0)])]));
    let (status, reason) = post_v2(&client, &recv.write_url(), body).await;
    assert_eq!(status, 204, "{reason}");
    let body = snappy(&v1::WriteRequest {
        timeseries: vec![v1::series(utf8, &[(e2e::now_ms() + 1, 1.0)])],
        metadata: vec![],
    });
    let (status, reason) = post_v1(&client, &recv.write_url(), body, None).await;
    assert_eq!(status, 400, "{reason}");
    assert!(reason.contains("metric name"), "{reason}");
    assert_eq!(e2e::head_series(&client, &recv).await, 5);
}

//! Flags and limits a user sets, one end-to-end check each: the replica header, the future
//! window, the samples limit, the concurrency bound, exemplars (dropped, as Thanos), and JSON logs.

use std::time::Duration;

use e2e::{Receiver, free_port, now_ms, post_v1};
use receiver::wire::messages::{snappy, v1};

fn body(series: Vec<v1::TimeSeries>) -> Vec<u8> {
    snappy(&v1::WriteRequest {
        timeseries: series,
        metadata: vec![],
    })
}

async fn appended(client: &reqwest::Client, recv: &Receiver) -> f64 {
    recv.metric(client, "prometheus_tsdb_head_samples_appended_total", &[])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_header_means_already_replicated_so_it_is_stored_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let grpc = free_port();
    // RF=3 over this receiver and two peers that do not exist: a fresh write cannot reach a
    // quorum, one marked as a replica is stored here alone.
    let ring = format!(
        r#"[{{"endpoints":["127.0.0.1:{grpc}","127.0.0.1:{}","127.0.0.1:{}"]}}]"#,
        free_port(),
        free_port()
    );
    let mut recv = Receiver::start_on(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        grpc,
        &[
            format!("--receive.hashrings={ring}"),
            "--receive.replication-factor=3".into(),
            format!("--receive.local-endpoint=127.0.0.1:{grpc}"),
            "--receive.replica-header=X-Replica".into(),
            "--receive-forward-timeout=1s".into(),
        ],
    );
    recv.wait_ready(&client).await;
    let series = || body(vec![v1::series(&[("__name__", "m")], &[(now_ms(), 1.0)])]);
    let (status, text) = post_v1(&client, &recv.write_url(), series(), None).await;
    assert_eq!(status, 503, "no quorum without peers: {text}");
    let before = appended(&client, &recv).await;
    let r = client
        .post(recv.write_url())
        .header("Content-Encoding", "snappy")
        .header("X-Replica", "2")
        .body(series())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    assert_eq!(appended(&client, &recv).await, before + 1.0);
    // The default header name is not the configured one: it routes as a fresh write.
    let r = client
        .post(recv.write_url())
        .header("Content-Encoding", "snappy")
        .header("THANOS-REPLICA", "2")
        .body(series())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let r = client
        .post(recv.write_url())
        .header("Content-Encoding", "snappy")
        .header("X-Replica", "two")
        .body(series())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "a malformed replica number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_beyond_the_future_window_are_refused_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(
        &tmp.path().join("data"),
        &["--tsdb.too-far-in-future.time-window=1m".into()],
    );
    recv.wait_ready(&client).await;
    let now = now_ms();
    let (status, text) = post_v1(
        &client,
        &recv.write_url(),
        body(vec![v1::series(
            &[("__name__", "m")],
            &[(now, 1.0), (now + 30_000, 2.0), (now + 600_000, 3.0)],
        )]),
        None,
    )
    .await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("too far in the future"), "{text}");
    assert_eq!(
        appended(&client, &recv).await,
        2.0,
        "the samples inside the window"
    );
    let refused = recv
        .metric(
            &client,
            "thanos_receive_rejected_samples_total",
            &[("reason", "too_far_in_future")],
        )
        .await;
    assert_eq!(refused, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_samples_limit_refuses_whole_requests_and_the_concurrency_bound_queues() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = tmp.path().join("limits.yml");
    std::fs::write(
        &limits,
        "write:\n  global:\n    max_concurrency: 1\n  default:\n    request: {samples_limit: 5}\n",
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(
        &tmp.path().join("data"),
        &[format!("--receive.limits-config-file={}", limits.display())],
    );
    recv.wait_ready(&client).await;
    let t = now_ms();
    let samples = |n: i64| (0..n).map(|i| (t + i, 1.0)).collect::<Vec<_>>();
    let (status, text) = post_v1(
        &client,
        &recv.write_url(),
        body(vec![v1::series(&[("__name__", "big")], &samples(6))]),
        None,
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("too many samples"), "{text}");
    assert_eq!(
        appended(&client, &recv).await,
        0.0,
        "nothing of it is stored"
    );
    let hit = recv
        .metric(
            &client,
            "thanos_receive_write_limits_hit_total",
            &[("limit", "samples")],
        )
        .await;
    assert_eq!(hit, 1.0);

    // With one write slot, concurrent writes wait for it instead of failing.
    let writes = (0..16).map(|i| {
        let (client, url) = (client.clone(), recv.write_url());
        async move {
            let name = format!("m{i}");
            post_v1(
                &client,
                &url,
                body(vec![v1::series(
                    &[("__name__", name.as_str())],
                    &samples(5),
                )]),
                None,
            )
            .await
        }
    });
    let answers = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(writes))
        .await
        .expect("queued writes finish");
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(appended(&client, &recv).await, 80.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_are_dropped_with_2xx_and_their_samples_stored_as_thanos_does() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;
    let mut series = v1::series(&[("__name__", "m")], &[(now_ms(), 1.0)]);
    series.exemplars.push(v1::Exemplar {
        labels: vec![v1::Label {
            name: "trace_id".into(),
            value: "abc".into(),
        }],
        value: 1.0,
        timestamp: now_ms(),
    });
    // A Prometheus with `send_exemplars: true` must not fail every batch (Thanos' default
    // --tsdb.max-exemplars=0 drops them the same way).
    let (status, text) = post_v1(&client, &recv.write_url(), body(vec![series]), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(appended(&client, &recv).await, 1.0);
    let dropped = recv
        .metric(
            &client,
            "thanos_receive_rejected_samples_total",
            &[("reason", "exemplars_dropped")],
        )
        .await;
    assert_eq!(dropped, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &["--log.format=json".into()]);
    recv.wait_ready(&client).await;
    assert!(recv.terminate().success());
    let log = recv.log_text();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

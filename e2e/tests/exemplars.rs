//! Exemplars end to end: a real Prometheus 2.42 with exemplar storage scrapes an OpenMetrics
//! target whose counter carries exemplars and remote-writes them (`send_exemplars: true`); the
//! receiver keeps them (`--tsdb.max-exemplars`), survives kill -9 with them (WAL replay), and
//! serves them through `thanos.Exemplars/Exemplars` and Info as Thanos Query asks.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use bytes::Bytes;
use e2e::prometheus::Prometheus;
use e2e::{Receiver, eventually, metric_sum, now_ms, post_v1};
use prost::Message;
use receiver::grpc::{EXEMPLARS_PATH, INFO_PATH, RawCodec};
use receiver::wire::exemplars::{ExemplarsRequest, ExemplarsResponse};
use receiver::wire::info::InfoResponse;
use receiver::wire::messages::{snappy, v1};

/// An OpenMetrics target: a counter whose every scrape carries an exemplar `trace_id="t<N>"`.
fn start_target() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|l| l > 2) {
                line.clear();
            }
            let body = format!(
                "# TYPE requests counter\nrequests_total{{path=\"/api\"}} {n} # {{trace_id=\"t{n}\"}} {n}.5\n# EOF\n"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Calls `Exemplars` and decodes its stream.
async fn exemplars(port: u16, query: &str) -> Vec<ExemplarsResponse> {
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(port).await);
    grpc.ready().await.unwrap();
    let request = ExemplarsRequest {
        query: query.into(),
        start: 0,
        end: i64::MAX,
        partial_response_strategy: 0,
    };
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(Bytes::from(request.encode_to_vec())),
            http::uri::PathAndQuery::from_static(EXEMPLARS_PATH),
            RawCodec,
        )
        .await
        .unwrap_or_else(|s| panic!("Exemplars: {s}"))
        .into_inner();
    let mut out = Vec::new();
    while let Some(frame) = stream.message().await.expect("a frame") {
        out.push(ExemplarsResponse::decode(frame).expect("an ExemplarsResponse"));
    }
    out
}

/// Trace ids of the exemplars in an answer, in order.
fn trace_ids(answer: &[ExemplarsResponse]) -> Vec<String> {
    answer
        .iter()
        .filter_map(|r| r.data.as_ref())
        .flat_map(|d| &d.exemplars)
        .filter_map(|e| {
            e.labels
                .as_ref()?
                .labels
                .iter()
                .find(|l| l.name == "trace_id")
                .map(|l| l.value.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_exemplars_are_stored_survive_kill_9_and_are_served_to_thanos_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let flags = ["--tsdb.max-exemplars=1000".to_string()];
    let mut recv = Receiver::start(&data, &flags);
    let client = reqwest::Client::new();
    recv.wait_ready(&client).await;
    let target = start_target();
    let prom = Prometheus::exemplar_sender(
        &tmp.path().join("prom"),
        "api",
        &[target],
        &recv.write_url(),
    );
    let stored = eventually(Duration::from_secs(60), "5 exemplars stored", || async {
        let v = recv
            .metric(
                &client,
                "prometheus_tsdb_exemplar_exemplars_appended_total",
                &[],
            )
            .await;
        (v >= 5.0).then_some(v)
    })
    .await;
    let text = prom.metrics(&client).await.unwrap();
    assert_eq!(
        metric_sum(&text, "prometheus_remote_storage_samples_failed_total", &[]),
        0.0
    );
    assert!(metric_sum(&text, "prometheus_remote_storage_exemplars_total", &[]) >= 5.0);

    // Thanos Query's view: Info announces the API, and the series' exemplars come back with
    // the external labels, selected from inside a PromQL expression.
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(recv.grpc_port).await);
    grpc.ready().await.unwrap();
    let info = grpc
        .unary(
            tonic::Request::new(Bytes::new()),
            http::uri::PathAndQuery::from_static(INFO_PATH),
            RawCodec,
        )
        .await
        .unwrap()
        .into_inner();
    assert!(InfoResponse::decode(info).unwrap().exemplars.is_some());
    let answer = exemplars(
        recv.grpc_port,
        r#"sum(rate(requests_total{job="api"}[1m]))"#,
    )
    .await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    let series = answer[0]
        .data
        .as_ref()
        .unwrap()
        .series_labels
        .as_ref()
        .unwrap();
    let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
    assert!(
        names.contains(&"replica") && names.contains(&"tenant_id") && names.contains(&"path"),
        "{names:?}"
    );
    let before = trace_ids(&answer);
    assert!(before.len() as f64 >= stored.min(5.0), "{before:?}");
    // Oldest first, one per scrape.
    let numbers: Vec<u64> = before.iter().map(|t| t[1..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    // Another tenant's matcher and another metric select nothing.
    assert!(
        exemplars(recv.grpc_port, r#"requests_total{tenant_id="other"}"#)
            .await
            .is_empty()
    );
    assert!(exemplars(recv.grpc_port, "up").await.is_empty());
    // A malformed query is refused with the reason.
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(recv.grpc_port).await);
    grpc.ready().await.unwrap();
    let bad = grpc
        .server_streaming(
            tonic::Request::new(Bytes::from(
                ExemplarsRequest {
                    query: "sum(".into(),
                    ..ExemplarsRequest::default()
                }
                .encode_to_vec(),
            )),
            http::uri::PathAndQuery::from_static(EXEMPLARS_PATH),
            RawCodec,
        )
        .await;
    assert_eq!(bad.unwrap_err().code(), tonic::Code::InvalidArgument);

    // Every acknowledged exemplar is back after kill -9.
    drop(prom);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acknowledged = trace_ids(&exemplars(recv.grpc_port, "requests_total").await);
    recv.kill9();
    let mut recv = Receiver::start_on(&data, recv.rw_port, recv.http_port, recv.grpc_port, &flags);
    recv.wait_ready(&client).await;
    let after = trace_ids(&exemplars(recv.grpc_port, "requests_total").await);
    assert_eq!(after, acknowledged);

    // An out-of-order exemplar is dropped and counted; the write still succeeds.
    let write = |t: i64, trace: &str, exemplar_t: i64| {
        let mut ts = v1::series(
            &[("__name__", "requests_total"), ("job", "manual")],
            &[(t, 1.0)],
        );
        ts.exemplars.push(v1::Exemplar {
            labels: vec![v1::Label {
                name: "trace_id".into(),
                value: trace.into(),
            }],
            value: 1.0,
            timestamp: exemplar_t,
        });
        snappy(&v1::WriteRequest {
            timeseries: vec![ts],
            metadata: vec![],
        })
    };
    let now = now_ms();
    let (status, body) = post_v1(&client, &recv.write_url(), write(now, "first", now), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_v1(&client, &recv.write_url(), write(now + 1, "late", 1), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        recv.metric(
            &client,
            "thanos_receive_rejected_samples_total",
            &[("reason", "exemplar_out_of_order")]
        )
        .await
            >= 1.0
    );
    assert!(
        !trace_ids(&exemplars(recv.grpc_port, "requests_total").await)
            .contains(&"late".to_string())
    );
}

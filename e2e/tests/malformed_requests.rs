//! A battery of bad requests: each gets its status and a one-line reason, and the server keeps serving.

use e2e::{Receiver, post_v1};
use prost::Message;
use receiver::wire::messages::{snappy, v1, v2};

fn v1_body(series: Vec<v1::TimeSeries>) -> Vec<u8> {
    snappy(&v1::WriteRequest {
        timeseries: series,
        metadata: vec![],
    })
}

fn one(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    v1_body(vec![v1::series(labels, samples)])
}

async fn post_raw(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

fn assert_reason(status: u16, body: &str, want_status: u16, want_text: &str) {
    assert_eq!(status, want_status, "body: {body}");
    assert!(
        body.contains(want_text),
        "status {status}: body {body:?} lacks {want_text:?}"
    );
    assert_eq!(
        body.trim_end().lines().count(),
        1,
        "reason must be one line: {body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = tmp.path().join("limits.yml");
    std::fs::write(
        &limits,
        "write:\n  default:\n    request: {series_limit: 50}\n  tenants:\n    small:\n      request: {size_bytes_limit: 2000}\n    few:\n      head_series_limit: 3\n",
    )
    .unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(
        &tmp.path().join("data"),
        &[format!("--receive.limits-config-file={}", limits.display())],
    );
    recv.wait_ready(&client).await;
    let url = recv.write_url();
    let up = [("__name__", "up"), ("job", "a")];

    // Transport-level problems.
    let (s, b, _) = post_raw(
        &client,
        &url,
        &[("Content-Encoding", "snappy")],
        b"\xff\xff\xff\xffgarbage".to_vec(),
    )
    .await;
    assert_reason(s, &b, 400, "snappy");
    let not_proto = snap::raw::Encoder::new()
        .compress_vec(&[0x0b, 0x01, 0x02])
        .unwrap();
    let (s, b, _) = post_raw(&client, &url, &[], not_proto).await;
    assert_reason(s, &b, 400, "protobuf");
    let (s, b, _) = post_raw(
        &client,
        &url,
        &[("Content-Type", "application/json")],
        one(&up, &[(1, 1.0)]),
    )
    .await;
    assert_reason(s, &b, 415, "Content-Type");
    let (s, b, _) = post_raw(
        &client,
        &url,
        &[("Content-Encoding", "gzip")],
        one(&up, &[(1, 1.0)]),
    )
    .await;
    assert_reason(s, &b, 415, "Content-Encoding");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let (s, b) = post_v1(&client, &url, one(&up, &[(1, 1.0)]), Some("../../etc")).await;
    assert_reason(s, &b, 400, "tenant");

    // Label and sample rules, each naming the offending series.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            one(&[("job", "a"), ("__name__", "up")], &[(1, 1.0)]),
            "not sorted",
        ),
        (
            one(&[("__name__", "up"), ("__name__", "x")], &[(1, 1.0)]),
            "duplicate label",
        ),
        (
            one(&[("__name__", "up"), ("job", "")], &[(1, 1.0)]),
            "empty label value",
        ),
        (
            one(&[("__name__", "up"), ("", "x")], &[(1, 1.0)]),
            "empty label name",
        ),
        (
            one(&[("__name__", "up"), ("0job", "x")], &[(1, 1.0)]),
            "invalid label name",
        ),
        (one(&[], &[(1, 1.0)]), "no labels"),
        (one(&up, &[(5, 1.0), (4, 1.0)]), "not in timestamp order"),
        (one(&up, &[(5, 1.0), (5, 2.0)]), "share a timestamp"),
    ];
    for (body, text) in cases {
        let (s, b) = post_v1(&client, &url, body, None).await;
        assert_reason(s, &b, 400, text);
    }

    // A valid sample, then conflicts with it.
    let (s, b) = post_v1(&client, &url, one(&up, &[(1000, 1.0)]), None).await;
    assert_eq!((s, b.as_str()), (200, ""));
    let (s, b) = post_v1(&client, &url, one(&up, &[(1000, 1.0)]), None).await;
    assert_eq!(s, 200, "an identical duplicate is accepted: {b}");
    let (s, b) = post_v1(&client, &url, one(&up, &[(999, 1.0)]), None).await;
    assert_reason(s, &b, 409, "out of order");
    let (s, b) = post_v1(&client, &url, one(&up, &[(1000, 7.0)]), None).await;
    assert_reason(s, &b, 409, "duplicate sample");

    // A native histogram that breaks Prometheus' rules is refused with the reason.
    let mut ts = v1::series(&[("__name__", "h")], &[]);
    ts.histograms.push(v1::Histogram {
        count: Some(v1::histogram::Count::CountInt(3)),
        sum: 1.0,
        schema: 0,
        timestamp: 5,
        ..Default::default()
    });
    let (s, b) = post_v1(&client, &url, v1_body(vec![ts]), None).await;
    assert_reason(
        s,
        &b,
        400,
        "invalid native histogram: 0 observations found in buckets, but the Count field is 3",
    );
    let mut ts = v1::series(&[("__name__", "h")], &[]);
    ts.histograms.push(v1::Histogram {
        schema: 9,
        timestamp: 5,
        ..Default::default()
    });
    let (s, b) = post_v1(&client, &url, v1_body(vec![ts]), None).await;
    assert_reason(s, &b, 400, "invalid schema 9");

    // Limits: 413 for request size and series count, 429 for head series.
    let many: Vec<_> = (0..60)
        .map(|i| v1::series(&[("__name__", "m"), ("i", &i.to_string())], &[(1, 1.0)]))
        .collect();
    let (s, b) = post_v1(&client, &url, v1_body(many), None).await;
    assert_reason(s, &b, 413, "too many timeseries");
    let big: Vec<_> = (0..40)
        .map(|i| {
            v1::series(
                &[("__name__", "big"), ("i", &format!("{i:0>100}"))],
                &[(1, 1.0)],
            )
        })
        .collect();
    let (s, b) = post_v1(&client, &url, v1_body(big), Some("small")).await;
    assert_reason(s, &b, 413, "too large");
    let three: Vec<_> = (0..3)
        .map(|i| v1::series(&[("__name__", "m"), ("i", &i.to_string())], &[(1, 1.0)]))
        .collect();
    let (s, b) = post_v1(&client, &url, v1_body(three), Some("few")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post_v1(
        &client,
        &url,
        one(&[("__name__", "m"), ("i", "new")], &[(1, 1.0)]),
        Some("few"),
    )
    .await;
    assert_reason(s, &b, 429, "active series limit");
    let (s, b) = post_v1(
        &client,
        &url,
        one(&[("__name__", "m"), ("i", "0")], &[(2, 1.0)]),
        Some("few"),
    )
    .await;
    assert_eq!(s, 200, "existing series still accepted at the limit: {b}");
    // The configured limits are exposed under Thanos' names, so alerts can compare against them.
    let text = recv.metrics_text(&client).await.unwrap();
    let limit = |tenant: &str| {
        e2e::metric_sum(
            &text,
            "thanos_receive_tenant_head_series_limit",
            &[("tenant", tenant)],
        )
    };
    assert_eq!((limit("few"), limit("small")), (3.0, 0.0));
    assert_eq!(
        e2e::metric_sum(&text, "thanos_receive_default_head_series_limit", &[]),
        0.0
    );
    assert!(text.contains("thanos_receive_default_head_series_limit 0"));

    // Remote write 2.0: 204 and the Written headers; the same rules apply.
    let req = v2::request(&[(&[("__name__", "v2"), ("job", "a")], &[(1, 1.0), (2, 2.0)])]);
    let v2_headers = [
        (
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        ),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
    ];
    let (s, b, h) = post_raw(&client, &url, &v2_headers, snappy(&req)).await;
    assert_eq!(s, 204, "{b}");
    assert_eq!(h["x-prometheus-remote-write-samples-written"], "2");
    assert_eq!(h["x-prometheus-remote-write-histograms-written"], "0");
    let mut bad = v2::request(&[(&[("__name__", "v2"), ("job", "b")], &[(1, 1.0)])]);
    bad.timeseries[0].labels_refs.push(99);
    bad.timeseries[0].labels_refs.push(1);
    let (s, b, h) = post_raw(
        &client,
        &url,
        &v2_headers,
        snap::raw::Encoder::new()
            .compress_vec(&bad.encode_to_vec())
            .unwrap(),
    )
    .await;
    assert_reason(s, &b, 400, "symbol reference");
    assert_eq!(h["x-prometheus-remote-write-samples-written"], "0");

    // Still serving, and the rejections are counted by reason.
    let (s, _) = post_v1(&client, &url, one(&up, &[(2000, 2.0)]), None).await;
    assert_eq!(s, 200);
    let r = client
        .get(recv.http_url("/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ooo = recv
        .metric(
            &client,
            "thanos_receive_rejected_samples_total",
            &[("reason", "out_of_order")],
        )
        .await;
    assert_eq!(ooo, 1.0);
    let c400 = recv
        .metric(&client, "http_requests_total", &[("code", "400")])
        .await;
    assert!(c400 >= 12.0, "400s counted: {c400}");
}

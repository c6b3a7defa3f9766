//! Prometheus' metadata API on the remote-write port: `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`, per tenant, over what was written.

use e2e::{Receiver, post_v1};
use receiver::wire::messages::{snappy, v1};

async fn get(
    client: &reqwest::Client,
    url: String,
    tenant: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = client.get(url);
    if let Some(t) = tenant {
        req = req.header("THANOS-TENANT", t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_labels_and_values_per_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;
    let t = 1_700_000_000_000;
    for (tenant, name, job) in [
        (None, "http_requests", "api"),
        (None, "http_requests", "web"),
        (None, "up", "api"),
        (Some("other"), "secret_metric", "x"),
    ] {
        let body = snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(&[("__name__", name), ("job", job)], &[(t, 1.0)])],
            metadata: vec![],
        });
        assert_eq!(
            post_v1(&client, &recv.write_url(), body, tenant).await.0,
            200
        );
    }
    let base = format!("http://127.0.0.1:{}/api/v1", recv.rw_port);

    let (status, names) = get(&client, format!("{base}/label/__name__/values"), None).await;
    assert_eq!(status, 200, "{names}");
    assert_eq!(names["data"], serde_json::json!(["http_requests", "up"]));

    let (_, labels) = get(&client, format!("{base}/labels?match[]=up"), None).await;
    assert_eq!(
        labels["data"],
        serde_json::json!(["__name__", "job", "replica", "tenant_id"])
    );

    let selector = r#"http_requests{job=~"a.*|w.b"}"#;
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/series"),
        &[
            ("match[]", selector),
            ("start", "1699999999"),
            ("end", "2023-11-14T22:13:21Z"),
        ],
    )
    .unwrap();
    let (status, series) = get(&client, url.to_string(), None).await;
    assert_eq!(status, 200, "{series}");
    let jobs: Vec<&str> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["api", "web"]);

    // A range that ends before the samples, another tenant, a malformed selector.
    let (_, none) = get(
        &client,
        format!("{base}/label/job/values?end=1699999999"),
        None,
    )
    .await;
    assert_eq!(none["data"], serde_json::json!([]));
    let (_, theirs) = get(
        &client,
        format!("{base}/label/__name__/values"),
        Some("other"),
    )
    .await;
    assert_eq!(theirs["data"], serde_json::json!(["secret_metric"]));
    let (status, bad) = get(
        &client,
        format!("{base}/series?match[]=up%7Bjob%3D%7D"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["errorType"], "bad_data");
    assert!(recv.terminate().success(), "{}", recv.log_text());
}

//! Debian's Prometheus 2.42 (agent mode) remote-writes to a real receiver: nothing fails, everything lands.

use std::time::Duration;

use e2e::prometheus::Prometheus;
use e2e::{Receiver, eventually, metric_sum};
use receiver::tsdb::{Budget, Matcher, TenantDb, TsdbOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_agent_writes_without_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut recv = Receiver::start(&tmp.path().join("data"), &[]);
    recv.wait_ready(&client).await;

    let target = format!("127.0.0.1:{}", recv.http_port);
    let prom = Prometheus::agent(&tmp.path().join("prom"), &recv.write_url(), &[target]);

    // Let it scrape and ship for a bounded time, then require a steady flow of sent samples.
    let sent = eventually(
        Duration::from_secs(60),
        "Prometheus to send 2000 samples",
        || async {
            let text = prom.metrics(&client).await?;
            let sent = metric_sum(&text, "prometheus_remote_storage_samples_total", &[]);
            (sent >= 2000.0).then_some(sent)
        },
    )
    .await;
    // Watch the flow for as many samples again before judging it.
    eventually(
        Duration::from_secs(60),
        "Prometheus to send 4000 samples",
        || async {
            let text = prom.metrics(&client).await?;
            let sent = metric_sum(&text, "prometheus_remote_storage_samples_total", &[]);
            (sent >= 4000.0).then_some(())
        },
    )
    .await;

    let text = prom.metrics(&client).await.expect("Prometheus metrics");
    let failed = metric_sum(&text, "prometheus_remote_storage_samples_failed_total", &[]);
    let dropped = metric_sum(
        &text,
        "prometheus_remote_storage_samples_dropped_total",
        &[],
    );
    let retried = metric_sum(
        &text,
        "prometheus_remote_storage_samples_retried_total",
        &[],
    );
    assert_eq!(
        failed,
        0.0,
        "Prometheus saw failed samples; its log:\n{}",
        prom.log_text()
    );
    assert_eq!(dropped, 0.0, "Prometheus dropped samples");
    assert_eq!(retried, 0.0, "Prometheus had to retry samples");
    assert!(sent >= 2000.0);

    // The receiver counts what it stored, under the Thanos metric names.
    let appended = recv
        .metric(
            &client,
            "prometheus_tsdb_head_samples_appended_total",
            &[("tenant", "default-tenant")],
        )
        .await;
    assert!(
        appended >= sent,
        "receiver appended {appended} < {sent} sent"
    );
    let ok_requests = recv
        .metric(
            &client,
            "http_requests_total",
            &[("handler", "receive"), ("code", "200")],
        )
        .await;
    assert!(ok_requests > 0.0);

    // The head status lists the scraped metric families.
    let status: serde_json::Value = client
        .get(recv.http_url("/api/v1/status/tsdb"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Thanos' shape: an array with one entry per tenant.
    let num_series = status["data"][0]["headStats"]["numSeries"]
        .as_u64()
        .unwrap();
    assert!(num_series > 200, "only {num_series} series in the head");

    drop(prom);
    assert!(
        recv.terminate().success(),
        "SIGTERM must exit 0; log:\n{}",
        recv.log_text()
    );

    // Read the data back through the crate's own head over the replayed WAL.
    let (db, _) = TenantDb::open(
        &recv.data.join("default-tenant"),
        "default-tenant",
        TsdbOptions::default(),
    )
    .unwrap();
    // SIGTERM cut the head into blocks; the query reads blocks and head alike.
    let all = db
        .query(&[], i64::MIN, i64::MAX, Budget::default())
        .unwrap();
    assert_eq!(all.len() as u64, num_series);
    assert!(
        !db.blocks().is_empty(),
        "shutdown flushed the head into a block"
    );
    let up = db
        .query(
            &[Matcher::Equal("__name__".into(), "up".into())],
            i64::MIN,
            i64::MAX,
            Budget::default(),
        )
        .unwrap();
    assert_eq!(up.len(), 2, "one `up` series per scrape target");
    for s in up {
        let samples = s.samples;
        assert!(
            samples.len() >= 5,
            "{}: {} samples",
            s.labels,
            samples.len()
        );
        assert!(
            samples.iter().all(|&(_, v)| v == 1.0),
            "{}: every scrape succeeded",
            s.labels
        );
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
    }
}

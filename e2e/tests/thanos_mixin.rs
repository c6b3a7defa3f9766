//! Thanos' own receive dashboard and alerts work on our metrics: a real Prometheus scrapes three
//! receivers (RF=3, as job `thanos-receive`) under writes, reads through the Store API and block
//! uploads, and every dashboard query returns data and every series an alert reads exists, except
//! the few named in `EXPECTED_EMPTY` with the reason.

use std::path::Path;
use std::time::Duration;

use e2e::prometheus::Prometheus;
use e2e::{Receiver, eventually, free_port, load_request, now_ms, post_v1};

/// Dashboard queries that stay empty here, by a fragment of the query, and why.
const EXPECTED_EMPTY: &[(&str, &str)] = &[
    (
        "go_",
        "Go runtime metrics: the receiver is not a Go program (process_* metrics are exported)",
    ),
    (
        "code=~\"5..\"",
        "5xx answers: a healthy cluster answers none",
    ),
    (
        "grpc_code=~\"Unknown|ResourceExhausted|Internal|Unavailable|DataLoss\"",
        "gRPC failures: a healthy cluster has none",
    ),
];

/// Alert inputs that do not exist here, and why.
const ABSENT_ALERT_INPUTS: &[(&str, &str)] = &[(
    "thanos_receive_metamonitoring_failed_queries_total",
    "head series are counted locally, never by querying a meta-monitoring Prometheus",
)];

/// The mixin's queries: `(kind, query)`, kind `panel` or `alert <name>`.
fn mixin() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/thanos-mixin-receive.txt"),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            if let Some(q) = l.strip_prefix("panel ") {
                ("panel".to_owned(), q.to_owned())
            } else {
                let rest = l.strip_prefix("alert ").expect("panel or alert");
                let (name, q) = rest.split_once(' ').unwrap();
                (format!("alert {name}"), q.to_owned())
            }
        })
        .collect()
}

/// The instant-vector selectors `name{...}` in `query` (what an alert reads).
fn selectors(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(open) = rest.find('{') {
        let name_start = rest[..open]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let close = open + rest[open..].find('}').unwrap();
        if name_start < open {
            out.push(rest[name_start..=close].to_owned());
        }
        rest = &rest[close + 1..];
    }
    out
}

fn start_receiver(dir: &Path, ports: [u16; 3], ring: &Path, me: &str, i: usize) -> Receiver {
    let bucket = dir.join("bucket");
    let objstore = dir.join("objstore.yml");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        &objstore,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    let [rw, http, grpc] = ports;
    Receiver::start_on(
        &dir.join("data"),
        rw,
        http,
        grpc,
        &[
            format!("--receive.hashrings-file={}", ring.display()),
            "--receive.replication-factor=3".into(),
            format!("--receive.local-endpoint={me}"),
            format!("--label=replica=\"r{i}\""),
            format!("--objstore.config-file={}", objstore.display()),
            format!(
                "--receive.limits-config-file={}",
                dir.join("limits.yml").display()
            ),
            "--tsdb.head-compaction-interval=1s".into(),
            "--shipper.sync-interval=1s".into(),
        ],
    )
}

/// Calls a `thanos.Store`/`thanos.info` method with an empty request: the answer does not matter,
/// only that the call is counted.
async fn grpc_call(port: u16, path: &'static str, streaming: bool) {
    let mut grpc = tonic::client::Grpc::new(e2e::grpc_channel(port).await);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    let req = tonic::Request::new(bytes::Bytes::new());
    if streaming {
        let _ = grpc
            .server_streaming(req, path, receiver::grpc::RawCodec)
            .await;
    } else {
        let _ = grpc.unary(req, path, receiver::grpc::RawCodec).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thanos_receive_dashboard_and_alerts_work_on_our_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let ports: Vec<[u16; 3]> = (0..3)
        .map(|_| [free_port(), free_port(), free_port()])
        .collect();
    let endpoints: Vec<String> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p[2]))
        .collect();
    let ring = tmp.path().join("hashrings.json");
    e2e::write_atomic(&ring, &e2e::ring_json(&endpoints, "ketama"));
    let mut receivers: Vec<Receiver> = (0..3)
        .map(|i| {
            let dir = tmp.path().join(format!("r{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("limits.yml"),
                "write:\n  default:\n    head_series_limit: 1000\n",
            )
            .unwrap();
            start_receiver(&dir, ports[i], &ring, &endpoints[i], i)
        })
        .collect();
    for r in &mut receivers {
        r.wait_ready(&client).await;
    }
    let targets: Vec<String> = receivers
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.http_port))
        .collect();
    let prom = Prometheus::scraper(&tmp.path().join("prom"), "thanos-receive", &targets);
    prom.wait_ready(&client).await;

    // A sample four hours back makes team-a's head span more than 1.5 blocks once its writes
    // below arrive: a block is cut and uploaded within seconds.
    let url = receivers[0].write_url();
    let (s, b) = post_v1(
        &client,
        &url,
        load_request("old", 10, now_ms() - 4 * 3_600_000),
        Some("team-a"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // Steady writes of two tenants, a refused request, a tenant over its head series limit, a
    // changed limits file, and reads through the Store API.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut i = 0;
    while tokio::time::Instant::now() < deadline {
        for tenant in ["team-a", "team-b"] {
            let (s, b) = post_v1(
                &client,
                &url,
                load_request("load", 100, now_ms() + i),
                Some(tenant),
            )
            .await;
            assert_eq!(s, 200, "{b}");
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (s, _) = post_v1(&client, &url, b"not snappy".to_vec(), Some("team-a")).await;
    assert_eq!(s, 400);
    let (s, _) = post_v1(
        &client,
        &url,
        load_request("many", 2000, now_ms()),
        Some("team-c"),
    )
    .await;
    assert_eq!(s, 429);
    std::fs::write(
        tmp.path().join("r0/limits.yml"),
        "write:\n  default:\n    head_series_limit: 5000\n",
    )
    .unwrap();
    for r in &receivers {
        grpc_call(r.grpc_port, receiver::grpc::INFO_PATH, false).await;
        grpc_call(r.grpc_port, receiver::grpc::LABEL_NAMES_PATH, false).await;
        grpc_call(r.grpc_port, receiver::grpc::SERIES_PATH, true).await;
    }
    eventually(Duration::from_secs(30), "a block uploaded", || async {
        let text = receivers[0].metrics_text(&client).await?;
        text.contains("thanos_objstore_bucket_last_successful_upload_time{")
            .then_some(())
    })
    .await;
    // Enough scrapes after the last event for every rate window.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let at = now_ms();
    let mut empty = Vec::new();
    let mut checked = 0;
    for (kind, query) in mixin() {
        if kind == "panel" {
            let q = query
                .replace("$job", "thanos-receive")
                .replace("$tenant", ".+")
                .replace("$__rate_interval", "30s")
                .replace("$interval", "30s");
            let expected_empty = EXPECTED_EMPTY.iter().any(|(f, _)| query.contains(f));
            let result = prom.query(&client, &q, at).await;
            checked += 1;
            if result.is_empty() && !expected_empty {
                empty.push(q);
            }
        } else {
            for sel in selectors(&query) {
                if ABSENT_ALERT_INPUTS.iter().any(|(m, _)| sel.starts_with(m))
                    || EXPECTED_EMPTY.iter().any(|(f, _)| sel.contains(f))
                {
                    continue;
                }
                checked += 1;
                if prom.query(&client, &sel, at).await.is_empty() {
                    empty.push(format!("{kind}: {sel}"));
                }
            }
        }
    }
    assert!(checked >= 55, "{checked} queries checked");
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    // The limits file was reloaded without a restart, and the limit refusal was counted as Thanos counts it.
    let text = receivers[0].metrics_text(&client).await.unwrap();
    assert_eq!(
        e2e::metric_sum(&text, "thanos_receive_limits_config_reload_total", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        e2e::metric_sum(&text, "thanos_receive_default_head_series_limit", &[]),
        5000.0
    );
    assert_eq!(
        e2e::metric_sum(
            &text,
            "thanos_receive_head_series_limited_requests_total",
            &[("tenant", "team-c")]
        ),
        1.0
    );
}

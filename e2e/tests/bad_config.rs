//! Broken configuration: unusable startup files stop the process with a clear message; a broken or
//! dangerous hashring never stops it — the ring in force stays and writes keep their status.

use std::process::Command;
use std::time::Duration;

use e2e::{Receiver, bin, eventually, free_port, load_request, post_v1, ring_json, write_atomic};

fn start_fails(args: &[String]) -> String {
    let out = Command::new(bin("thanos-receiver"))
        .args(args)
        .output()
        .expect("running thanos-receiver");
    assert!(!out.status.success(), "{args:?} must not start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unusable_startup_configuration_is_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--tsdb.path={}", tmp.path().join("d").display());
    let ports = [
        format!("--remote-write.address=127.0.0.1:{}", free_port()),
        format!("--http-address=127.0.0.1:{}", free_port()),
        format!("--grpc-address=127.0.0.1:{}", free_port()),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ports.to_vec();
        v.push(data.clone());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let limits = tmp.path().join("limits.yml");
    std::fs::write(&limits, "write: [unclosed").unwrap();
    let objstore = tmp.path().join("objstore.yml");
    std::fs::write(&objstore, "type: S3\nconfig: {endpoint: x}\n").unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (with(&["--no-such-flag"]), "unexpected argument"),
        (with(&["--label=replica=r0"]), "double-quoted"),
        (with(&["--tsdb.retention=15 days"]), "invalid duration"),
        (
            with(&[&format!(
                "--receive.limits-config-file={}",
                limits.display()
            )]),
            "limits file",
        ),
        (
            with(&[&format!("--objstore.config-file={}", objstore.display())]),
            "bucket is required",
        ),
        (
            with(&["--receive.replication-factor=3"]),
            "needs a hashring",
        ),
        (
            with(&["--receive.hashrings-configmap=no-slash"]),
            "NAMESPACE/NAME",
        ),
        (
            with(&["--receive.default-tenant-id=../x"]),
            "default-tenant-id",
        ),
    ];
    for (args, want) in cases {
        let stderr = start_fails(&args);
        assert!(
            stderr.contains(want),
            "{args:?}: stderr lacks {want:?}:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ring_never_stops_the_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let ring = tmp.path().join("hashrings.json");
    std::fs::write(&ring, "{ this is not json").unwrap();
    let grpc = free_port();
    let me = format!("127.0.0.1:{grpc}");
    let mut recv = Receiver::start_on(
        &tmp.path().join("data"),
        free_port(),
        free_port(),
        grpc,
        &[
            format!("--receive.hashrings-file={}", ring.display()),
            format!("--receive.local-endpoint={me}"),
        ],
    );
    // Ready (WAL replayed) although the ring is unusable; writes are refused as retriable.
    recv.wait_ready(&client).await;
    let (status, body) = post_v1(
        &client,
        &recv.write_url(),
        load_request("a", 10, 1000),
        None,
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no hashring"), "{body}");

    // A valid ring is picked up without a restart.
    write_atomic(&ring, &ring_json(std::slice::from_ref(&me), "ketama"));
    eventually(
        Duration::from_secs(3),
        "writes to succeed with the new ring",
        || async {
            let (status, _) = post_v1(
                &client,
                &recv.write_url(),
                load_request("a", 10, 2000),
                None,
            )
            .await;
            (status == 200).then_some(())
        },
    )
    .await;

    // The field incident: a ring that cannot hold the replication factor, then garbage. Both are
    // refused, counted, and the ring in force keeps serving.
    let errors_metric = "thanos_receive_hashrings_file_errors_total";
    let before = recv.metric(&client, errors_metric, &[]).await;
    std::fs::write(&ring, "[]").unwrap();
    let refused = recv.metric_above(&client, errors_metric, &[], before).await;
    std::fs::write(&ring, "").unwrap();
    recv.metric_above(&client, errors_metric, &[], refused)
        .await;
    let (status, body) = post_v1(
        &client,
        &recv.write_url(),
        load_request("a", 10, 3000),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let errors = recv
        .metric(&client, "thanos_receive_hashrings_file_errors_total", &[])
        .await;
    assert!(errors >= 3.0, "refusals counted: {errors}");
    let ok = recv
        .metric(&client, "thanos_receive_config_last_reload_successful", &[])
        .await;
    assert_eq!(ok, 0.0);
    assert!(
        recv.child.try_wait().unwrap().is_none(),
        "the receiver is still running"
    );
}

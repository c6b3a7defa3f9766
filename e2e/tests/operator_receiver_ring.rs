//! The operator and a real receiver against a real kube-apiserver: a ring change the operator
//! writes reaches a running receiver, watching its ConfigMap with the Role the operator created,
//! within a second.

#![allow(
    unsafe_code,
    reason = "set_var before any thread reads the environment"
)]

use std::time::Duration;

use e2e::kube::{KubeApiServer, Operator, RECEIVER_USER, create_pod, set_pod_ready};
use e2e::{Receiver, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

const NS: &str = "mon";
const WAIT: Duration = Duration::from_secs(30);

/// The ring the operator wrote: its hash and when it changed.
async fn written_ring(client: &Client) -> Option<(String, Timestamp)> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS)
        .get_opt("recv-hashring")
        .await
        .ok()??;
    let json = cm.data.as_ref()?.get("hashrings.json")?;
    let changed = cm
        .annotations()
        .get("receiver.thanos-rs.io/ring-changed-at")?
        .parse()
        .ok()?;
    Some((hashring::config_hash(json.as_bytes()).to_hex(), changed))
}

/// The receiver's `/api/v1/status/hashring`.
async fn receiver_ring(http: &reqwest::Client, receiver: &Receiver) -> Option<serde_json::Value> {
    let r = http
        .get(receiver.http_url("/api/v1/status/hashring"))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// Waits for the operator to write a ring of `endpoints`, then for the receiver to apply it, and
/// returns how long after the write the receiver served it.
async fn propagation(
    client: &Client,
    http: &reqwest::Client,
    receiver: &Receiver,
    endpoints: usize,
) -> Duration {
    let (hash, changed) = eventually(WAIT, &format!("a ring of {endpoints}"), || async {
        let (hash, changed) = written_ring(client).await?;
        let cm = Api::<ConfigMap>::namespaced(client.clone(), NS)
            .get("recv-hashring")
            .await
            .ok()?;
        let rings = hashring::parse(cm.data?["hashrings.json"].as_bytes()).ok()?;
        (rings[0].endpoints.len() == endpoints).then_some((hash, changed))
    })
    .await;
    let status = eventually(WAIT, "the receiver serving the new ring", || async {
        let status = receiver_ring(http, receiver).await?;
        (status["hash"] == hash.as_str()).then_some(status)
    })
    .await;
    assert_eq!(status["source"], "configmap", "{status}");
    let served = Timestamp::now().duration_since(changed);
    Duration::try_from(served).unwrap_or_default()
}

#[tokio::test]
async fn operator_ring_change_reaches_a_running_receiver_without_a_restart() {
    let server = KubeApiServer::start().await;
    // The receiver finds the API server through $KUBECONFIG, as outside a cluster.
    // SAFETY: set before the receiver is spawned, while this test's only other threads (the
    // current-thread runtime has none; the client above talks to an IP literal) read no environment.
    unsafe { std::env::set_var("KUBECONFIG", server.kubeconfig_for(RECEIVER_USER)) };
    // The receiver below is pod recv-0, as the downward API would tell it.
    unsafe { std::env::set_var("POD_NAME", "recv-0") };
    server.install_operator().await;
    server.kubectl(&["create", "namespace", NS]);
    let mut op = Operator::start(&server, "op-a");
    let client = server.client().await;
    let manifest = server.dir().join("recv.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata:\n  name: recv\n  namespace: {NS}\nspec:\n  replicas: 3\n  replicationFactor: 3\n  image: thanos-receiver:e2e\n"),
    )
    .unwrap();
    server.kubectl(&["apply", "-f", &manifest.display().to_string()]);

    // The receiver runs with exactly the Role the operator made for the receivers' ServiceAccount.
    eventually(WAIT, "the receivers' Role", || async {
        Api::<Role>::namespaced(client.clone(), NS)
            .get_opt("recv-receiver")
            .await
            .ok()?
    })
    .await;
    server.kubectl(&[
        "create",
        "rolebinding",
        "-n",
        NS,
        "e2e-receiver",
        "--role=recv-receiver",
        &format!("--user={}", RECEIVER_USER.name),
    ]);
    let data = server.dir().join("receiver-0");
    let mut receiver = Receiver::start(
        &data,
        &[
            format!("--receive.hashrings-configmap={NS}/recv-hashring"),
            "--receive.replication-factor=3".into(),
            format!("--receive.local-endpoint=recv-0.recv.{NS}.svc.cluster.local:10901"),
        ],
    );
    let http = reqwest::Client::new();
    // Ready before any ring exists: the operator only puts Ready receivers in the ring.
    receiver.wait_ready(&http).await;

    let sts = eventually(WAIT, "StatefulSet recv", || async {
        Api::<StatefulSet>::namespaced(client.clone(), NS)
            .get_opt("recv")
            .await
            .ok()?
    })
    .await;
    for i in 0..3 {
        create_pod(&client, &sts, i).await;
        set_pod_ready(&client, NS, &format!("recv-{i}"), true).await;
    }
    let took = propagation(&client, &http, &receiver, 3).await;
    assert!(
        took < Duration::from_secs(10),
        "the first ring reached the receiver {took:?} after it was written"
    );

    server.kubectl(&["scale", "-n", NS, "thanosreceiver/recv", "--replicas=4"]);
    let sts = eventually(WAIT, "StatefulSet with 4 replicas", || async {
        let sts = Api::<StatefulSet>::namespaced(client.clone(), NS)
            .get("recv")
            .await
            .ok()?;
        (sts.spec.as_ref()?.replicas? == 4).then_some(sts)
    })
    .await;
    create_pod(&client, &sts, 3).await;
    set_pod_ready(&client, NS, "recv-3", true).await;
    let took = propagation(&client, &http, &receiver, 4).await;
    assert!(
        took < Duration::from_secs(10),
        "the grown ring reached the receiver {took:?} after it was written"
    );

    // The receiver reports the ring it has in force on its pod.
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let annotation = |pod: Pod| {
        pod.annotations()
            .get(hashring::contract::RING_HASH_ANNOTATION)
            .cloned()
    };
    let (four, _) = written_ring(&client).await.unwrap();
    eventually(WAIT, "recv-0 reporting the ring of 4", || async {
        (annotation(pods.get("recv-0").await.ok()?)? == four).then_some(())
    })
    .await;

    // Scale-down is confirmed, not timed: the bound is 60 s (the default), but once every
    // remaining receiver reports the ring without recv-3 (recv-0 by itself; the test speaks
    // for recv-1 and recv-2, which have no process), the StatefulSet shrinks.
    server.kubectl(&["scale", "-n", NS, "thanosreceiver/recv", "--replicas=3"]);
    let three = eventually(WAIT, "the ring of 3", || async {
        let (hash, _) = written_ring(&client).await?;
        (hash != four).then_some(hash)
    })
    .await;
    let started = std::time::Instant::now();
    for p in ["recv-1", "recv-2"] {
        let patch = serde_json::json!({"metadata": {"annotations": {hashring::contract::RING_HASH_ANNOTATION: three}}});
        pods.patch(p, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    eventually(WAIT, "recv-0 reporting the ring of 3", || async {
        (annotation(pods.get("recv-0").await.ok()?)? == three).then_some(())
    })
    .await;
    eventually(WAIT, "the StatefulSet shrunk to 3", || async {
        let sts = Api::<StatefulSet>::namespaced(client.clone(), NS)
            .get("recv")
            .await
            .ok()?;
        (sts.spec?.replicas? == 3).then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "shrunk {took:?} after the receivers confirmed; the 60 s bound must not be what let it"
    );
    op.assert_running();
    assert!(
        receiver.child.try_wait().unwrap().is_none(),
        "receiver exited; log:\n{}",
        receiver.log_text()
    );
}

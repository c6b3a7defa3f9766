//! Two operator replicas against a real kube-apiserver: one leads through the Lease, the other
//! writes nothing until the leader dies, then takes over.

use std::time::Duration;

use e2e::kube::{KubeApiServer, Operator};
use e2e::{eventually, metric_sum};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

const WAIT: Duration = Duration::from_secs(30);

async fn metric(port: u16, name: &str) -> f64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    metric_sum(&text, name, &[])
}

#[tokio::test]
async fn operator_standby_takes_over_when_the_leader_dies() {
    let server = KubeApiServer::start().await;
    server.install_operator().await;
    let client = server.client().await;
    let mut ops = [
        Operator::start(&server, "op-a"),
        Operator::start(&server, "op-b"),
    ];

    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = eventually(WAIT, "a Lease holder", || async {
        leases
            .get_opt("thanos-receiver-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await;
    let (leader, standby) = if holder == "op-a" { (0, 1) } else { (1, 0) };

    let manifest = server.dir().join("recv.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata:\n  name: recv\n  namespace: default\nspec:\n  replicas: 3\n  image: thanos-receiver:e2e\n",
    )
    .unwrap();
    server.kubectl(&["apply", "-f", &manifest.display().to_string()]);
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let replicas = |want: i32| {
        let sts = sts.clone();
        async move {
            eventually(
                WAIT,
                &format!("StatefulSet with {want} replicas"),
                || async {
                    (sts.get_opt("recv").await.ok()??.spec?.replicas? == want).then_some(())
                },
            )
            .await
        }
    };
    replicas(3).await;
    assert_eq!(
        metric(ops[leader].metrics_port, "thanos_receiver_operator_leader").await,
        1.0
    );
    assert_eq!(
        metric(ops[standby].metrics_port, "thanos_receiver_operator_leader").await,
        0.0
    );
    assert_eq!(
        metric(
            ops[standby].metrics_port,
            "thanos_receiver_operator_reconciles_total"
        )
        .await,
        0.0,
        "the standby replica reconciled"
    );

    // A crash leaves the Lease held; the standby takes it once it expires (4 s) and reconciles.
    ops[leader].kill();
    let new_holder = eventually(WAIT, "the standby holding the Lease", || async {
        let h = leases
            .get_opt("thanos-receiver-operator")
            .await
            .ok()??
            .spec?
            .holder_identity?;
        (h != holder).then_some(h)
    })
    .await;
    assert_eq!(new_holder, ops[standby].identity);
    server.kubectl(&["scale", "thanosreceiver/recv", "--replicas=5"]);
    replicas(5).await;
    let lease = leases
        .get("thanos-receiver-operator")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.lease_transitions, Some(1));
    ops[standby].assert_running();
}

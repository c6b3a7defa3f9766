//! The operator against a real kube-apiserver (1.20, on etcd, loopback), running under the
//! ClusterRole the chart ships: objects, the ring as pods turn Ready, `kubectl scale` on the
//! resource, scale-down ordering, status and conditions.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::eventually;
use e2e::kube::{KubeApiServer, Operator, create_pod, set_pod_ready};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::{Client, ResourceExt};
use operator::crd::ThanosReceiver;
use serde_json::json;

const NS: &str = "monitoring";
const WAIT: Duration = Duration::from_secs(30);

/// The default ring's endpoints and the file's hash, as receivers would see them.
async fn ring(client: &Client, ns: &str, name: &str) -> Option<(Vec<String>, String, ConfigMap)> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(&format!("{name}-hashring"))
        .await
        .expect("get configmap")?;
    let json = cm.data.as_ref()?.get("hashrings.json")?.clone();
    let rings = hashring::parse(json.as_bytes()).expect("the operator writes valid hashrings.json");
    let default = rings
        .iter()
        .find(|r| r.tenants.is_empty())
        .expect("a default ring");
    let endpoints = default
        .endpoints
        .iter()
        .map(|e| e.address.clone())
        .collect();
    Some((
        endpoints,
        hashring::config_hash(json.as_bytes()).to_hex(),
        cm,
    ))
}

fn endpoints(ns: &str, ordinals: &[u32]) -> Vec<String> {
    ordinals
        .iter()
        .map(|i| format!("recv-{i}.recv.{ns}.svc.cluster.local:10901"))
        .collect()
}

async fn sts_replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
    Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get statefulset")?
        .spec?
        .replicas
}

/// `(status, reason)` of a condition of the resource.
async fn condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let tr = Api::<ThanosReceiver>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let c = tr
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) {
    eventually(
        WAIT,
        &format!("{ns}/{name} {type_}={status} ({reason})"),
        || async {
            let (s, r, _) = condition(client, ns, name, type_).await?;
            (s == status && r == reason).then_some(())
        },
    )
    .await;
}

/// `kubectl patch --type=merge` of ThanosReceiver `recv` in `ns`.
fn patch_receiver(server: &KubeApiServer, ns: &str, patch: &str) {
    server.kubectl(&["patch", "-n", ns, "tr", "recv", "--type=merge", "-p", patch]);
}

fn apply_receiver(server: &KubeApiServer, ns: &str, name: &str, replicas: i32, rf: i32) {
    let manifest = format!(
        "apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  replicas: {replicas}\n  replicationFactor: {rf}\n  image: thanos-receiver:e2e\n  ringPropagationSeconds: 2\n  externalLabels:\n    cluster: e2e\n"
    );
    let path = server.dir().join(format!("{ns}-{name}.yaml"));
    std::fs::write(&path, manifest).expect("manifest");
    server.kubectl(&["apply", "-f", &path.display().to_string()]);
}

/// Marks pod `ordinal` Ready and returns how long the ring took to include it.
async fn ready_and_time_ring(client: &Client, ns: &str, ordinal: u32, want: &[u32]) -> Duration {
    set_pod_ready(client, ns, &format!("recv-{ordinal}"), true).await;
    let start = Instant::now();
    let want = endpoints(ns, want);
    eventually(WAIT, &format!("ring {want:?}"), || async {
        let (eps, _, _) = ring(client, ns, "recv").await?;
        (eps == want).then_some(())
    })
    .await;
    start.elapsed()
}

#[tokio::test]
async fn operator_reconciles_ring_scaling_and_status() {
    let server = KubeApiServer::start().await;
    server.install_operator().await;
    server.kubectl(&["create", "namespace", NS]);
    let mut op = Operator::start(&server, "op-a");
    let client = server.client().await;
    apply_receiver(&server, NS, "recv", 3, 3);

    // The objects appear, owned by the resource.
    let sts = eventually(WAIT, "StatefulSet recv", || async {
        Api::<StatefulSet>::namespaced(client.clone(), NS)
            .get_opt("recv")
            .await
            .ok()?
    })
    .await;
    let spec = sts.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let args = spec.template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        args.contains(&"--receive.hashrings-configmap=monitoring/recv-hashring".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(
            &"--receive.local-endpoint=$(POD_NAME).recv.monitoring.svc.cluster.local:10901"
                .to_owned()
        ),
        "{args:?}"
    );
    assert!(
        args.contains(&"--label=cluster=\"e2e\"".to_owned()),
        "{args:?}"
    );
    let owner = &sts.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ThanosReceiver", "recv")
    );
    let headless = Api::<Service>::namespaced(client.clone(), NS)
        .get("recv")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let rw = Api::<Service>::namespaced(client.clone(), NS)
        .get("recv-remote-write")
        .await
        .unwrap();
    assert_eq!(rw.spec.unwrap().ports.unwrap()[0].port, 19291);
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get("recv-receiver")
        .await
        .expect("ServiceAccount");
    let role = Api::<Role>::namespaced(client.clone(), NS)
        .get("recv-receiver")
        .await
        .expect("Role");
    assert_eq!(
        role.rules.unwrap()[0].resource_names.as_deref(),
        Some(&["recv-hashring".to_owned()][..])
    );
    Api::<RoleBinding>::namespaced(client.clone(), NS)
        .get("recv-receiver")
        .await
        .expect("RoleBinding");

    // Kubernetes 1.20 serves neither policy/v1 nor autoscaling/v2: said, not fatal.
    wait_condition(
        &client,
        NS,
        "recv",
        "Degraded",
        "True",
        "ApiGroupUnavailable",
    )
    .await;
    wait_condition(&client, NS, "recv", "RingReady", "False", "NoRing").await;

    // Pods exist but are not Ready: no ring, since a ring smaller than RF would fail every write.
    for i in 0..3 {
        create_pod(&client, &sts, i).await;
    }
    set_pod_ready(&client, NS, "recv-0", true).await;
    set_pod_ready(&client, NS, "recv-1", true).await;
    // Once the operator has seen both Ready pods, it must still have written no ring.
    eventually(
        Duration::from_secs(30),
        "status with 2 ready receivers",
        || async {
            let tr = Api::<ThanosReceiver>::namespaced(client.clone(), NS)
                .get("recv")
                .await
                .ok()?;
            (tr.status?.ready_replicas == 2).then_some(())
        },
    )
    .await;
    assert!(
        ring(&client, NS, "recv").await.is_none(),
        "a ring with fewer endpoints than RF was written"
    );

    let took = ready_and_time_ring(&client, NS, 2, &[0, 1, 2]).await;
    assert!(
        took < Duration::from_secs(10),
        "ring took {took:?} to include a Ready pod"
    );
    wait_condition(
        &client,
        NS,
        "recv",
        "RingReady",
        "True",
        "AllReceiversInRing",
    )
    .await;
    wait_condition(&client, NS, "recv", "Available", "True", "QuorumAvailable").await;
    wait_condition(&client, NS, "recv", "Progressing", "False", "Reconciled").await;
    let (_, hash, _) = ring(&client, NS, "recv").await.unwrap();
    let tr = Api::<ThanosReceiver>::namespaced(client.clone(), NS)
        .get("recv")
        .await
        .unwrap();
    let status = tr.status.unwrap();
    let ring_status = status.ring.unwrap();
    assert_eq!(
        (ring_status.endpoints, ring_status.hash.as_str()),
        (3, hash.as_str())
    );
    assert_eq!((status.replicas, status.ready_replicas), (3, 3));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=recv,app.kubernetes.io/name=thanos-receiver")
    );
    assert_eq!(status.observed_generation, tr.metadata.generation);

    // A member flapping to unready stays in the ring.
    set_pod_ready(&client, NS, "recv-1", false).await;
    wait_condition(
        &client,
        NS,
        "recv",
        "Progressing",
        "True",
        "WaitingForReadyReceivers",
    )
    .await;
    assert_eq!(
        ring(&client, NS, "recv").await.unwrap().1,
        hash,
        "an unready member churned the ring"
    );
    set_pod_ready(&client, NS, "recv-1", true).await;
    wait_condition(&client, NS, "recv", "Progressing", "False", "Reconciled").await;
    assert_eq!(ring(&client, NS, "recv").await.unwrap().1, hash);

    // kubectl scale on the resource itself (the scale subresource an HPA uses).
    server.kubectl(&["scale", "-n", NS, "thanosreceiver/recv", "--replicas=5"]);
    eventually(WAIT, "StatefulSet scaled to 5", || async {
        (sts_replicas(&client, NS, "recv").await? == 5).then_some(())
    })
    .await;
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS)
        .get("recv")
        .await
        .unwrap();
    create_pod(&client, &sts, 3).await;
    create_pod(&client, &sts, 4).await;
    // Pods join as they turn Ready, in ordinal order in the file.
    let took = ready_and_time_ring(&client, NS, 4, &[0, 1, 2, 4]).await;
    assert!(took < Duration::from_secs(10), "ring took {took:?}");
    let took = ready_and_time_ring(&client, NS, 3, &[0, 1, 2, 3, 4]).await;
    assert!(took < Duration::from_secs(10), "ring took {took:?}");
    wait_condition(
        &client,
        NS,
        "recv",
        "RingReady",
        "True",
        "AllReceiversInRing",
    )
    .await;
    let table = server.kubectl(&["get", "-n", NS, "tr", "recv"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0][..8],
        [
            "NAME",
            "REPLICAS",
            "READY",
            "RF",
            "RING",
            "ENDPOINTS",
            "AVAILABLE",
            "DEGRADED"
        ],
        "{table}"
    );
    // Degraded: 1.20 serves neither policy/v1 nor autoscaling/v2 (see above).
    assert_eq!(
        lines[1][..7],
        ["recv", "5", "5", "3", "5", "True", "True"],
        "{table}"
    );

    // Scale down: the leaving receivers leave the ring first; no receiver process runs here to
    // confirm the new ring, so the StatefulSet shrinks when ringPropagationSeconds (2 s), the
    // bound, is hit, and says so (operator_receiver_ring.rs covers the confirmed path).
    server.kubectl(&["scale", "-n", NS, "thanosreceiver/recv", "--replicas=3"]);
    let cm = eventually(WAIT, "ring without 3 and 4", || async {
        let (eps, _, cm) = ring(&client, NS, "recv").await?;
        (eps == endpoints(NS, &[0, 1, 2])).then_some(cm)
    })
    .await;
    assert_eq!(
        sts_replicas(&client, NS, "recv").await,
        Some(5),
        "StatefulSet shrank with leaving receivers still in the ring"
    );
    wait_condition(&client, NS, "recv", "Progressing", "True", "ScalingDown").await;
    let changed: Timestamp = cm.annotations()["receiver.thanos-rs.io/ring-changed-at"]
        .parse()
        .unwrap();
    eventually(WAIT, "StatefulSet scaled to 3", || async {
        (sts_replicas(&client, NS, "recv").await? == 3).then_some(())
    })
    .await;
    let waited = Timestamp::now().duration_since(changed);
    assert!(
        waited.as_secs_f64() >= 2.0,
        "StatefulSet shrank {waited:?} after the ring change"
    );
    let timed_out = server.kubectl(&[
        "get",
        "events.v1.events.k8s.io",
        "-n",
        NS,
        "--field-selector=regarding.name=recv,reason=RingPropagationTimedOut",
        "-o",
        "jsonpath={range .items[*]}{.note}{\"\\n\"}{end}",
    ]);
    assert!(
        timed_out.contains("never reported the new ring"),
        "{timed_out}"
    );
    // The StatefulSet controller would now stop pods 3 and 4.
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    for p in ["recv-3", "recv-4"] {
        pods.delete(p, &DeleteParams::default().grace_period(0))
            .await
            .unwrap();
    }
    wait_condition(&client, NS, "recv", "Progressing", "False", "Reconciled").await;
    let status = Api::<ThanosReceiver>::namespaced(client.clone(), NS)
        .get("recv")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.ring.unwrap().endpoints
        ),
        (3, 3, 3)
    );

    // Metrics count each ring change once, and a settled operator stops reconciling (its own
    // writes must not wake it up again).
    let http = reqwest::Client::new();
    let metrics = |http: reqwest::Client, port: u16| async move {
        let url = format!("http://127.0.0.1:{port}/metrics");
        http.get(url).send().await.unwrap().text().await.unwrap()
    };
    let text = metrics(http.clone(), op.metrics_port).await;
    let labels = [("namespace", NS), ("name", "recv")];
    assert_eq!(
        e2e::metric_sum(
            &text,
            "thanos_receiver_operator_ring_changes_total",
            &labels
        ),
        4.0,
        "{text}"
    );
    assert_eq!(
        e2e::metric_sum(&text, "thanos_receiver_operator_ring_endpoints", &labels),
        3.0
    );
    assert_eq!(
        e2e::metric_sum(&text, "thanos_receiver_operator_leader", &[]),
        1.0
    );
    // The last status write and the pod deletions each wake one more reconcile, which finds
    // nothing to change; wait for those to pass, then nothing more may come.
    let port = op.metrics_port;
    let reconciles = || async {
        e2e::metric_sum(
            &metrics(http.clone(), port).await,
            "thanos_receiver_operator_reconciles_total",
            &[],
        )
    };
    let deadline = std::time::Instant::now() + WAIT;
    let mut before = reconciles().await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = reconciles().await;
        if now == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the operator never settled"
        );
        before = now;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = e2e::metric_sum(
        &metrics(http.clone(), op.metrics_port).await,
        "thanos_receiver_operator_reconciles_total",
        &[],
    );
    assert_eq!(
        before, after,
        "the operator keeps reconciling a settled resource"
    );
    let health = http
        .get(format!("http://127.0.0.1:{}/readyz", op.metrics_port))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Ring changes are Events on the resource.
    let events = server.kubectl(&[
        "get",
        "events.v1.events.k8s.io",
        "-n",
        NS,
        "--field-selector=regarding.name=recv,reason=RingChanged",
        "-o",
        "jsonpath={range .items[*]}{.note}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("first hashring: [recv-0, recv-1, recv-2]"),
        "{events}"
    );
    assert!(events.contains("-> [recv-0, recv-1, recv-2]"), "{events}");
    op.assert_running();

    // The chart grants nothing this scenario did not make the operator call, but for what 1.20
    // cannot show: watches (their audit events come when they end; each follows its list),
    // `create` of applied objects (1.20 authorizes an apply that creates as `patch`), the patch of
    // a repeated Event, HPA and PDB, whose APIs 1.20 lacks, and pod `patch`, held only to be
    // granted to the receivers' Role.
    let used = server.operator_requests();
    let unexplained: Vec<_> = e2e::tools::chart_rules()
        .into_iter()
        .filter(|rule| !used.contains(rule))
        .filter(|(group, resource, verb)| {
            let listed = used.contains(&(group.clone(), resource.clone(), "list".into()));
            !(verb == "watch" && listed
                || verb == "create"
                    && used.contains(&(group.clone(), resource.clone(), "patch".into()))
                || (group, resource, verb)
                    == (&"events.k8s.io".into(), &"events".into(), &"patch".into())
                || (group, resource, verb) == (&String::new(), &"pods".into(), &"patch".into())
                || group == "autoscaling"
                || group == "policy"
                // operator_manages_a_service_monitor_while_enabled covers these.
                || group == "monitoring.coreos.com")
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "the chart grants what the operator never called: {unexplained:?}"
    );
}

#[tokio::test]
async fn operator_keeps_namespaces_apart_and_rejects_invalid_specs() {
    let server = KubeApiServer::start().await;
    server.install_operator().await;
    for ns in ["team-a", "team-b"] {
        server.kubectl(&["create", "namespace", ns]);
    }
    let mut op = Operator::start(&server, "op-a");
    let client = server.client().await;

    apply_receiver(&server, "team-a", "recv", 3, 3);
    let sts_a = eventually(WAIT, "StatefulSet team-a/recv", || async {
        Api::<StatefulSet>::namespaced(client.clone(), "team-a")
            .get_opt("recv")
            .await
            .ok()?
    })
    .await;
    for i in 0..3 {
        create_pod(&client, &sts_a, i).await;
        set_pod_ready(&client, "team-a", &format!("recv-{i}"), true).await;
    }
    let (eps_a, hash_a, _) = eventually(WAIT, "ring of team-a", || async {
        ring(&client, "team-a", "recv").await
    })
    .await;
    assert_eq!(eps_a, endpoints("team-a", &[0, 1, 2]));

    // Same name in another namespace, RF 1: its own objects, its own one-receiver ring.
    apply_receiver(&server, "team-b", "recv", 1, 1);
    let sts_b = eventually(WAIT, "StatefulSet team-b/recv", || async {
        Api::<StatefulSet>::namespaced(client.clone(), "team-b")
            .get_opt("recv")
            .await
            .ok()?
    })
    .await;
    create_pod(&client, &sts_b, 0).await;
    set_pod_ready(&client, "team-b", "recv-0", true).await;
    let (eps_b, _, _) = eventually(WAIT, "ring of team-b", || async {
        ring(&client, "team-b", "recv").await
    })
    .await;
    assert_eq!(eps_b, endpoints("team-b", &[0]));
    // Pod churn in team-b never reaches team-a.
    set_pod_ready(&client, "team-b", "recv-0", false).await;
    wait_condition(
        &client,
        "team-b",
        "recv",
        "Progressing",
        "True",
        "WaitingForReadyReceivers",
    )
    .await;
    let (eps_a2, hash_a2, _) = ring(&client, "team-a", "recv").await.unwrap();
    assert_eq!((eps_a2, hash_a2), (eps_a, hash_a));
    assert_eq!(sts_replicas(&client, "team-a", "recv").await, Some(3));
    wait_condition(
        &client,
        "team-a",
        "recv",
        "Progressing",
        "False",
        "Reconciled",
    )
    .await;

    // Kubernetes 1.20 ignores the CRD's CEL rules; the operator checks them itself and writes nothing.
    apply_receiver(&server, "team-b", "small", 2, 3);
    wait_condition(
        &client,
        "team-b",
        "small",
        "Degraded",
        "True",
        "InvalidSpec",
    )
    .await;
    let (_, _, message) = condition(&client, "team-b", "small", "Degraded")
        .await
        .unwrap();
    assert!(message.contains("must not exceed replicas"), "{message}");
    assert_eq!(
        sts_replicas(&client, "team-b", "small").await,
        None,
        "an invalid spec produced a StatefulSet"
    );

    // paused: scaling the resource changes nothing until it is unpaused.
    patch_receiver(&server, "team-a", r#"{"spec":{"paused":true}}"#);
    wait_condition(&client, "team-a", "recv", "Progressing", "False", "Paused").await;
    let paused_column = || {
        server.kubectl(&[
            "get",
            "-n",
            "team-a",
            "tr",
            "recv",
            "-o",
            "custom-columns=PAUSED:.status.paused",
            "--no-headers",
        ])
    };
    assert_eq!(paused_column().trim(), "true");
    server.kubectl(&[
        "scale",
        "-n",
        "team-a",
        "thanosreceiver/recv",
        "--replicas=5",
    ]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sts_replicas(&client, "team-a", "recv").await,
        Some(3),
        "a paused resource was reconciled"
    );
    patch_receiver(&server, "team-a", r#"{"spec":{"paused":false}}"#);
    eventually(WAIT, "unpaused StatefulSet scaled to 5", || async {
        (sts_replicas(&client, "team-a", "recv").await? == 5).then_some(())
    })
    .await;
    assert_eq!(paused_column().trim(), "false");

    // A storage change (which 1.20 cannot refuse: it ignores the CEL transition rule) must not
    // wedge the StatefulSet: the running claim template stays, later changes still apply.
    patch_receiver(
        &server,
        "team-a",
        r#"{"spec":{"storage":{"size":"200Gi"}}}"#,
    );
    server.kubectl(&[
        "scale",
        "-n",
        "team-a",
        "thanosreceiver/recv",
        "--replicas=6",
    ]);
    eventually(
        WAIT,
        "StatefulSet scaled to 6 after a storage change",
        || async { (sts_replicas(&client, "team-a", "recv").await? == 6).then_some(()) },
    )
    .await;
    let refused = server.kubectl(&[
        "get",
        "events.v1.events.k8s.io",
        "-n",
        "team-a",
        "--field-selector=regarding.name=recv,reason=StorageChangeRefused",
        "-o",
        "name",
    ]);
    assert!(!refused.trim().is_empty(), "no StorageChangeRefused event");
    op.assert_running();
}

#[tokio::test]
async fn operator_manages_a_service_monitor_while_enabled() {
    let server = KubeApiServer::start().await;
    server.install_operator().await;
    server.kubectl(&["create", "namespace", NS]);
    let mut op = Operator::start(&server, "op-a");
    let client = server.client().await;
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &operator::build::service_monitor_resource(),
    );

    // Without prometheus-operator's CRD: said in the status, everything else still applied.
    let manifest = server.dir().join("recv.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata:\n  name: recv\n  namespace: {NS}\nspec:\n  replicas: 3\n  serviceMonitor:\n    enabled: true\n    interval: 15s\n    labels:\n      release: kube-prometheus\n"),
    )
    .unwrap();
    server.kubectl(&["apply", "-f", &manifest.display().to_string()]);
    let degraded_by_monitors = || async {
        let (_, reason, message) = condition(&client, NS, "recv", "Degraded").await?;
        Some(reason == "ApiGroupUnavailable" && message.contains("monitoring.coreos.com"))
    };
    eventually(
        WAIT,
        "Degraded naming the missing ServiceMonitor API",
        || async { degraded_by_monitors().await?.then_some(()) },
    )
    .await;
    assert!(sts_replicas(&client, NS, "recv").await.is_some());

    // With the CRD: the ServiceMonitor appears, as the API server stored it.
    let crd = e2e::kube::workspace_root().join("e2e/testdata/servicemonitor-crd.yaml");
    server.kubectl(&["apply", "-f", &crd.display().to_string()]);
    eventually(WAIT, "the ServiceMonitor CRD served", || async {
        monitors.list(&Default::default()).await.ok()
    })
    .await;
    // A spec change makes the operator look again at once (it would on its resync anyway).
    patch_receiver(
        &server,
        NS,
        r#"{"spec":{"serviceMonitor":{"scrapeTimeout":"10s"}}}"#,
    );
    let sm = eventually(WAIT, "the ServiceMonitor", || async {
        monitors.get_opt("recv").await.ok()?
    })
    .await;
    // (Still Degraded on 1.20 for the PodDisruptionBudget's policy/v1, but not for this.)
    eventually(
        WAIT,
        "Degraded no longer naming the ServiceMonitor API",
        || async { (!degraded_by_monitors().await?).then_some(()) },
    )
    .await;
    assert_eq!(sm.labels()["release"], "kube-prometheus");
    let spec = &sm.data["spec"];
    let endpoint = &spec["endpoints"][0];
    assert_eq!(
        (
            &endpoint["port"],
            &endpoint["path"],
            &endpoint["interval"],
            &endpoint["scrapeTimeout"]
        ),
        (
            &json!("http"),
            &json!("/metrics"),
            &json!("15s"),
            &json!("10s")
        ),
        "{sm:?}"
    );
    assert_eq!(endpoint["relabelings"][0]["replacement"], "thanos-receive");
    // It selects the peer Service, which lists every receiver, and not the remote-write one.
    let services = Api::<Service>::namespaced(client.clone(), NS);
    let selected = |svc: Service| {
        let labels = svc.metadata.labels.unwrap_or_default();
        spec["selector"]["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
    };
    assert!(selected(services.get("recv").await.unwrap()));
    assert!(!selected(services.get("recv-remote-write").await.unwrap()));

    // Turned off: deleted.
    patch_receiver(
        &server,
        NS,
        r#"{"spec":{"serviceMonitor":{"enabled":false}}}"#,
    );
    eventually(WAIT, "the ServiceMonitor deleted", || async {
        monitors.get_opt("recv").await.ok()?.is_none().then_some(())
    })
    .await;
    op.assert_running();

    // The chart grants exactly what this took.
    let used: BTreeSet<_> = server
        .operator_requests()
        .into_iter()
        .filter(|(group, _, _)| group == "monitoring.coreos.com")
        .collect();
    let granted: BTreeSet<_> = e2e::tools::chart_rules()
        .into_iter()
        .filter(|(group, _, _)| group == "monitoring.coreos.com")
        .collect();
    // 1.20 authorizes an apply that creates as `patch`.
    let used_or_create: BTreeSet<_> = used
        .iter()
        .cloned()
        .chain(
            used.iter()
                .filter(|(_, _, v)| v == "patch")
                .map(|(g, r, _)| (g.clone(), r.clone(), "create".to_owned())),
        )
        .collect();
    assert_eq!(granted, used_or_create);
}

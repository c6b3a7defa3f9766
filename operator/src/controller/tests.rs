//! The reconciler against a mocked API server: each named scenario lists the exact requests a
//! reconciliation must make, in order, and what they carry.

#![allow(clippy::too_many_lines, reason = "scenarios read top to bottom")]

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};

use super::{Context, reconcile_at};
use crate::build::fixtures::receiver;
use crate::build::{self, Names};
use crate::crd::{ThanosReceiver, ThanosReceiverStatus};
use crate::metrics::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS_PATH: &str = "/api/v1/namespaces/mon";
const APPS_PATH: &str = "/apis/apps/v1/namespaces/mon";
const STATUS_PATH: &str =
    "/apis/receiver.thanos-rs.io/v1alpha1/namespaces/mon/thanosreceivers/recv/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/mon/events";

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

/// How the fake API server answers one request.
enum Reply {
    /// 200 with this body.
    Json(Value),
    /// 200 with the request body, as a server-side apply answers.
    Echo,
    /// An API error with this code.
    Error(u16),
}

/// One expected request: method, path, and the checks on its body.
struct Expect {
    method: Method,
    path: String,
    reply: Reply,
    check: Box<dyn Fn(&Value) + Send>,
}

fn expect(method: Method, path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method,
        path: path.into(),
        reply,
        check: Box::new(|_| {}),
    }
}

impl Expect {
    /// Adds a check on the body (after those already there).
    fn check(mut self, f: impl Fn(&Value) + Send + 'static) -> Self {
        let before = self.check;
        self.check = Box::new(move |b| {
            before(b);
            f(b)
        });
        self
    }
}

/// A server-side apply of `path` by the operator's field manager.
fn apply(path: impl Into<String>) -> Expect {
    expect(Method::PATCH, path, Reply::Echo)
}

fn status_error(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": "NotFound", "message": format!("error {code}")})
}

/// Answers `expected` in order, asserting each request; panics on any other request.
async fn serve(mut handle: Handle, resource: Value, expected: Vec<Expect>) {
    for (i, e) in expected.into_iter().enumerate() {
        let (request, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("request {i} ({} {}) never came", e.method, e.path));
        let uri = request.uri().clone();
        assert_eq!(
            (request.method(), uri.path()),
            (&e.method, e.path.as_str()),
            "request {i}"
        );
        if e.method == Method::PATCH {
            let query = uri.query().unwrap_or_default();
            assert!(
                query.contains("fieldManager=thanos-receiver-operator")
                    && query.contains("force=true"),
                "request {i}: not a forced apply: {query}"
            );
            assert_eq!(
                request.headers()["content-type"],
                "application/apply-patch+yaml",
                "request {i}"
            );
        }
        let body = request.into_body().collect_bytes().await.unwrap();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (e.check)(&body);
        let (code, reply) = match e.reply {
            Reply::Json(v) => (200, v),
            Reply::Echo => {
                // A status apply carries only the status; the server answers with the whole object.
                if body.get("metadata").is_none() {
                    let mut whole = resource.clone();
                    whole["status"] = body["status"].clone();
                    (200, whole)
                } else {
                    (200, body)
                }
            }
            Reply::Error(code) => (code, status_error(code)),
        };
        let response = Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap();
        send.send_response(response);
    }
}

/// Runs one reconciliation of `tr` against `expected` and returns its outcome.
async fn run(tr: ThanosReceiver, expected: Vec<Expect>) -> Result<Action, crate::Error> {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let reporter = Reporter {
        controller: "thanos-receiver-operator".into(),
        instance: None,
    };
    let ctx = Context {
        client: client.clone(),
        cluster_domain: "cluster.local".into(),
        receiver_image: "thanos-receiver:default".into(),
        metrics: Arc::new(Metrics::default()),
        recorder: Recorder::new(client, reporter.clone()),
        reporter,
    };
    let server = tokio::spawn(serve(handle, serde_json::to_value(&tr).unwrap(), expected));
    let result = tokio::time::timeout(Duration::from_secs(2), reconcile_at(&tr, &ctx, now()))
        .await
        .expect("reconcile waited for a request nobody expected");
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("some expected requests were not made")
        .expect("a request did not match");
    result
}

fn pod(i: u32, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("recv-{i}"), "namespace": "mon"},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    })
}

/// Ready pods whose receivers report running the ring of `members`, and Ready pods that do not.
fn pods_reporting(members: &[u32], reporting: &[u32], silent: &[u32]) -> Reply {
    let hash = ring_hash(members);
    let items: Vec<Value> = reporting
        .iter()
        .map(|&i| {
            let mut p = pod(i, true);
            p["metadata"]["annotations"] =
                json!({hashring::contract::RING_HASH_ANNOTATION: hash.clone()});
            p
        })
        .chain(silent.iter().map(|&i| pod(i, true)))
        .collect();
    Reply::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
}

/// The config hash of the ring the operator writes for `members`.
fn ring_hash(members: &[u32]) -> String {
    let tr = receiver("recv", "mon", 3);
    let names = Names::new(&tr, "cluster.local");
    let members = members.iter().copied().collect();
    let json = hashring::to_json(&build::hashrings(&tr, &names, &members));
    hashring::config_hash(json.as_bytes()).to_hex()
}

fn pods(ready: &[u32], unready: &[u32]) -> Reply {
    let items: Vec<Value> = ready
        .iter()
        .map(|&i| pod(i, true))
        .chain(unready.iter().map(|&i| pod(i, false)))
        .collect();
    Reply::Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}))
}

fn endpoint(i: u32) -> String {
    format!("recv-{i}.recv.mon.svc.cluster.local:10901")
}

/// The ConfigMap a previous reconciliation wrote for `members`, `age` seconds ago.
fn configmap(members: &[u32], age: i64) -> Reply {
    let tr = receiver("recv", "mon", 3);
    let names = Names::new(&tr, "cluster.local");
    let members = members.iter().copied().collect();
    let json = hashring::to_json(&build::hashrings(&tr, &names, &members));
    let changed = Timestamp::from_second(now().as_second() - age).unwrap();
    let cm = build::hashring_configmap(&tr, &names, json, &changed.to_string());
    Reply::Json(serde_json::to_value(cm).unwrap())
}

fn statefulset(replicas: i32) -> Reply {
    Reply::Json(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "recv", "namespace": "mon"},
        "spec": {"replicas": replicas, "serviceName": "recv", "selector": {}, "template": {}},
    }))
}

/// The three reads every reconciliation starts with.
fn reads(pods: Reply, configmap: Reply, statefulset: Reply) -> Vec<Expect> {
    vec![
        expect(Method::GET, format!("{NS_PATH}/pods"), pods),
        expect(
            Method::GET,
            format!("{NS_PATH}/configmaps/recv-hashring"),
            configmap,
        ),
        expect(
            Method::GET,
            format!("{APPS_PATH}/statefulsets/recv"),
            statefulset,
        ),
    ]
}

/// The identity and Service applies every writing reconciliation makes.
fn identity_and_services() -> Vec<Expect> {
    vec![
        apply(format!("{NS_PATH}/serviceaccounts/recv-receiver")),
        apply("/apis/rbac.authorization.k8s.io/v1/namespaces/mon/roles/recv-receiver"),
        apply("/apis/rbac.authorization.k8s.io/v1/namespaces/mon/rolebindings/recv-receiver"),
        apply(format!("{NS_PATH}/services/recv"))
            .check(|b| assert_eq!(b["spec"]["publishNotReadyAddresses"], true)),
        apply(format!("{NS_PATH}/services/recv-remote-write")),
    ]
}

fn ring_apply(members: &'static [u32]) -> Expect {
    apply(format!("{NS_PATH}/configmaps/recv-hashring")).check(move |b| {
        let rings =
            hashring::parse(b["data"]["hashrings.json"].as_str().unwrap().as_bytes()).unwrap();
        let got: Vec<&str> = rings[0]
            .endpoints
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        let want: Vec<String> = members.iter().map(|&i| endpoint(i)).collect();
        assert_eq!(got, want);
        assert_eq!(
            b["metadata"]["annotations"]["receiver.thanos-rs.io/ring-changed-at"],
            now().to_string()
        );
        assert_eq!(
            b["metadata"]["ownerReferences"][0]["kind"],
            "ThanosReceiver"
        );
    })
}

fn event(reason: &'static str) -> Expect {
    expect(Method::POST, EVENTS_PATH, Reply::Echo).check(move |b| {
        assert_eq!(b["reason"], reason);
        assert_eq!(b["regarding"]["name"], "recv");
    })
}

fn sts_apply(replicas: i64) -> Expect {
    apply(format!("{APPS_PATH}/statefulsets/recv"))
        .check(move |b| assert_eq!(b["spec"]["replicas"], replicas))
}

fn pdb_apply(reply: Reply) -> Expect {
    expect(
        Method::PATCH,
        "/apis/policy/v1/namespaces/mon/poddisruptionbudgets/recv",
        reply,
    )
    .check(|b| assert_eq!(b["spec"]["maxUnavailable"], 1))
}

const SERVICE_MONITOR_PATH: &str =
    "/apis/monitoring.coreos.com/v1/namespaces/mon/servicemonitors/recv";

fn hpa_path() -> &'static str {
    "/apis/autoscaling/v2/namespaces/mon/horizontalpodautoscalers/recv"
}

/// The status write, with the conditions it must carry as `(type, status, reason)`.
fn status_apply(want: &'static [(&'static str, &'static str, &'static str)]) -> Expect {
    apply(STATUS_PATH).check(move |b| {
        let status: ThanosReceiverStatus = serde_json::from_value(b["status"].clone()).unwrap();
        for (t, s, r) in want {
            let c = status
                .conditions
                .iter()
                .find(|c| c.type_ == *t)
                .unwrap_or_else(|| panic!("no {t} condition"));
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                (*s, *r),
                "{t}: {}",
                c.message
            );
        }
    })
}

/// A resource the operator already reconciled at its current generation.
fn settled(replicas: i32) -> ThanosReceiver {
    let mut tr = receiver("recv", "mon", replicas);
    tr.status = Some(ThanosReceiverStatus {
        observed_generation: Some(1),
        ..ThanosReceiverStatus::default()
    });
    tr
}

/// The scenarios, by name.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// A new resource, no pod Ready: everything but the ConfigMap is applied.
    FirstReconcileNoPodReady,
    /// Three pods turn Ready: the first ring is written and announced.
    PodsTurnReady,
    /// Scale up 3 → 5 with only pod 4 Ready: it joins, pod 3 does not yet.
    ScaleUpWithPodsNotYetReady,
    /// Scale down 5 → 3: the ring drops 3 and 4 while the StatefulSet keeps 5.
    ScaleDownRemovesFromRingFirst,
    /// Scale down once receivers 0-2 report the ring without 3 and 4: the StatefulSet shrinks at
    /// once, well within `ringPropagationSeconds`.
    ScaleDownOnceConfirmed,
    /// Scale down with receiver 2 silent past `ringPropagationSeconds`: the StatefulSet shrinks,
    /// and the status and a Warning Event say the bound was hit.
    ScaleDownTimesOut,
    /// Operator restart with an existing ConfigMap and no pod Ready: the ring is kept.
    RestartKeepsTheRing,
    /// RF 5 with 3 Ready pods: no ring is written.
    ReplicationFactorAboveReadyPods,
    /// Autoscaling on a cluster without autoscaling/v2 and policy/v1: said, not fatal.
    MissingApiGroups,
    /// `paused`: reads and a status, no other write.
    Paused,
    /// A replication factor above the replicas: an event and a Degraded status, no other write.
    InvalidSpec,
    /// The StatefulSet apply is rejected: the error is returned, announced and in the status.
    ApplyRejected,
}

impl Scenario {
    async fn run(self) {
        let result = match self {
            Scenario::FirstReconcileNoPodReady => {
                let mut requests = reads(pods(&[], &[]), Reply::Error(404), Reply::Error(404));
                requests.extend(identity_and_services());
                requests.extend([
                    sts_apply(3),
                    // A new generation: an HPA left from an earlier spec is removed.
                    expect(Method::DELETE, hpa_path(), Reply::Error(404)),
                    pdb_apply(Reply::Echo),
                    // Likewise a ServiceMonitor, on a cluster without the CRD too.
                    expect(Method::DELETE, SERVICE_MONITOR_PATH, Reply::Error(404)),
                    status_apply(&[
                        ("RingReady", "False", "NoRing"),
                        ("Available", "False", "NoRing"),
                        ("Degraded", "False", "AsExpected"),
                    ]),
                ]);
                let action = run(receiver("recv", "mon", 3), requests).await.unwrap();
                assert_eq!(action, Action::requeue(Duration::from_secs(300)));
                return;
            }
            Scenario::PodsTurnReady => {
                let mut requests = reads(pods(&[0, 1, 2], &[]), Reply::Error(404), statefulset(3));
                requests.extend(identity_and_services());
                requests.extend([
                    ring_apply(&[0, 1, 2]),
                    event("RingChanged"),
                    sts_apply(3),
                    pdb_apply(Reply::Echo),
                    status_apply(&[
                        ("RingReady", "True", "AllReceiversInRing"),
                        ("Available", "True", "QuorumAvailable"),
                        ("Progressing", "False", "Reconciled"),
                    ]),
                ]);
                run(settled(3), requests).await
            }
            Scenario::ScaleUpWithPodsNotYetReady => {
                let mut requests = reads(
                    pods(&[0, 1, 2, 4], &[3]),
                    configmap(&[0, 1, 2], 600),
                    statefulset(5),
                );
                requests.extend(identity_and_services());
                requests.extend([
                    ring_apply(&[0, 1, 2, 4]),
                    event("RingChanged"),
                    sts_apply(5),
                    pdb_apply(Reply::Echo),
                    status_apply(&[
                        ("RingReady", "False", "WaitingForReadyReceivers"),
                        ("Progressing", "True", "WaitingForReadyReceivers"),
                    ]),
                ]);
                run(settled(5), requests).await
            }
            Scenario::ScaleDownRemovesFromRingFirst => {
                let mut requests = reads(
                    pods(&[0, 1, 2, 3, 4], &[]),
                    configmap(&[0, 1, 2, 3, 4], 600),
                    statefulset(5),
                );
                requests.extend(identity_and_services());
                requests.extend([
                    ring_apply(&[0, 1, 2]),
                    event("RingChanged"),
                    sts_apply(5),
                    pdb_apply(Reply::Echo),
                    status_apply(&[
                        ("Progressing", "True", "ScalingDown"),
                        ("RingReady", "True", "AllReceiversInRing"),
                    ]),
                ]);
                let action = run(settled(3), requests).await.unwrap();
                assert_eq!(action, Action::requeue(Duration::from_secs(60)));
                return;
            }
            Scenario::ScaleDownOnceConfirmed => {
                let mut requests = reads(
                    pods_reporting(&[0, 1, 2], &[0, 1, 2], &[3, 4]),
                    configmap(&[0, 1, 2], 1),
                    statefulset(5),
                );
                requests.extend(identity_and_services());
                requests.extend([
                    sts_apply(3),
                    pdb_apply(Reply::Echo),
                    status_apply(&[("RingReady", "True", "AllReceiversInRing")]),
                ]);
                run(settled(3), requests).await
            }
            Scenario::ScaleDownTimesOut => {
                let mut requests = reads(
                    pods_reporting(&[0, 1, 2], &[0, 1], &[2, 3, 4]),
                    configmap(&[0, 1, 2], 61),
                    statefulset(5),
                );
                requests.extend(identity_and_services());
                requests.extend([
                    sts_apply(3),
                    event("RingPropagationTimedOut"),
                    pdb_apply(Reply::Echo),
                    status_apply(&[
                        ("Progressing", "True", "RingPropagationTimedOut"),
                        ("RingReady", "True", "AllReceiversInRing"),
                    ]),
                ]);
                run(settled(3), requests).await
            }
            Scenario::RestartKeepsTheRing => {
                let mut requests = reads(
                    pods(&[], &[0, 1, 2]),
                    configmap(&[0, 1, 2], 600),
                    statefulset(3),
                );
                requests.extend(identity_and_services());
                requests.extend([
                    sts_apply(3),
                    pdb_apply(Reply::Echo),
                    status_apply(&[
                        ("RingReady", "True", "AllReceiversInRing"),
                        ("Available", "False", "QuorumAtRisk"),
                    ]),
                ]);
                run(settled(3), requests).await
            }
            Scenario::ReplicationFactorAboveReadyPods => {
                let mut tr = settled(5);
                tr.spec.replication_factor = 5;
                let mut requests =
                    reads(pods(&[0, 1, 2], &[3, 4]), Reply::Error(404), statefulset(5));
                requests.extend(identity_and_services());
                requests.extend([
                    sts_apply(5),
                    expect(
                        Method::PATCH,
                        "/apis/policy/v1/namespaces/mon/poddisruptionbudgets/recv",
                        Reply::Echo,
                    )
                    .check(|b| assert_eq!(b["spec"]["maxUnavailable"], 2)),
                    status_apply(&[("RingReady", "False", "NoRing")]),
                ]);
                run(tr, requests).await
            }
            Scenario::MissingApiGroups => {
                let mut tr = receiver("recv", "mon", 3);
                tr.spec.autoscaling = Some(
                    serde_json::from_value(json!({"minReplicas": 3, "maxReplicas": 9})).unwrap(),
                );
                tr.spec.service_monitor.enabled = true;
                let mut requests = reads(pods(&[], &[]), Reply::Error(404), statefulset(3));
                requests.extend(identity_and_services());
                requests.extend([
                    sts_apply(3),
                    expect(Method::PATCH, hpa_path(), Reply::Error(404)).check(|b| {
                        assert_eq!(b["spec"]["scaleTargetRef"]["kind"], "ThanosReceiver");
                        assert_eq!(b["spec"]["maxReplicas"], 9);
                    }),
                    pdb_apply(Reply::Error(404)),
                    expect(Method::PATCH, SERVICE_MONITOR_PATH, Reply::Error(404))
                        .check(|b| assert_eq!(b["kind"], "ServiceMonitor")),
                    status_apply(&[("Degraded", "True", "ApiGroupUnavailable")]).check(|b| {
                        let status: ThanosReceiverStatus =
                            serde_json::from_value(b["status"].clone()).unwrap();
                        let degraded = status
                            .conditions
                            .iter()
                            .find(|c| c.type_ == "Degraded")
                            .unwrap();
                        for what in ["autoscaling/v2", "policy/v1", "monitoring.coreos.com/v1"] {
                            assert!(degraded.message.contains(what), "{}", degraded.message);
                        }
                    }),
                ]);
                run(tr, requests).await
            }
            Scenario::Paused => {
                let mut tr = settled(5);
                tr.spec.paused = true;
                let mut requests = reads(
                    pods(&[0, 1, 2], &[]),
                    configmap(&[0, 1, 2], 600),
                    statefulset(3),
                );
                requests.push(
                    status_apply(&[("Progressing", "False", "Paused")])
                        .check(|b| assert_eq!(b["status"]["paused"], true)),
                );
                run(tr, requests).await
            }
            Scenario::InvalidSpec => {
                let mut tr = receiver("recv", "mon", 4);
                tr.spec.replication_factor = 5;
                let mut requests = reads(pods(&[], &[]), Reply::Error(404), Reply::Error(404));
                requests.push(event("InvalidSpec"));
                requests.push(status_apply(&[
                    ("Degraded", "True", "InvalidSpec"),
                    ("Progressing", "False", "InvalidSpec"),
                ]));
                run(tr, requests).await
            }
            Scenario::ApplyRejected => {
                let mut requests = reads(
                    pods(&[0, 1, 2], &[]),
                    configmap(&[0, 1, 2], 600),
                    statefulset(3),
                );
                requests.extend(identity_and_services());
                requests.extend([
                    expect(
                        Method::PATCH,
                        format!("{APPS_PATH}/statefulsets/recv"),
                        Reply::Error(422),
                    ),
                    event("ReconcileFailed"),
                    status_apply(&[("Degraded", "True", "ReconcileFailed")]),
                ]);
                let error = run(settled(3), requests).await.unwrap_err();
                assert_eq!(error.metric_label(), "api");
                return;
            }
        };
        assert_eq!(
            result.unwrap(),
            Action::requeue(Duration::from_secs(300)),
            "{self:?}"
        );
    }
}

#[tokio::test]
async fn first_reconcile_no_pod_ready() {
    Scenario::FirstReconcileNoPodReady.run().await;
}

#[tokio::test]
async fn pods_turn_ready() {
    Scenario::PodsTurnReady.run().await;
}

#[tokio::test]
async fn scale_up_with_pods_not_yet_ready() {
    Scenario::ScaleUpWithPodsNotYetReady.run().await;
}

#[tokio::test]
async fn scale_down_removes_from_ring_first() {
    Scenario::ScaleDownRemovesFromRingFirst.run().await;
}

#[tokio::test]
async fn scale_down_once_confirmed() {
    Scenario::ScaleDownOnceConfirmed.run().await;
}

#[tokio::test]
async fn scale_down_times_out() {
    Scenario::ScaleDownTimesOut.run().await;
}

#[tokio::test]
async fn restart_keeps_the_ring() {
    Scenario::RestartKeepsTheRing.run().await;
}

#[tokio::test]
async fn replication_factor_above_ready_pods() {
    Scenario::ReplicationFactorAboveReadyPods.run().await;
}

#[tokio::test]
async fn missing_api_groups() {
    Scenario::MissingApiGroups.run().await;
}

#[tokio::test]
async fn paused() {
    Scenario::Paused.run().await;
}

#[tokio::test]
async fn invalid_spec() {
    Scenario::InvalidSpec.run().await;
}

#[tokio::test]
async fn apply_rejected() {
    Scenario::ApplyRejected.run().await;
}

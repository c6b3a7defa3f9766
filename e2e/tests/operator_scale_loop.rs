//! Scale events with the operator in the loop: the real API server, the operator binary, and
//! real receiver processes run by the harness's own StatefulSet controller and kubelet
//! ([`e2e::kubelet`]), one per pod, with the pod spec's arguments. Writes go through the Ready
//! pods with Prometheus' retries while the pool changes size, and the bucket is read back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use e2e::kube::{KubeApiServer, Operator};
use e2e::kubelet::{Kubelet, Pods};
use e2e::service::{WriterLog, write_through_service};
use e2e::{block_dirs, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use operator::crd::ThanosReceiver;
use tokio::sync::watch;
use tsdb_format::Block;

const STS: &str = "recv";
/// Series per request and the interval between requests, of each of the two writers.
const SERIES: usize = 200;
const INTERVAL: Duration = Duration::from_millis(100);
/// How long a scale step may take before the test gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// The bound from a ConfigMap change to the ring in force on every receiver.
const PROPAGATION_BOUND: Duration = Duration::from_secs(2);

/// One cluster: API server, operator, harness kubelet, and a bucket directory.
struct Loop {
    server: KubeApiServer,
    operator: Operator,
    kubelet: Kubelet,
    client: Client,
    ns: &'static str,
    bucket: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Loop {
    /// A ThanosReceiver of 3 at RF=3 shipping to a filesystem bucket, with every pod Ready and
    /// the ring of 3 in force everywhere.
    async fn start(ns: &'static str) -> Loop {
        Self::start_with(ns, tempfile::tempdir().unwrap(), &[], "").await
    }

    /// [`Loop::start`] in `tmp`, with Secrets made from directories (one key per file) and
    /// more spec lines (indented by 2) for the ThanosReceiver.
    async fn start_with(
        ns: &'static str,
        tmp: tempfile::TempDir,
        secrets: &[(&str, &Path)],
        spec: &str,
    ) -> Loop {
        let bucket = tmp.path().join("bucket");
        std::fs::create_dir_all(&bucket).unwrap();
        let server = KubeApiServer::start().await;
        server.install_operator().await;
        server.kubectl(&["create", "namespace", ns]);
        server.kubectl(&[
            "create",
            "secret",
            "generic",
            "-n",
            ns,
            "bucket",
            &format!(
                "--from-literal=objstore.yml=type: FILESYSTEM\nconfig:\n  directory: {}\n",
                bucket.display()
            ),
        ]);
        for (name, dir) in secrets {
            let from = format!("--from-file={}", dir.display());
            server.kubectl(&["create", "secret", "generic", "-n", ns, name, &from]);
        }
        let operator = Operator::start(&server, "op");
        let kubelet = Kubelet::start(&server, ns, STS, &tmp.path().join("k")).await;
        let manifest = tmp.path().join("recv.yaml");
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata:\n  name: {STS}\n  namespace: {ns}\nspec:\n  replicas: 3\n  replicationFactor: 3\n  image: thanos-receiver:e2e\n  objectStorage:\n    secretName: bucket\n{spec}"
            ),
        )
        .unwrap();
        server.kubectl(&["apply", "-f", &manifest.display().to_string()]);
        let client = server.client().await;
        let cluster = Loop {
            server,
            operator,
            kubelet,
            client,
            ns,
            bucket,
            _tmp: tmp,
        };
        cluster.ring_in_force(3).await;
        cluster
    }

    /// Waits until the ConfigMap holds a ring of `members` and every running receiver reports
    /// it; returns its hash.
    async fn ring_in_force(&self, members: usize) -> String {
        let http = reqwest::Client::new();
        let pods = self.kubelet.pods();
        eventually(
            STEP_TIMEOUT,
            &format!("a ring of {members} in force on every receiver"),
            || async {
                let (hash, endpoints) = configmap_ring(&self.client, self.ns).await?;
                if endpoints.len() != members {
                    return None;
                }
                let running = pods.running();
                if running.len() != members {
                    return None;
                }
                for pod in running {
                    if reported_hash(&http, pod.http).await? != hash {
                        return None;
                    }
                }
                Some(hash)
            },
        )
        .await
    }

    /// Waits until the StatefulSet asks for `replicas` and the harness runs exactly that many.
    async fn statefulset_at(&self, replicas: i32) {
        let pods = self.kubelet.pods();
        eventually(STEP_TIMEOUT, &format!("{replicas} pods"), || async {
            let sts = Api::<StatefulSet>::namespaced(self.client.clone(), self.ns)
                .get(STS)
                .await
                .ok()?;
            (sts.spec?.replicas? == replicas && pods.running().len() == replicas as usize)
                .then_some(())
        })
        .await;
    }

    /// Waits until `n` pod processes ended after SIGTERM.
    async fn exited(&self, n: usize) {
        eventually(STEP_TIMEOUT, &format!("{n} leavers gone"), || async {
            (self.kubelet.exits().len() >= n).then_some(())
        })
        .await;
    }

    /// Scales as `kubectl scale` does.
    fn kubectl_scale(&self, replicas: i32) {
        self.server.kubectl(&[
            "scale",
            "-n",
            self.ns,
            &format!("thanosreceiver/{STS}"),
            &format!("--replicas={replicas}"),
        ]);
    }

    /// Scales through the `/scale` subresource, as a HorizontalPodAutoscaler does.
    async fn subresource_scale(&self, replicas: i32) {
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        Api::<ThanosReceiver>::namespaced(self.client.clone(), self.ns)
            .patch_scale(STS, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patching /scale");
    }
}

/// The ring in the ConfigMap: its hash and its members' pod names.
async fn configmap_ring(client: &Client, ns: &str) -> Option<(String, Vec<String>)> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(&format!("{STS}-hashring"))
        .await
        .ok()??;
    let json = cm.data.as_ref()?.get("hashrings.json")?.clone();
    let rings = hashring::parse(json.as_bytes()).ok()?;
    let members = rings
        .iter()
        .flat_map(|r| r.endpoints.iter())
        .map(|e| e.address.split('.').next().unwrap_or_default().to_owned())
        .collect();
    Some((hashring::config_hash(json.as_bytes()).to_hex(), members))
}

/// The ConfigMap's ring-changed-at annotation.
async fn configmap_changed_at(client: &Client, ns: &str) -> Option<SystemTime> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_opt(&format!("{STS}-hashring"))
        .await
        .ok()??;
    let at: k8s_openapi::jiff::Timestamp = cm
        .annotations()
        .get("receiver.thanos-rs.io/ring-changed-at")?
        .parse()
        .ok()?;
    Some(SystemTime::from(at))
}

/// The hash `/api/v1/status/hashring` reports.
async fn reported_hash(http: &reqwest::Client, addr: std::net::SocketAddr) -> Option<String> {
    let v: serde_json::Value = http
        .get(format!("http://{addr}/api/v1/status/hashring"))
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["hash"].as_str().map(str::to_owned)
}

/// A ring version the ConfigMap held.
#[derive(Debug, Clone)]
struct RingVersion {
    hash: String,
    members: Vec<String>,
    changed_at: SystemTime,
}

/// What the observer saw: every ring version, when each receiver first reported each hash,
/// and members that were in a ring before they were ever Ready.
#[derive(Debug, Default)]
struct Observed {
    rings: Vec<RingVersion>,
    reports: BTreeMap<String, Vec<(SystemTime, String)>>,
    joined_unready: Vec<String>,
}

impl Observed {
    /// For each ring version from `from`, the time until every receiver that was Ready when it
    /// was written (other than `except`) reported it or a later ring.
    fn propagation(&self, from: usize, ready: &Pods, except: &[&str]) -> Vec<(usize, Duration)> {
        let mut out = Vec::new();
        for (i, ring) in self.rings.iter().enumerate().skip(from) {
            let current: BTreeSet<&str> = self.rings[i..].iter().map(|r| r.hash.as_str()).collect();
            let mut worst = Duration::ZERO;
            for (pod, reports) in &self.reports {
                let was_ready = ready.first_ready(pod).is_some_and(|t| t < ring.changed_at);
                if !was_ready || except.contains(&pod.as_str()) {
                    continue;
                }
                // A pod that never reports this ring or a later one (it left) does not count.
                let Some((at, _)) = reports
                    .iter()
                    .find(|(at, h)| *at >= ring.changed_at && current.contains(h.as_str()))
                    .or_else(|| {
                        // Or it already ran it when the ConfigMap's timestamp was taken.
                        reports
                            .iter()
                            .rev()
                            .find(|(at, _)| *at < ring.changed_at)
                            .filter(|(_, h)| *h == ring.hash)
                    })
                else {
                    continue;
                };
                let lag = at.duration_since(ring.changed_at).unwrap_or_default();
                worst = worst.max(lag);
            }
            out.push((i, worst));
        }
        out
    }
}

/// Polls the ConfigMap and every running receiver's ring until `stop`.
async fn observe(
    client: Client,
    ns: &'static str,
    pods: Pods,
    mut stop: watch::Receiver<bool>,
) -> Observed {
    let http = reqwest::Client::new();
    let mut seen = Observed::default();
    while !*stop.borrow() {
        if let Some((hash, members)) = configmap_ring(&client, ns).await
            && seen.rings.last().is_none_or(|r| r.hash != hash)
        {
            let now = SystemTime::now();
            let before: BTreeSet<String> = seen
                .rings
                .last()
                .map(|r| r.members.iter().cloned().collect())
                .unwrap_or_default();
            for m in members.iter().filter(|m| !before.contains(*m)) {
                if pods.first_ready(m).is_none_or(|t| t > now) {
                    seen.joined_unready.push(m.clone());
                }
            }
            let changed_at = configmap_changed_at(&client, ns).await.unwrap_or(now);
            seen.rings.push(RingVersion {
                hash,
                members,
                changed_at,
            });
        }
        let running = pods.running();
        let hashes =
            futures::future::join_all(running.iter().map(|p| reported_hash(&http, p.http))).await;
        let now = SystemTime::now();
        for (pod, hash) in running.iter().zip(hashes) {
            let Some(hash) = hash else { continue };
            let reports = seen.reports.entry(pod.name.clone()).or_default();
            if reports.last().is_none_or(|(_, h)| *h != hash) {
                reports.push((now, hash));
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    seen
}

/// Two writers and the observer, running until [`Traffic::stop`].
struct Traffic {
    stop: watch::Sender<bool>,
    writers: Vec<tokio::task::JoinHandle<WriterLog>>,
    observer: tokio::task::JoinHandle<Observed>,
}

impl Traffic {
    fn start(cluster: &Loop) -> Traffic {
        let (stop, stopped) = watch::channel(false);
        let writers = ["a", "b"]
            .into_iter()
            .map(|run| {
                tokio::spawn(write_through_service(
                    cluster.kubelet.pods(),
                    run.into(),
                    SERIES,
                    INTERVAL,
                    stopped.clone(),
                ))
            })
            .collect();
        let observer = tokio::spawn(observe(
            cluster.client.clone(),
            cluster.ns,
            cluster.kubelet.pods(),
            stopped,
        ));
        Traffic {
            stop,
            writers,
            observer,
        }
    }

    async fn stop(self) -> (Vec<WriterLog>, Observed) {
        let _ = self.stop.send(true);
        let mut logs = Vec::new();
        for w in self.writers {
            logs.push(w.await.expect("writer task"));
        }
        (logs, self.observer.await.expect("observer task"))
    }
}

/// p99 latency (retries included) of the requests that started within `[from, to)`, and how
/// many there were.
fn p99(logs: &[WriterLog], from: Instant, to: Instant) -> (Duration, usize) {
    let mut l: Vec<Duration> = logs
        .iter()
        .flat_map(|w| &w.sent)
        .filter(|s| s.at >= from && s.at < to)
        .map(|s| s.latency)
        .collect();
    l.sort();
    let n = l.len();
    let p = l
        .get(((n as f64 - 1.0) * 0.99).round() as usize)
        .copied()
        .unwrap_or_default();
    (p, n)
}

/// Copies of each `(run, series, t)` in the bucket, by replica label.
type Copies = BTreeMap<(String, String, i64), BTreeMap<String, u32>>;

/// Reads every block in the bucket back.
fn bucket_copies(bucket: &Path) -> Copies {
    let mut out = Copies::new();
    for dir in block_dirs(bucket) {
        let meta = tsdb_format::meta::read_meta(&dir).expect("meta.json");
        let replica = meta
            .thanos
            .as_ref()
            .and_then(|t| t.labels.get("replica").cloned())
            .unwrap_or_default();
        let block = Block::open(&dir).expect("opening a bucket block");
        for series in block.series().expect("series") {
            let series = series.expect("series");
            let label = |n: &str| {
                series
                    .labels
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            };
            if label("__name__").as_deref() != Some("load") {
                continue;
            }
            let (run, s) = (label("run").unwrap(), label("series").unwrap());
            for (t, _) in series.samples {
                *out.entry((run.clone(), s.clone(), t))
                    .or_default()
                    .entry(replica.clone())
                    .or_insert(0) += 1;
            }
        }
    }
    out
}

/// Checks that every acknowledged sample is in the bucket on at least a quorum (2) of
/// replicas and at most once on each; returns the number checked and a histogram of copies.
fn assert_every_acked_sample_stored(
    logs: &[WriterLog],
    bucket: &Path,
) -> (usize, BTreeMap<usize, usize>) {
    let copies = bucket_copies(bucket);
    let mut checked = 0;
    let mut histogram = BTreeMap::new();
    let mut missing = Vec::new();
    for w in logs {
        for sent in w.sent.iter().filter(|s| s.acked) {
            for s in 0..w.series {
                checked += 1;
                let key = (w.run.clone(), s.to_string(), sent.t);
                let replicas = copies.get(&key).cloned().unwrap_or_default();
                let dup: Vec<_> = replicas.iter().filter(|(_, n)| **n > 1).collect();
                assert!(dup.is_empty(), "{key:?} stored more than once on {dup:?}");
                *histogram.entry(replicas.len()).or_insert(0) += 1;
                if replicas.len() < 2 {
                    missing.push((key, replicas));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged samples are on fewer than 2 replicas in the bucket, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    (checked, histogram)
}

/// Every process that ended exited 0 and left no block that is not in the bucket.
fn assert_clean_exits(cluster: &Loop, expected: usize) {
    let exits = cluster.kubelet.exits();
    let logs = cluster.kubelet.exit_logs();
    assert_eq!(exits.len(), expected, "exits: {exits:?}");
    for ((pod, status, took), (_, log)) in exits.iter().zip(&logs) {
        assert!(
            status.success(),
            "{pod} exited with {status} after {took:?}; log:\n{log}"
        );
    }
    let uploaded: BTreeSet<_> = block_dirs(&cluster.bucket)
        .iter()
        .map(|d| d.file_name().unwrap().to_owned())
        .collect();
    for pod in exits.iter().map(|(p, _, _)| p).collect::<BTreeSet<_>>() {
        let pvc = cluster.kubelet.volume_dir(pod);
        for tenant in std::fs::read_dir(&pvc).unwrap().flatten() {
            for block in block_dirs(&tenant.path()) {
                assert!(
                    uploaded.contains(block.file_name().unwrap()),
                    "{pod} left {} behind without uploading it",
                    block.display()
                );
            }
        }
    }
}

/// The checks every loop run ends with: the harness met no API error, no write failed after its
/// retries, and (when the rings were observed) no pod joined a ring before it was Ready.
fn assert_loop_healthy(cluster: &Loop, logs: &[WriterLog], observed: Option<&Observed>) {
    assert!(
        cluster.kubelet.errors().is_empty(),
        "{:?}",
        cluster.kubelet.errors()
    );
    assert!(
        logs.iter().all(|w| w.failed().is_empty()),
        "remote-write requests failed after their retries:\n{}",
        failed_report(logs)
    );
    if let Some(observed) = observed {
        assert!(
            observed.joined_unready.is_empty(),
            "pods in the ring before they were Ready: {:?}",
            observed.joined_unready
        );
    }
}

fn failed_report(logs: &[WriterLog]) -> String {
    logs.iter()
        .flat_map(|w| w.failed())
        .take(5)
        .map(|s| format!("t={} errors={:?}", s.t, s.errors))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_3_7_3_by_kubectl_then_by_the_scale_subresource_under_load() {
    let mut cluster = Loop::start("scale-loop").await;
    let traffic = Traffic::start(&cluster);
    let steady_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let steady_to = Instant::now();

    let mut steps = Vec::new();
    let mut leavers = 0;
    for (how, to) in [("kubectl", 7), ("kubectl", 3), ("/scale", 7), ("/scale", 3)] {
        let started = Instant::now();
        if how == "kubectl" {
            cluster.kubectl_scale(to);
        } else {
            cluster.subresource_scale(to).await;
        }
        cluster.ring_in_force(to as usize).await;
        let in_force = started.elapsed();
        cluster.statefulset_at(to).await;
        if to == 3 {
            leavers += 4;
            cluster.exited(leavers).await;
        }
        let settled = started.elapsed();
        // The step's window runs on a little, for writes the change slowed down.
        tokio::time::sleep(Duration::from_secs(2)).await;
        steps.push((
            format!("{how} to {to}"),
            started,
            Instant::now(),
            in_force,
            settled,
        ));
    }
    let (logs, observed) = traffic.stop().await;
    cluster.kubelet.shutdown().await;
    cluster.operator.assert_running();

    // Report.
    let (steady, n) = p99(&logs, steady_from, steady_to);
    eprintln!("steady: p99 {steady:?} over {n} requests");
    for (name, from, to, in_force, settled) in &steps {
        let (p, n) = p99(&logs, *from, *to);
        eprintln!(
            "{name}: ring in force everywhere after {in_force:?}, pods started or gone after {settled:?}; p99 {p:?} over {n} requests ({:.2}x steady)",
            p.as_secs_f64() / steady.as_secs_f64().max(1e-6)
        );
    }
    let attempts_failed: usize = logs
        .iter()
        .flat_map(|w| &w.sent)
        .map(|s| s.errors.len())
        .sum();
    let requests: usize = logs.iter().map(|w| w.sent.len()).sum();
    eprintln!("{requests} requests, {attempts_failed} failed attempts retried");

    assert_loop_healthy(&cluster, &logs, Some(&observed));
    let pods = cluster.kubelet.pods();
    for (i, lag) in observed.propagation(1, &pods, &[]) {
        eprintln!(
            "ring {i} ({} members): in force everywhere {lag:?} after the change",
            observed.rings[i].members.len()
        );
        assert!(
            lag <= PROPAGATION_BOUND,
            "ring {i} {:?} took {lag:?} to be in force everywhere; reports: {:?}",
            observed.rings[i],
            observed.reports
        );
    }
    // 4 + 4 leavers, then the last 3 at shutdown.
    assert_clean_exits(&cluster, 11);
    let (checked, copies) = assert_every_acked_sample_stored(&logs, &cluster.bucket);
    eprintln!("{checked} acknowledged samples in the bucket; copies: {copies:?}");
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_killed_during_scale_up_comes_back_and_keeps_its_place_in_the_ring() {
    let mut cluster = Loop::start("kill-loop").await;
    let pods = cluster.kubelet.pods();
    let traffic = Traffic::start(&cluster);
    tokio::time::sleep(Duration::from_secs(3)).await;

    cluster.kubectl_scale(7);
    eventually(STEP_TIMEOUT, "the first new pod started", || async {
        (pods.running().len() > 3).then_some(())
    })
    .await;
    cluster.kubelet.kill9(1);
    let killed = Instant::now();
    eventually(STEP_TIMEOUT, "recv-1 restarted", || async {
        (cluster.kubelet.restarts(1) == 1).then_some(())
    })
    .await;
    let back = eventually(STEP_TIMEOUT, "recv-1 Ready again", || async {
        pods.ready()
            .iter()
            .any(|p| p.name == "recv-1")
            .then(SystemTime::now)
    })
    .await;
    eprintln!("recv-1 Ready again {:?} after kill -9", killed.elapsed());
    cluster.ring_in_force(7).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (logs, observed) = traffic.stop().await;
    cluster.kubelet.shutdown().await;
    cluster.operator.assert_running();

    let attempts_failed: usize = logs
        .iter()
        .flat_map(|w| &w.sent)
        .map(|s| s.errors.len())
        .sum();
    eprintln!("{attempts_failed} failed attempts retried");
    assert_loop_healthy(&cluster, &logs, Some(&observed));
    // A Ready member that stops answering keeps its place: no ring without recv-1.
    for ring in &observed.rings {
        assert!(
            ring.members.iter().any(|m| m == "recv-1"),
            "recv-1 left the ring while it restarted: {ring:?}"
        );
    }
    for (i, lag) in observed.propagation(1, &pods, &["recv-1"]) {
        assert!(lag <= PROPAGATION_BOUND, "ring {i} took {lag:?}");
    }
    assert_clean_exits(&cluster, 7);
    let (checked, copies) = assert_every_acked_sample_stored(&logs, &cluster.bucket);
    eprintln!("{checked} acknowledged samples in the bucket; copies: {copies:?}");
    // It caught up: recv-1 stored writes made after it came back.
    let back_ms = back
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let after = bucket_copies(&cluster.bucket)
        .iter()
        .filter(|((_, _, t), replicas)| *t > back_ms && replicas.contains_key("recv-1"))
        .count();
    assert!(after > 0, "recv-1 stored nothing after it came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_tls_spec_runs_the_ring_over_mtls() {
    use e2e::certs::Ca;
    let tmp = tempfile::tempdir().unwrap();
    let ns = "tls-loop";
    // A Secret as cert-manager writes it: tls.crt, tls.key, ca.crt; the certificate covers every
    // receiver's ring name and serves as client certificate of forwards.
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new(&certs, "ring");
    let pem = ca.server(
        "ring",
        "recv",
        &[&format!("*.{STS}.{ns}.svc.cluster.local")],
    );
    let secret = tmp.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::copy(&pem.cert, secret.join("tls.crt")).unwrap();
    std::fs::copy(&pem.key, secret.join("tls.key")).unwrap();
    std::fs::copy(&ca.cert, secret.join("ca.crt")).unwrap();
    let mut cluster = Loop::start_with(
        ns,
        tmp,
        &[("recv-tls", &secret)],
        "  tls:\n    secretName: recv-tls\n    remoteWrite: false\n",
    )
    .await;
    let traffic = Traffic::start(&cluster);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (logs, _) = traffic.stop().await;
    cluster.kubelet.shutdown().await;
    cluster.operator.assert_running();
    assert_loop_healthy(&cluster, &logs, None);
    for (pod, log) in cluster.kubelet.exit_logs() {
        assert!(
            log.contains("grpc_tls=true") && log.contains("forward_tls=true"),
            "{pod} did not run TLS:\n{log}"
        );
    }
    // Every acknowledged sample reached its replicas: the forwards went over mTLS.
    let (checked, copies) = assert_every_acked_sample_stored(&logs, &cluster.bucket);
    assert!(checked > 0);
    assert_eq!(
        copies.keys().copied().collect::<Vec<_>>(),
        [3],
        "{copies:?}"
    );
}

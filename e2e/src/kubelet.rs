//! A StatefulSet controller and kubelet of our own, for tests with the operator in the loop.
//!
//! The test API server runs no controller-manager and no kubelet. [`Kubelet`] plays both for one
//! StatefulSet: it creates and deletes the pods `spec.replicas` asks for (policy `Parallel`,
//! as the operator sets it) and runs each pod as a real `thanos-receiver` process with the
//! arguments and environment of the pod spec the operator built.
//!
//! Addresses: every pod gets its own loopback address (`127.77.B.N`) and listens on the ports
//! the pod spec names, with `0.0.0.0` in the arguments replaced by that address. The pods' DNS
//! names (`<pod>.<service>.<namespace>.svc.cluster.local`, as the ring lists them) resolve to
//! these addresses through lines this harness adds to `/etc/hosts` (tagged, under a lock, and
//! removed on drop), so receivers find each other by the names the operator wrote, with the
//! system resolver, as in a cluster. Tests using it must run as root; use a namespace no other
//! test uses.
//!
//! Volumes: a claim template is a directory per pod that outlives the pod (a PVC); ConfigMap
//! and Secret volumes are written once when the pod starts (the receivers watch the ring
//! ConfigMap through the API); mount paths in the arguments are rewritten to these directories.
//! The receivers authenticate as [`RECEIVER_USER`], bound to the Role the operator bound to
//! the pod's ServiceAccount.
//!
//! Probes: a pod turns Ready once `/-/ready` answers 200 and stays Ready until its process
//! exits; an exited process is restarted in place (restart policy `Always`) and the pod is
//! NotReady until the new one is ready. A pod beyond `spec.replicas` is marked NotReady,
//! sent SIGTERM, given its `terminationGracePeriodSeconds`, and deleted once it exited.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ::kube::api::{Api, DeleteParams, PostParams};
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};

use crate::kube::{KubeApiServer, RECEIVER_USER, create_pod, set_pod_ready};

/// Ordinals this harness can run (`0..MAX_PODS`).
pub const MAX_PODS: u32 = 10;

/// How often the controller loop looks at the StatefulSet and the processes.
const TICK: Duration = Duration::from_millis(100);

/// A pod the harness runs.
#[derive(Debug, Clone)]
pub struct PodAddr {
    /// Pod name.
    pub name: String,
    /// Remote-write listener.
    pub remote_write: SocketAddr,
    /// Operational HTTP listener.
    pub http: SocketAddr,
}

/// A pod process that ended after SIGTERM at scale-down or shutdown.
#[derive(Debug)]
pub struct Exit {
    /// Pod name.
    pub pod: String,
    /// Exit status (a kill after the grace period shows as a signal).
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    /// The process's log.
    pub log: PathBuf,
}

struct Running {
    addr: PodAddr,
    child: Child,
    log: PathBuf,
    /// When `/-/ready` first answered 200 for this process.
    ready_at: Option<SystemTime>,
    restarts: u32,
    grace: Duration,
}

struct Terminating {
    running: Running,
    signalled: Instant,
}

#[derive(Default)]
struct Shared {
    pods: BTreeMap<u32, Running>,
    terminating: Vec<Terminating>,
    exits: Vec<Exit>,
    /// First Ready time of each pod object (cleared when the object is deleted).
    first_ready: BTreeMap<String, SystemTime>,
    errors: Vec<String>,
}

/// A read-only handle on what the harness runs, for writers and observers in other tasks.
#[derive(Clone)]
pub struct Pods(Arc<Mutex<Shared>>);

impl Pods {
    /// Pods whose process is Ready, as a Service's endpoints list them.
    pub fn ready(&self) -> Vec<PodAddr> {
        let s = self.0.lock().expect("kubelet state");
        s.pods
            .values()
            .filter(|r| r.ready_at.is_some())
            .map(|r| r.addr.clone())
            .collect()
    }

    /// Pods with a live process (Ready or not, not terminating).
    pub fn running(&self) -> Vec<PodAddr> {
        let s = self.0.lock().expect("kubelet state");
        s.pods.values().map(|r| r.addr.clone()).collect()
    }

    /// When the pod object `name` first turned Ready, if it has.
    pub fn first_ready(&self, name: &str) -> Option<SystemTime> {
        self.0
            .lock()
            .expect("kubelet state")
            .first_ready
            .get(name)
            .copied()
    }
}

/// The controller and kubelet for one StatefulSet; stops every process on drop.
pub struct Kubelet {
    shared: Arc<Mutex<Shared>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    root: PathBuf,
    _hosts: HostsEntries,
}

struct Ctx {
    client: Client,
    http: reqwest::Client,
    ns: String,
    statefulset: String,
    root: PathBuf,
    kubeconfig: PathBuf,
    ips: Vec<Ipv4Addr>,
    bound: bool,
}

impl Kubelet {
    /// Runs the pods of StatefulSet `statefulset` in `ns` (whose pods' DNS names use the
    /// service of the same name), keeping pod directories under `root`.
    pub async fn start(server: &KubeApiServer, ns: &str, statefulset: &str, root: &Path) -> Self {
        let names: Vec<String> = (0..MAX_PODS)
            .map(|i| format!("{statefulset}-{i}.{statefulset}.{ns}.svc.cluster.local"))
            .collect();
        let (hosts, ips) = HostsEntries::add(&names).unwrap_or_else(|e| {
            panic!("adding pod names to /etc/hosts (the loop tests run as root): {e}")
        });
        let ctx = Ctx {
            client: server.client().await,
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(500))
                .build()
                .expect("probe client"),
            ns: ns.into(),
            statefulset: statefulset.into(),
            root: root.into(),
            kubeconfig: server.kubeconfig_for(RECEIVER_USER),
            ips,
            bound: false,
        };
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut ctx = ctx;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(TICK) => {}
                    }
                    if let Err(e) = ctx.tick(&shared).await {
                        shared.lock().expect("kubelet state").errors.push(e);
                    }
                }
            }
        });
        Kubelet {
            shared,
            stop,
            task: Some(task),
            root: root.into(),
            _hosts: hosts,
        }
    }

    /// A handle for other tasks.
    pub fn pods(&self) -> Pods {
        Pods(Arc::clone(&self.shared))
    }

    /// SIGKILLs the process of pod `ordinal` (the harness restarts it, as a kubelet would).
    pub fn kill9(&self, ordinal: u32) {
        let mut s = self.shared.lock().expect("kubelet state");
        let r = s.pods.get_mut(&ordinal).expect("no such pod running");
        let _ = r.child.kill();
    }

    /// Restarts of pod `ordinal`'s process so far.
    pub fn restarts(&self, ordinal: u32) -> u32 {
        let s = self.shared.lock().expect("kubelet state");
        s.pods.get(&ordinal).map_or(0, |r| r.restarts)
    }

    /// Processes that ended after SIGTERM, in the order they ended.
    pub fn exits(&self) -> Vec<(String, ExitStatus, Duration)> {
        let s = self.shared.lock().expect("kubelet state");
        s.exits
            .iter()
            .map(|e| (e.pod.clone(), e.status, e.took))
            .collect()
    }

    /// The log of every process that ended (for failure messages).
    pub fn exit_logs(&self) -> Vec<(String, String)> {
        let s = self.shared.lock().expect("kubelet state");
        s.exits
            .iter()
            .map(|e| {
                (
                    e.pod.clone(),
                    std::fs::read_to_string(&e.log).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Errors the controller loop met (API calls that failed); a healthy run has none.
    pub fn errors(&self) -> Vec<String> {
        self.shared.lock().expect("kubelet state").errors.clone()
    }

    /// The data directory (the PVC) of pod `name`.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("pvc").join(format!("data-{name}"))
    }

    /// Stops the controller loop, sends SIGTERM to every pod process and waits for them all
    /// (each within its grace period), as deleting the StatefulSet would.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let now = Instant::now();
        {
            let mut s = self.shared.lock().expect("kubelet state");
            let pods = std::mem::take(&mut s.pods);
            for (_, running) in pods {
                crate::signal(&running.child, libc::SIGTERM);
                s.terminating.push(Terminating {
                    running,
                    signalled: now,
                });
            }
        }
        loop {
            let done = {
                let mut s = self.shared.lock().expect("kubelet state");
                reap(&mut s);
                s.terminating.is_empty()
            };
            if done {
                return;
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        for r in s.pods.values_mut() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        for t in &mut s.terminating {
            let _ = t.running.child.kill();
            let _ = t.running.child.wait();
        }
    }
}

/// Records terminating processes that exited (killing those past their grace period) and
/// returns the names of their pods.
fn reap(s: &mut Shared) -> Vec<String> {
    let mut gone = Vec::new();
    let mut i = 0;
    while i < s.terminating.len() {
        let t = &mut s.terminating[i];
        if t.signalled.elapsed() > t.running.grace {
            let _ = t.running.child.kill();
        }
        match t.running.child.try_wait() {
            Ok(Some(status)) => {
                let t = s.terminating.swap_remove(i);
                gone.push(t.running.addr.name.clone());
                s.exits.push(Exit {
                    pod: t.running.addr.name,
                    status,
                    took: t.signalled.elapsed(),
                    log: t.running.log,
                });
            }
            _ => i += 1,
        }
    }
    gone
}

impl Ctx {
    async fn tick(&mut self, shared: &Arc<Mutex<Shared>>) -> Result<(), String> {
        let sets = Api::<StatefulSet>::namespaced(self.client.clone(), &self.ns);
        let Some(sts) = sets
            .get_opt(&self.statefulset)
            .await
            .map_err(|e| format!("getting the StatefulSet: {e}"))?
        else {
            return Ok(());
        };
        let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as u32;
        if desired > MAX_PODS {
            return Err(format!(
                "the harness runs at most {MAX_PODS} pods, not {desired}"
            ));
        }
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.ns);

        // Scale-down: leavers turn NotReady and get SIGTERM; pods are deleted once they exited.
        let leaving: Vec<Running> = {
            let mut s = shared.lock().expect("kubelet state");
            let ordinals: Vec<u32> = s.pods.range(desired..).map(|(o, _)| *o).collect();
            ordinals
                .into_iter()
                .filter_map(|o| s.pods.remove(&o))
                .collect()
        };
        for running in leaving {
            if running.ready_at.is_some() {
                set_pod_ready(&self.client, &self.ns, &running.addr.name, false).await;
            }
            crate::signal(&running.child, libc::SIGTERM);
            shared
                .lock()
                .expect("kubelet state")
                .terminating
                .push(Terminating {
                    running,
                    signalled: Instant::now(),
                });
        }
        let gone = reap(&mut shared.lock().expect("kubelet state"));
        for name in gone {
            shared
                .lock()
                .expect("kubelet state")
                .first_ready
                .remove(&name);
            pods.delete(&name, &DeleteParams::default())
                .await
                .map_err(|e| format!("deleting pod {name}: {e}"))?;
        }

        // Scale-up: a pod (and its process) for every missing ordinal whose predecessor with
        // the same name has gone.
        for ordinal in 0..desired {
            let name = format!("{}-{ordinal}", self.statefulset);
            let busy = {
                let s = shared.lock().expect("kubelet state");
                s.pods.contains_key(&ordinal)
                    || s.terminating.iter().any(|t| t.running.addr.name == name)
            };
            if busy {
                continue;
            }
            let pod = match pods.get_opt(&name).await.map_err(|e| e.to_string())? {
                Some(pod) => pod,
                None => create_pod(&self.client, &sts, ordinal).await,
            };
            self.bind_service_account(&pod).await?;
            let running = self.spawn(&sts, &pod, ordinal, 0).await?;
            shared
                .lock()
                .expect("kubelet state")
                .pods
                .insert(ordinal, running);
        }

        // Probes, and restarts of processes that died.
        let ordinals: Vec<u32> = shared
            .lock()
            .expect("kubelet state")
            .pods
            .keys()
            .copied()
            .collect();
        for ordinal in ordinals {
            let (exited, ready, http, name) = {
                let mut s = shared.lock().expect("kubelet state");
                let r = s.pods.get_mut(&ordinal).expect("pod");
                let exited = r.child.try_wait().ok().flatten().is_some();
                (
                    exited,
                    r.ready_at.is_some(),
                    r.addr.http,
                    r.addr.name.clone(),
                )
            };
            if exited {
                if ready {
                    set_pod_ready(&self.client, &self.ns, &name, false).await;
                }
                let pod = pods.get(&name).await.map_err(|e| e.to_string())?;
                let restarts = shared.lock().expect("kubelet state").pods[&ordinal].restarts + 1;
                let running = self.spawn(&sts, &pod, ordinal, restarts).await?;
                shared
                    .lock()
                    .expect("kubelet state")
                    .pods
                    .insert(ordinal, running);
                continue;
            }
            if ready {
                continue;
            }
            let url = format!("http://{http}/-/ready");
            let ok = matches!(self.http.get(&url).send().await, Ok(r) if r.status() == 200);
            if ok {
                // Recorded before the API server hears of it, so an observer that sees the
                // pod in a ring always finds its Ready time.
                let now = SystemTime::now();
                {
                    let mut s = shared.lock().expect("kubelet state");
                    s.first_ready.entry(name.clone()).or_insert(now);
                    if let Some(r) = s.pods.get_mut(&ordinal) {
                        r.ready_at = Some(now);
                    }
                }
                set_pod_ready(&self.client, &self.ns, &name, true).await;
            }
        }
        Ok(())
    }

    /// Binds [`RECEIVER_USER`] to the Role the operator bound to the pod's ServiceAccount.
    async fn bind_service_account(&mut self, pod: &Pod) -> Result<(), String> {
        if self.bound {
            return Ok(());
        }
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .ok_or("the pod has no ServiceAccount")?;
        let bindings = Api::<RoleBinding>::namespaced(self.client.clone(), &self.ns);
        let list = bindings
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let Some(theirs) = list.items.into_iter().find(|b| {
            b.subjects
                .iter()
                .flatten()
                .any(|s| s.kind == "ServiceAccount" && s.name == sa)
        }) else {
            return Err(format!("no RoleBinding for ServiceAccount {sa} yet"));
        };
        let ours = RoleBinding {
            metadata: ::kube::api::ObjectMeta {
                name: Some(format!("e2e-{sa}")),
                ..Default::default()
            },
            role_ref: theirs.role_ref,
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: RECEIVER_USER.name.into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Default::default()
            }]),
        };
        match bindings.create(&PostParams::default(), &ours).await {
            Ok(_) => {}
            Err(::kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.to_string()),
        }
        self.bound = true;
        Ok(())
    }

    /// Starts the process of `pod`: its volumes laid out, its arguments and environment as the
    /// pod spec says, on the pod's own loopback address.
    async fn spawn(
        &self,
        sts: &StatefulSet,
        pod: &Pod,
        ordinal: u32,
        restarts: u32,
    ) -> Result<Running, String> {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().ok_or("pod without spec")?;
        let container = &spec.containers[0];
        let claims: BTreeSet<String> = sts
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .map(|c| c.name_any())
            .collect();
        let pod_dir = self.root.join("pods").join(&name);
        let mut volumes = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            let dir = if claims.contains(&v.name) {
                self.root.join("pvc").join(format!("{}-{name}", v.name))
            } else {
                pod_dir.join(format!("vol-{}", v.name))
            };
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            if let Some(cm) = &v.config_map {
                let cms = Api::<ConfigMap>::namespaced(self.client.clone(), &self.ns);
                let data = cms
                    .get_opt(&cm.name)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|c| c.data)
                    .unwrap_or_default();
                for (k, v) in data {
                    std::fs::write(dir.join(k), v).map_err(|e| e.to_string())?;
                }
            }
            if let Some(secret) = &v.secret {
                let name = secret.secret_name.clone().unwrap_or_default();
                let data = Api::<Secret>::namespaced(self.client.clone(), &self.ns)
                    .get(&name)
                    .await
                    .map_err(|e| format!("secret {name}: {e}"))?
                    .data
                    .unwrap_or_default();
                for (k, v) in data {
                    std::fs::write(dir.join(k), v.0).map_err(|e| e.to_string())?;
                }
            }
            volumes.insert(v.name.clone(), dir);
        }
        let mounts: Vec<(String, PathBuf)> = container
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| Some((m.mount_path.clone(), volumes.get(&m.name)?.clone())))
            .collect();
        let env = container_env(container, pod);
        let ip = self.ips[ordinal as usize];
        let args = pod_args(container.args.as_deref().unwrap_or(&[]), &env, &mounts, ip);
        let port = |port_name: &str| {
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(port_name))
                .map(|p| SocketAddr::from((ip, p.container_port as u16)))
                .ok_or(format!("the container has no port {port_name}"))
        };
        let addr = PodAddr {
            name: name.clone(),
            remote_write: port("remote-write")?,
            http: port("http")?,
        };
        let log = pod_dir.join(format!("receiver-{restarts}.log"));
        let stderr = File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(crate::bin("thanos-receiver"))
            .args(&args)
            .envs(env)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(&pod_dir)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawning {name}: {e}"))?;
        let grace = Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30) as u64);
        Ok(Running {
            addr,
            child,
            log,
            ready_at: None,
            restarts,
            grace,
        })
    }
}

/// The container's environment: literal values and the pod's name and namespace from the
/// downward API.
fn container_env(container: &Container, pod: &Pod) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => v.clone(),
                (None, Some(from)) => match from.field_ref.as_ref()?.field_path.as_str() {
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => pod.namespace()?,
                    _ => return None,
                },
                _ => return None,
            };
            Some((e.name.clone(), value))
        })
        .collect()
}

/// A pod's arguments as its process gets them: `$(VAR)` expanded from the environment,
/// `0.0.0.0` listeners bound to the pod's address, mount paths replaced by their directories.
fn pod_args(
    args: &[String],
    env: &[(String, String)],
    mounts: &[(String, PathBuf)],
    ip: Ipv4Addr,
) -> Vec<String> {
    let mut mounts: Vec<&(String, PathBuf)> = mounts.iter().collect();
    // Longest mount path first, so /etc/thanos/a wins over /etc/thanos.
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    args.iter()
        .map(|arg| {
            let mut arg = arg.clone();
            for (k, v) in env {
                arg = arg.replace(&format!("$({k})"), v);
            }
            arg = arg.replace("0.0.0.0:", &format!("{ip}:"));
            if let Some((flag, value)) = arg.split_once('=') {
                let mapped = mounts.iter().find_map(|(path, dir)| {
                    let rest = value.strip_prefix(path.as_str())?;
                    (rest.is_empty() || rest.starts_with('/'))
                        .then(|| format!("{flag}={}{rest}", dir.display()))
                });
                if let Some(mapped) = mapped {
                    arg = mapped;
                }
            }
            arg
        })
        .collect()
}

/// Lines of `/etc/hosts` naming this test's pods; removed on drop.
struct HostsEntries {
    tag: String,
}

const HOSTS: &str = "/etc/hosts";
const HOSTS_TAG: &str = "# thanos-receiver-e2e";

impl HostsEntries {
    /// Gives each name an address `127.77.B.N` in a block `B` no live test holds.
    fn add(names: &[String]) -> std::io::Result<(HostsEntries, Vec<Ipv4Addr>)> {
        let mut out = None;
        edit_hosts(|lines| {
            // Entries of tests that died without cleaning up go first.
            let mut lines: Vec<String> = lines
                .into_iter()
                .filter(|l| match tag_of(l) {
                    Some((pid, _)) => Path::new(&format!("/proc/{pid}")).exists(),
                    None => true,
                })
                .collect();
            let used: BTreeSet<u8> = lines.iter().filter_map(|l| Some(tag_of(l)?.1)).collect();
            let block = (1..=250u8)
                .find(|b| !used.contains(b))
                .expect("a free address block");
            let tag = format!("{HOSTS_TAG} pid={} block={block}", std::process::id());
            let ips: Vec<Ipv4Addr> = (0..names.len())
                .map(|i| Ipv4Addr::new(127, 77, block, i as u8 + 1))
                .collect();
            for (name, ip) in names.iter().zip(&ips) {
                lines.push(format!("{ip} {name} {tag}"));
            }
            out = Some((HostsEntries { tag }, ips));
            lines
        })?;
        Ok(out.expect("edited"))
    }
}

impl Drop for HostsEntries {
    fn drop(&mut self) {
        let tag = format!("{} ", self.tag);
        let _ = edit_hosts(|lines| {
            lines
                .into_iter()
                .filter(|l| !format!("{l} ").contains(&tag))
                .collect()
        });
    }
}

/// `(pid, block)` of a line this harness wrote.
fn tag_of(line: &str) -> Option<(u32, u8)> {
    let rest = &line[line.find(HOSTS_TAG)? + HOSTS_TAG.len()..];
    let mut pid = None;
    let mut block = None;
    for word in rest.split_whitespace() {
        if let Some(v) = word.strip_prefix("pid=") {
            pid = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("block=") {
            block = v.parse().ok();
        }
    }
    Some((pid?, block?))
}

/// Rewrites `/etc/hosts` under a lock shared by every test process. The file is rewritten in
/// place (it may be a bind mount) and only lines after the system's own change, so a resolver
/// reading meanwhile always sees `localhost`.
fn edit_hosts(f: impl FnOnce(Vec<String>) -> Vec<String>) -> std::io::Result<()> {
    // A fixed path: test processes with different TMPDIRs must still exclude each other.
    let lock = File::create("/tmp/thanos-receiver-e2e-hosts.lock")?;
    lock.lock()?;
    let text = std::fs::read_to_string(HOSTS)?;
    let lines = f(text.lines().map(str::to_owned).collect());
    let mut new = lines.join("\n");
    new.push('\n');
    let mut file = OpenOptions::new().write(true).open(HOSTS)?;
    file.write_all(new.as_bytes())?;
    file.set_len(new.len() as u64)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_args_expand_env_bind_the_pod_address_and_map_mounts() {
        let args: Vec<String> = [
            "receive",
            "--tsdb.path=/data",
            "--grpc-address=0.0.0.0:10901",
            "--receive.hashrings-file=/etc/thanos/hashring/hashrings.json",
            "--receive.local-endpoint=$(POD_NAME).recv.mon.svc.cluster.local:10901",
            "--label=replica=\"$(POD_NAME)\"",
            "--objstore.config-file=/etc/thanos/objstore/objstore.yml",
            "--label=path=\"/data\"",
            "--tsdb.path=/database",
        ]
        .map(String::from)
        .to_vec();
        let env = vec![("POD_NAME".to_string(), "recv-2".to_string())];
        let mounts = vec![
            ("/data".to_string(), PathBuf::from("/t/pvc/data-recv-2")),
            ("/etc/thanos".to_string(), PathBuf::from("/t/wrong")),
            ("/etc/thanos/hashring".to_string(), PathBuf::from("/t/ring")),
            ("/etc/thanos/objstore".to_string(), PathBuf::from("/t/os")),
        ];
        let got = pod_args(&args, &env, &mounts, Ipv4Addr::new(127, 77, 1, 3));
        assert_eq!(
            got,
            [
                "receive",
                "--tsdb.path=/t/pvc/data-recv-2",
                "--grpc-address=127.77.1.3:10901",
                "--receive.hashrings-file=/t/ring/hashrings.json",
                "--receive.local-endpoint=recv-2.recv.mon.svc.cluster.local:10901",
                "--label=replica=\"recv-2\"",
                "--objstore.config-file=/t/os/objstore.yml",
                // A value that only looks like a path inside quotes, and a longer path with the
                // same prefix, stay as they are.
                "--label=path=\"/data\"",
                "--tsdb.path=/database",
            ]
        );
    }

    #[test]
    fn hosts_tags_name_their_process_and_block() {
        assert_eq!(
            tag_of("127.77.4.1 a.b.svc # thanos-receiver-e2e pid=42 block=4"),
            Some((42, 4))
        );
        assert_eq!(tag_of("127.0.0.1 localhost"), None);
    }
}

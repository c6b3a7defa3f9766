//! A real Kubernetes API server (kube-apiserver 1.20 on etcd) on loopback, for operator tests.
//!
//! No kubelet, scheduler or controller-manager runs: tests create pods and set their status
//! themselves, and nothing garbage-collects by owner reference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ::kube::config::{KubeConfigOptions, Kubeconfig};

use crate::free_port;

/// Bearer token of the admin user (group `system:masters`).
const ADMIN_TOKEN: &str = "e2e-admin-token";

/// A user the static token file knows, with no permissions until a test binds some.
#[derive(Debug, Clone, Copy)]
pub struct TokenUser {
    /// User name as RBAC subjects name it.
    pub name: &'static str,
    /// Its bearer token.
    pub token: &'static str,
}

/// The user the operator runs as in tests, bound to the Helm chart's ClusterRole.
pub const OPERATOR_USER: TokenUser = TokenUser {
    name: "thanos-receiver-operator",
    token: "e2e-operator-token",
};

/// The user a receiver runs as in tests.
pub const RECEIVER_USER: TokenUser = TokenUser {
    name: "thanos-receiver",
    token: "e2e-receiver-token",
};

/// Path of the kube-apiserver binary: `$KUBE_APISERVER`, else the cache `scripts/kube-apiserver.sh` fills.
pub fn kube_apiserver_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KUBE_APISERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = Path::new(&home).join(".cache/thanos-receiver/bin/kube-apiserver");
    assert!(
        path.exists(),
        "{} is missing: run scripts/kube-apiserver.sh once (it builds kube-apiserver 1.20 offline)",
        path.display()
    );
    path
}

/// etcd and kube-apiserver on loopback ports, both killed on drop.
pub struct KubeApiServer {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Child,
    /// The secure port.
    pub port: u16,
    /// A kubeconfig for the admin user.
    pub kubeconfig: PathBuf,
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    cmd.stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

impl KubeApiServer {
    /// Starts etcd and kube-apiserver and waits until the API answers (about 15 s).
    pub async fn start() -> KubeApiServer {
        // The receiver's object store pulls in rustls' aws-lc-rs backend next to kube's ring, and
        // rustls then refuses to pick one; an Err only means another test thread already did.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let etcd = spawn(
            Command::new("etcd")
                .arg(format!("--data-dir={}", d.join("etcd").display()))
                .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
                .arg(format!(
                    "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
                ))
                .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
                ))
                .arg(format!(
                    "--initial-cluster=default=http://127.0.0.1:{peer_port}"
                ))
                .arg("--log-level=warn"),
            &d.join("etcd.log"),
        );
        run(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(d.join("sa.key"))
            .arg("2048")
            .stderr(Stdio::null()));
        run(Command::new("openssl")
            .args(["rsa", "-pubout", "-in"])
            .arg(d.join("sa.key"))
            .arg("-out")
            .arg(d.join("sa.pub"))
            .stderr(Stdio::null()));
        let tokens = [
            format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\""),
            format!(
                "{},{},operator-uid",
                OPERATOR_USER.token, OPERATOR_USER.name
            ),
            format!(
                "{},{},receiver-uid",
                RECEIVER_USER.token, RECEIVER_USER.name
            ),
        ];
        std::fs::write(d.join("tokens.csv"), tokens.join("\n") + "\n").expect("token file");
        // Every request of the operator's user is logged, so a test can compare what the operator
        // calls with what its RBAC grants.
        std::fs::write(
            d.join("audit-policy.yaml"),
            format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  users: [{}]\n- level: None\n",
                OPERATOR_USER.name
            ),
        )
        .expect("audit policy");
        let apiserver = spawn(
            Command::new(kube_apiserver_bin())
                .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
                .arg(format!("--secure-port={port}"))
                .arg("--bind-address=127.0.0.1")
                .arg("--advertise-address=127.0.0.1")
                // 1.20 still opens an insecure port 8080 by default; parallel tests would collide.
                .arg("--insecure-port=0")
                .arg(format!("--cert-dir={}", d.join("certs").display()))
                .arg(format!(
                    "--token-auth-file={}",
                    d.join("tokens.csv").display()
                ))
                .arg("--authorization-mode=RBAC")
                .arg(format!(
                    "--service-account-key-file={}",
                    d.join("sa.pub").display()
                ))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    d.join("sa.key").display()
                ))
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg("--disable-admission-plugins=ServiceAccount")
                .arg("--service-cluster-ip-range=10.96.0.0/16")
                .arg("--enable-priority-and-fairness=false")
                .arg(format!(
                    "--audit-policy-file={}",
                    d.join("audit-policy.yaml").display()
                ))
                .arg(format!(
                    "--audit-log-path={}",
                    d.join("audit.log").display()
                ))
                .arg("--profiling=false")
                .arg("--logtostderr=true")
                .arg("--v=0"),
            &d.join("apiserver.log"),
        );
        let kubeconfig = d.join("admin.kubeconfig");
        let server = KubeApiServer {
            port,
            kubeconfig: kubeconfig.clone(),
            dir,
            etcd,
            apiserver,
        };
        std::fs::write(&kubeconfig, server.kubeconfig_yaml("admin", ADMIN_TOKEN))
            .expect("kubeconfig");
        server.wait_ready().await;
        server
    }

    fn kubeconfig_yaml(&self, user: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{}\n    insecure-skip-tls-verify: true\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: {user}\n    namespace: default\ncurrent-context: e2e\n",
            self.port
        )
    }

    /// Writes a kubeconfig for `user` and returns its path.
    pub fn kubeconfig_for(&self, user: TokenUser) -> PathBuf {
        let path = self.dir.path().join(format!("{}.kubeconfig", user.name));
        std::fs::write(&path, self.kubeconfig_yaml(user.name, user.token)).expect("kubeconfig");
        path
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = self.kubectl_output(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready in 120s; log tail:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The last lines of the API server's log.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The `(API group, resource[/subresource], verb)` of every request the operator's user made
    /// that the API server authorized.
    pub fn operator_requests(&self) -> BTreeSet<(String, String, String)> {
        let log = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| e["annotations"]["authorization.k8s.io/decision"] == "allow")
            .filter_map(|e| {
                let obj = e.get("objectRef")?;
                let resource = match obj["subresource"].as_str() {
                    Some(sub) => format!("{}/{sub}", obj["resource"].as_str()?),
                    None => obj["resource"].as_str()?.to_owned(),
                };
                Some((
                    obj["apiGroup"].as_str().unwrap_or("").to_owned(),
                    resource,
                    e["verb"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// An admin client.
    pub async fn client(&self) -> ::kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config =
            ::kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("client config");
        ::kube::Client::try_from(config).expect("client")
    }

    /// Runs kubectl as admin and returns its output.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl as admin, asserts success and returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_output(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Root of the workspace (for `crds/` and `charts/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

impl KubeApiServer {
    /// Installs the CRDs from `crds/` and the Helm chart's RBAC (ClusterRole, and the leader
    /// election Role in `default`), bound to [`OPERATOR_USER`], as an administrator would.
    pub async fn install_operator(&self) {
        let root = workspace_root();
        // kubectl validates against the server's schema, and 1.20 predates the CRD's CEL rules
        // (`x-kubernetes-validations`, 1.25+); the server itself drops them.
        self.kubectl(&[
            "apply",
            "--validate=false",
            "-f",
            &root.join("crds").display().to_string(),
        ]);
        let rbac = self.dir().join("rbac.yaml");
        std::fs::write(
            &rbac,
            crate::helm_template(&[
                "--namespace=default",
                "--set=replicas=2",
                "--show-only=templates/rbac.yaml",
            ]),
        )
        .expect("rendered RBAC");
        self.kubectl(&["apply", "-f", &rbac.display().to_string()]);
        let user = format!("--user={}", OPERATOR_USER.name);
        self.kubectl(&[
            "create",
            "clusterrolebinding",
            "thanos-receiver-operator-e2e",
            "--clusterrole=thanos-receiver",
            &user,
        ]);
        self.kubectl(&[
            "create",
            "rolebinding",
            "--namespace=default",
            "thanos-receiver-operator-e2e",
            "--role=thanos-receiver-leader-election",
            &user,
        ]);
        self.wait_crd_established().await;
    }

    /// Waits until the ThanosReceiver CRD is served. (`kubectl wait` 1.20 fails instead of
    /// waiting when it looks before the API server has written any condition.)
    pub async fn wait_crd_established(&self) {
        crate::eventually(
            Duration::from_secs(60),
            "the CRD to be established",
            || async {
                let out = self.kubectl_output(&[
                    "get",
                    "crd/thanosreceivers.receiver.thanos-rs.io",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ]);
                (String::from_utf8_lossy(&out.stdout).trim() == "True").then_some(())
            },
        )
        .await;
    }
}

/// A `thanos-receiver-operator` process running as [`OPERATOR_USER`], killed on drop.
pub struct Operator {
    child: Child,
    /// Port of `/metrics`, `/healthz`, `/readyz`.
    pub metrics_port: u16,
    /// Its Lease identity.
    pub identity: String,
    log: PathBuf,
}

impl Operator {
    /// Starts the operator binary against `server` with a short Lease.
    pub fn start(server: &KubeApiServer, identity: &str) -> Operator {
        let metrics_port = free_port();
        let log = server.dir().join(format!("operator-{identity}.log"));
        let child = spawn(
            Command::new(crate::bin("thanos-receiver-operator"))
                .arg(format!(
                    "--kubeconfig={}",
                    server.kubeconfig_for(OPERATOR_USER).display()
                ))
                .arg(format!("--metrics-address=127.0.0.1:{metrics_port}"))
                .arg("--lease-namespace=default")
                .arg(format!("--lease-identity={identity}"))
                .arg("--lease-duration-seconds=4")
                .env("RUST_LOG", "info,operator=debug,kube=warn"),
            &log,
        );
        Operator {
            child,
            metrics_port,
            identity: identity.to_owned(),
            log,
        }
    }

    /// The operator's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process (as a crash would: the Lease is not released).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panics with the log when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("polling operator") {
            panic!("operator exited with {status}; log:\n{}", self.log_text());
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates pod `ordinal` of `statefulset` from its template, as the StatefulSet controller would.
pub async fn create_pod(
    client: &::kube::Client,
    statefulset: &k8s_openapi::api::apps::v1::StatefulSet,
    ordinal: u32,
) -> k8s_openapi::api::core::v1::Pod {
    use ::kube::ResourceExt;
    use ::kube::api::{Api, PostParams};
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume};

    let ns = statefulset.namespace().expect("namespace");
    let spec = statefulset.spec.as_ref().expect("statefulset spec");
    let mut pod_spec = spec.template.spec.clone().expect("pod template");
    // The controller adds a volume per claim template; an emptyDir stands in for the PVC.
    for claim in spec.volume_claim_templates.iter().flatten() {
        pod_spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: claim.name_any(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    let mut metadata = spec.template.metadata.clone().unwrap_or_default();
    metadata.name = Some(format!("{}-{ordinal}", statefulset.name_any()));
    metadata.namespace = Some(ns.clone());
    let pod = Pod {
        metadata,
        spec: Some(pod_spec),
        ..Pod::default()
    };
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &pod)
        .await
        .expect("creating pod")
}

/// Sets a pod's Ready condition through the status subresource, as the kubelet would.
pub async fn set_pod_ready(client: &::kube::Client, ns: &str, name: &str, ready: bool) {
    use ::kube::api::{Api, Patch, PatchParams};
    use k8s_openapi::api::core::v1::Pod;

    let status = if ready { "True" } else { "False" };
    let patch = serde_json::json!({
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": status}],
        }
    });
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching pod status");
}

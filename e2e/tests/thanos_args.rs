//! Thanos users' own argument lists start the receiver unchanged and it ingests: kube-thanos'
//! receive StatefulSets and router Deployment (copied verbatim from its manifests) and the Thanos
//! docs' example. Only what Kubernetes itself would do is done to them: `$(VAR)` references are
//! expanded from the pod's environment. The listen ports and paths are then moved to loopback
//! ports and a temporary directory so tests can run side by side; nothing else changes. Also: a
//! ring's `external_labels` from `hashrings.json` reach the blocks of the tenants it lists.

use std::path::Path;

use e2e::{Receiver, free_port, load_request, now_ms, post_v1};

/// kube-thanos `manifests/thanos-receive-ingestor-default-statefulSet.yaml`.
const INGESTOR: &[&str] = &[
    "receive",
    "--log.level=info",
    "--log.format=logfmt",
    "--grpc-address=0.0.0.0:10901",
    "--http-address=0.0.0.0:10902",
    "--remote-write.address=0.0.0.0:19291",
    "--receive.replication-factor=1",
    "--tsdb.path=/var/thanos/receive",
    "--tsdb.retention=15d",
    "--label=replica=\"$(NAME)\"",
    "--label=receive=\"true\"",
    "--receive.local-endpoint=$(NAME).thanos-receive-ingestor-default.$(NAMESPACE):10901",
    "--receive.hashrings-file=/var/lib/thanos-receive/hashrings.json",
];

/// kube-thanos `manifests/thanos-receive-router-deployment.yaml`.
const ROUTER: &[&str] = &[
    "receive",
    "--log.level=info",
    "--log.format=logfmt",
    "--grpc-address=0.0.0.0:10901",
    "--http-address=0.0.0.0:10902",
    "--remote-write.address=0.0.0.0:19291",
    "--receive.replication-factor=1",
    "--receive.hashrings-file=/var/lib/thanos-receive/hashrings.json",
    "--label=replica=\"$(NAME)\"",
    "--label=receive=\"true\"",
];

/// kube-thanos `examples/all/manifests/thanos-receive-default-statefulSet.yaml`: RF=2, the
/// objstore config inline from a Secret, and a multi-line tracing config.
const DEFAULT: &[&str] = &[
    "receive",
    "--log.level=info",
    "--log.format=logfmt",
    "--grpc-address=0.0.0.0:10901",
    "--http-address=0.0.0.0:10902",
    "--remote-write.address=0.0.0.0:19291",
    "--receive.replication-factor=2",
    "--tsdb.path=/var/thanos/receive",
    "--tsdb.retention=15d",
    "--label=replica=\"$(NAME)\"",
    "--label=receive=\"true\"",
    "--objstore.config=$(OBJSTORE_CONFIG)",
    "--receive.local-endpoint=$(NAME).thanos-receive-default.$(NAMESPACE):10901",
    "--receive.hashrings-file=/var/lib/thanos-receive/hashrings.json",
    "--tracing.config=\"config\":\n  \"sampler_param\": 2\n  \"sampler_type\": \"ratelimiting\"\n  \"service_name\": \"thanos-receive\"\n\"type\": \"JAEGER\"",
];

/// The Thanos docs' example (`docs/components/receive.md`), values after spaces.
const DOCS: &[&str] = &[
    "receive",
    "--tsdb.path",
    "/path/to/receive/data/dir",
    "--grpc-address",
    "0.0.0.0:10907",
    "--http-address",
    "0.0.0.0:10909",
    "--receive.replication-factor",
    "1",
    "--label",
    "receive_replica=\"0\"",
    "--label",
    "receive_cluster=\"eu1\"",
    "--receive.local-endpoint",
    "127.0.0.1:10907",
    "--receive.hashrings-file",
    "./data/hashring.json",
    "--remote-write.address",
    "0.0.0.0:10908",
    "--objstore.config-file",
    "bucket.yml",
];

/// A pod: its environment, and the loopback ports that stand in for its container ports.
struct Pod<'a> {
    env: &'a [(&'a str, String)],
    ports: [(&'a str, u16); 3],
    dir: &'a Path,
}

impl Pod<'_> {
    /// `args` as the kubelet would pass them, then moved to loopback ports and `dir`.
    fn args(&self, args: &[&str]) -> Vec<String> {
        args.iter()
            .map(|a| {
                let mut a = a.to_string();
                for (name, value) in self.env {
                    a = a.replace(&format!("$({name})"), value);
                }
                for (from, to) in self.ports {
                    a = a.replace(&format!("0.0.0.0:{from}"), &format!("127.0.0.1:{to}"));
                    a = a.replace(&format!("127.0.0.1:{from}"), &format!("127.0.0.1:{to}"));
                }
                for path in [
                    "/var/thanos/receive",
                    "/var/lib/thanos-receive/hashrings.json",
                    "/path/to/receive/data/dir",
                    "./data/hashring.json",
                    "bucket.yml",
                ] {
                    if a == path || a.ends_with(&format!("={path}")) {
                        a = a.replace(
                            path,
                            &self
                                .dir
                                .join(path.trim_start_matches(['.', '/']))
                                .display()
                                .to_string(),
                        );
                    }
                }
                a
            })
            .collect()
    }

    fn start(&self, args: &[&str]) -> Receiver {
        let ports = [self.ports[2].1, self.ports[1].1, self.ports[0].1];
        Receiver::start_exact(self.dir, ports, &self.args(args))
    }
}

fn write_ring(dir: &Path, file: &str, endpoints: &[String]) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    e2e::write_atomic(&path, &e2e::ring_json(endpoints, "hashmod"));
}

async fn ingest(client: &reqwest::Client, recv: &Receiver, run: &str) {
    for i in 0..3 {
        let (status, reason) = post_v1(
            client,
            &recv.write_url(),
            load_request(run, 50, now_ms() + i * 1000),
            None,
        )
        .await;
        assert_eq!(status, 200, "{reason}\n{}", recv.log_text());
    }
}

fn ports(grpc: u16, http: u16, rw: u16) -> [(&'static str, u16); 3] {
    [("10901", grpc), ("10902", http), ("19291", rw)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_thanos_router_and_ingestor_arguments_start_and_ingest() {
    let client = reqwest::Client::new();
    let ingestor_dir = tempfile::tempdir().unwrap();
    let (grpc, http, rw) = (free_port(), free_port(), free_port());
    let env = [
        ("NAME", "thanos-receive-ingestor-default-0".to_owned()),
        ("NAMESPACE", "thanos".to_owned()),
    ];
    let ingestor_pod = Pod {
        env: &env,
        ports: ports(grpc, http, rw),
        dir: ingestor_dir.path(),
    };
    // The hashring the kube-thanos controller would write: the ingestor under its pod DNS name.
    let me = "thanos-receive-ingestor-default-0.thanos-receive-ingestor-default.thanos:10901";
    write_ring(
        ingestor_dir.path(),
        "var/lib/thanos-receive/hashrings.json",
        &[me.to_owned()],
    );
    let mut ingestor = ingestor_pod.start(INGESTOR);
    ingestor.wait_ready(&client).await;
    ingest(&client, &ingestor, "ingestor").await;
    assert_eq!(e2e::head_series(&client, &ingestor).await, 50);

    // The router: no local endpoint, no TSDB; its ring names the ingestor at its loopback port.
    let router_dir = tempfile::tempdir().unwrap();
    let (rgrpc, rhttp, rrw) = (free_port(), free_port(), free_port());
    let renv = [("NAME", "thanos-receive-router-5d8f".to_owned())];
    let router_pod = Pod {
        env: &renv,
        ports: ports(rgrpc, rhttp, rrw),
        dir: router_dir.path(),
    };
    write_ring(
        router_dir.path(),
        "var/lib/thanos-receive/hashrings.json",
        &[format!("127.0.0.1:{grpc}")],
    );
    let mut router = router_pod.start(ROUTER);
    router.wait_ready(&client).await;
    ingest(&client, &router, "routed").await;
    assert_eq!(e2e::head_series(&client, &ingestor).await, 100);
    assert_eq!(e2e::head_series(&client, &router).await, 0);
    assert!(router.terminate().success());
    assert!(ingestor.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_thanos_default_statefulset_and_docs_arguments_start_ingest_and_upload() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let (grpc, http, rw) = (free_port(), free_port(), free_port());
    let env = [
        ("NAME", "thanos-receive-default-0".to_owned()),
        ("NAMESPACE", "thanos".to_owned()),
        (
            "OBJSTORE_CONFIG",
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                bucket.display()
            ),
        ),
    ];
    let pod = Pod {
        env: &env,
        ports: ports(grpc, http, rw),
        dir: dir.path(),
    };
    // RF=2 over this receiver and a peer that is not up: quorum 1, as Thanos.
    write_ring(
        dir.path(),
        "var/lib/thanos-receive/hashrings.json",
        &[
            "thanos-receive-default-0.thanos-receive-default.thanos:10901".to_owned(),
            format!("127.0.0.1:{}", free_port()),
        ],
    );
    let mut recv = pod.start(DEFAULT);
    recv.wait_ready(&client).await;
    ingest(&client, &recv, "default").await;
    assert!(
        recv.log_text()
            .contains("--tracing.config: accepted and ignored"),
        "{}",
        recv.log_text()
    );
    assert!(recv.terminate().success(), "{}", recv.log_text());
    // --objstore.config (inline, from the Secret's env var) took effect: the head was uploaded.
    let uploaded = std::fs::read_dir(&bucket).unwrap().count();
    assert!(uploaded >= 1, "nothing in {}", bucket.display());

    // The docs' example: values after spaces, the ring and bucket files beside the data.
    let docs_dir = tempfile::tempdir().unwrap();
    let (dgrpc, dhttp, drw) = (free_port(), free_port(), free_port());
    let docs_pod = Pod {
        env: &[],
        ports: [("10907", dgrpc), ("10909", dhttp), ("10908", drw)],
        dir: docs_dir.path(),
    };
    write_ring(
        docs_dir.path(),
        "data/hashring.json",
        &[format!("127.0.0.1:{dgrpc}")],
    );
    std::fs::write(
        docs_dir.path().join("bucket.yml"),
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            docs_dir.path().join("docs-bucket").display()
        ),
    )
    .unwrap();
    let mut docs = docs_pod.start(DOCS);
    docs.wait_ready(&client).await;
    ingest(&client, &docs, "docs").await;
    assert_eq!(e2e::head_series(&client, &docs).await, 50);
    assert!(docs.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rings_external_labels_reach_the_blocks_of_the_tenants_it_lists() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let (rw, http, grpc) = (free_port(), free_port(), free_port());
    let me = format!("127.0.0.1:{grpc}");
    let ring = dir.path().join("hashrings.json");
    e2e::write_atomic(
        &ring,
        &format!(
            r#"[{{"hashring":"eu","tenants":["team-eu"],"external_labels":{{"region":"eu","replica":"from-ring"}},"endpoints":["{me}"]}},
                {{"hashring":"default","endpoints":["{me}"]}}]"#
        ),
    );
    let mut recv = Receiver::start_on(
        &dir.path().join("data"),
        rw,
        http,
        grpc,
        &[
            format!("--receive.hashrings-file={}", ring.display()),
            format!("--receive.local-endpoint={me}"),
            "--label=replica=\"r0\"".into(),
        ],
    );
    recv.wait_ready(&client).await;
    for tenant in ["team-eu", "other"] {
        let (s, b) = post_v1(
            &client,
            &recv.write_url(),
            load_request(tenant, 5, now_ms()),
            Some(tenant),
        )
        .await;
        assert_eq!(s, 200, "{b}");
    }
    assert!(recv.terminate().success());
    let labels_of = |tenant: &str| -> serde_json::Value {
        let tenant_dir = dir.path().join("data").join(tenant);
        let block = e2e::block_dirs(&tenant_dir)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no block for {tenant}"));
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(block.join("meta.json")).unwrap()).unwrap();
        meta["thanos"]["labels"].clone()
    };
    // The ring's labels are added; the receiver's own --label wins a conflict, as in Thanos.
    assert_eq!(
        labels_of("team-eu"),
        serde_json::json!({"region": "eu", "replica": "r0", "tenant_id": "team-eu"})
    );
    assert_eq!(
        labels_of("other"),
        serde_json::json!({"replica": "r0", "tenant_id": "other"})
    );
}

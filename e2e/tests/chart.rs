//! The Helm chart and the monitoring mixin as a user installs them: `helm lint --strict`, objects
//! that Kubernetes 1.30 accepts with the security settings a hardened cluster demands, alerts that
//! fire when they should, dashboard queries that parse, every `ThanosReceiver` example valid
//! against the CRD, the rendered chart applied to a real API server, and the objects the operator
//! renders for a ThanosReceiver (HPA and PDB included) valid for Kubernetes 1.30.

use std::path::Path;
use std::process::Command;

use e2e::helm_template;
use e2e::kube::{KubeApiServer, workspace_root};
use e2e::tools::{chart_dir, tool};
use serde::Deserialize as _;
use serde_yaml::Value;

/// Values that turn every optional part of the chart on.
const ALL_ON: &[&str] = &[
    "--set=replicas=2",
    "--set=watchNamespaces={monitoring}",
    "--set=monitoring.serviceMonitor.enabled=true",
    "--set=monitoring.prometheusRule.enabled=true",
    "--set=monitoring.dashboard.enabled=true",
    "--set=exampleReceiver.enabled=true",
    "--set=exampleReceiver.certManager.enabled=true",
    "--set=exampleReceiver.certManager.issuerRef.name=ca-issuer",
];

fn objects(rendered: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(rendered)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> Vec<&str> {
    objs.iter().filter_map(|o| o["kind"].as_str()).collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Validates the built-in kinds among `objs` against Kubernetes 1.30 schemas, unknown fields refused.
fn validate_k8s_130(objs: &[Value], dir: &Path) {
    let builtin: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            ![
                "ThanosReceiver",
                "ServiceMonitor",
                "PrometheusRule",
                "Certificate",
            ]
            .contains(&o["kind"].as_str().unwrap_or(""))
        })
        .collect();
    let file = dir.join("builtin.yaml");
    let docs: Vec<String> = builtin
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect();
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let out = run(Command::new(tool("kubernetes-validate"))
        .args(["-k", "1.30.0", "--strict"])
        .arg(&file));
    assert_eq!(
        out.matches("passed for resource").count(),
        builtin.len(),
        "{out}"
    );
}

fn deployment(objs: &[Value]) -> &Value {
    objs.iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment")
}

#[test]
fn chart_lints_and_renders_hardened_valid_objects_with_defaults_and_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let helm = tool("helm");
    run(Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart_dir()));
    run(Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .args(ALL_ON));

    // Defaults: cluster-wide RBAC, one replica without leader election, no monitoring objects.
    let defaults = objects(&helm_template(&["--namespace=ops"]));
    assert_eq!(
        kinds(&defaults),
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Service",
            "Deployment"
        ]
    );
    validate_k8s_130(&defaults, dir.path());
    let pod = &deployment(&defaults)["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--leader-elect=false"), "{args:?}");
    assert!(
        args.contains(&"--receiver-image=ghcr.io/thanos-rs/thanos-receiver:0.1.0"),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "{args:?}"
    );

    // Every option: a Role in the watched namespace instead of a ClusterRole, leader election
    // with its Lease Role, the monitoring objects and the example resource.
    let all = objects(&helm_template(&[&["--namespace=ops"][..], ALL_ON].concat()));
    let k = kinds(&all);
    assert!(
        !k.contains(&"ClusterRole") && !k.contains(&"ClusterRoleBinding"),
        "{k:?}"
    );
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "ThanosReceiver",
        "ConfigMap",
        "Certificate",
    ] {
        assert!(k.contains(&kind), "{kind} missing from {k:?}");
    }
    // The example receiver's certificate covers the ring endpoints the operator writes, and the
    // receiver uses it.
    let cert = all.iter().find(|o| o["kind"] == "Certificate").unwrap();
    let example: operator::crd::ThanosReceiver = serde_yaml::from_value(
        all.iter()
            .find(|o| o["kind"] == "ThanosReceiver")
            .unwrap()
            .clone(),
    )
    .unwrap();
    assert_eq!(
        Some(cert["spec"]["secretName"].as_str().unwrap()),
        example.spec.tls.as_ref().map(|t| t.secret_name.as_str())
    );
    let names = operator::build::Names::new(&example, "cluster.local");
    let host = names.endpoint(2).rsplit_once(':').unwrap().0.to_owned();
    let wildcard = format!("*.{}", host.split_once('.').unwrap().1);
    assert!(
        cert["spec"]["dnsNames"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|d| d == &Value::from(wildcard.clone())),
        "{wildcard} not in {:?}",
        cert["spec"]["dnsNames"]
    );
    assert_eq!(
        cert["spec"]["usages"],
        serde_yaml::from_str::<Value>("[server auth, client auth]").unwrap()
    );
    let roles: Vec<(&str, &str)> = all
        .iter()
        .filter(|o| o["kind"] == "Role")
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("monitoring", "thanos-receiver"),
            ("ops", "thanos-receiver-leader-election")
        ]
    );
    validate_k8s_130(&all, dir.path());
    let args = serde_yaml::to_string(
        &deployment(&all)["spec"]["template"]["spec"]["containers"][0]["args"],
    )
    .unwrap();
    assert!(
        args.contains("--leader-elect=true") && args.contains("--namespace=monitoring"),
        "{args}"
    );

    // The PrometheusRule carries exactly the unit-tested alerts file.
    let rule = all.iter().find(|o| o["kind"] == "PrometheusRule").unwrap();
    let alerts: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("files/alerts.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"], alerts);

    // The chart ships the CRDs `make crds` generates, byte for byte.
    let name = "thanosreceivers.receiver.thanos-rs.io.yaml";
    assert_eq!(
        std::fs::read_to_string(chart_dir().join("crds").join(name)).unwrap(),
        std::fs::read_to_string(workspace_root().join("crds").join(name)).unwrap(),
        "the chart's crds/ is stale: run make crds"
    );
}

#[test]
fn alerts_fire_when_they_should_and_dashboard_queries_parse() {
    let files = chart_dir().join("files");
    let promtool = tool("promtool");
    run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(files.join("alerts.yaml")));
    let out = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(files.join("alerts_test.yaml")));
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has a unit test.
    let alerts = std::fs::read_to_string(files.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(files.join("alerts_test.yaml")).unwrap();
    for line in alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {line}\n")),
            "alert {line} has no unit test"
        );
    }

    // The dashboard parses, and each query (panels and variables) parses as PromQL once Grafana's
    // own variables are given values.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("dashboard.json")).unwrap())
            .expect("dashboard JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = var["query"]
            .as_str()
            .and_then(|q| q.strip_prefix("label_values("))
        {
            let selector = q.rsplit_once(',').map_or(q, |(s, _)| s);
            exprs.push(selector.to_owned());
        }
    }
    assert!(exprs.len() > 15, "{} queries", exprs.len());
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({"record": format!("dashboard:query{i}"), "expr": e.replace("$__rate_interval", "5m")})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(
        &file,
        serde_yaml::to_string(
            &serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let out = run(Command::new(&promtool).args(["check", "rules"]).arg(&file));
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}"
    );
}

#[test]
fn thanos_receiver_examples_are_valid_and_misspelt_fields_are_refused() {
    let check = |path: &Path| {
        Command::new(tool("python3"))
            .arg(workspace_root().join("scripts/check-receivers.py"))
            .arg(path)
            .output()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let example = dir.path().join("example.yaml");
    std::fs::write(
        &example,
        helm_template(&[
            "--set=exampleReceiver.enabled=true",
            "--show-only=templates/example-receiver.yaml",
        ]),
    )
    .unwrap();
    for path in [workspace_root().join("README.md"), example] {
        let out = check(&path);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("ok "),
            "{}: {text}",
            path.display()
        );
    }
    // The spelling the README once had: the API server would drop it and keep the default.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata: {name: r}\nspec:\n  autoscaling: {minReplicas: 3, maxReplicas: 9, targetCPUUtilizationPercentage: 70}\n",
    )
    .unwrap();
    let out = check(&bad);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("targetCPUUtilizationPercentage"),
        "{text}"
    );
}

#[tokio::test]
async fn the_rendered_chart_applies_to_a_real_api_server() {
    let server = KubeApiServer::start().await;
    // kubectl validates against the server's schema, and 1.20 predates the CRD's CEL rules.
    server.kubectl(&[
        "apply",
        "--validate=false",
        "-f",
        &chart_dir().join("crds").display().to_string(),
    ]);
    server.wait_crd_established().await;
    server.kubectl(&["create", "namespace", "ops"]);
    server.kubectl(&["create", "namespace", "monitoring"]);
    // cert-manager's Certificate type (cut down to the fields we use), for the example
    // receiver's certificate and the README's TLS example.
    server.kubectl(&[
        "apply",
        "-f",
        &workspace_root()
            .join("e2e/testdata/certificate-crd.yaml")
            .display()
            .to_string(),
    ]);
    e2e::eventually(
        std::time::Duration::from_secs(30),
        "the Certificate CRD served",
        || async {
            server
                .kubectl_output(&["get", "certificates.cert-manager.io", "-A"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    // The Prometheus Operator's CRDs are not installed here: everything but its two kinds.
    let rendered = helm_template(&[
        "--namespace=ops",
        "--set=replicas=2",
        "--set=watchNamespaces={monitoring}",
        "--set=monitoring.dashboard.enabled=true",
        "--set=exampleReceiver.enabled=true",
        "--set=exampleReceiver.certManager.enabled=true",
        "--set=exampleReceiver.certManager.issuerRef.name=ca-issuer",
    ]);
    let file = server.dir().join("chart.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let out = server.kubectl(&["apply", "--server-side", "-f", &file.display().to_string()]);
    let applied = out.lines().count();
    assert_eq!(applied, objects(&rendered).len(), "{out}");
    let image = server.kubectl(&[
        "get",
        "deployment",
        "-n",
        "ops",
        "thanos-receiver",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "ghcr.io/thanos-rs/thanos-receiver-operator:0.1.0");
    // The smallest ThanosReceiver is accepted, and the API server fills in the defaults.
    let example = server.kubectl(&[
        "get",
        "thanosreceiver",
        "-n",
        "ops",
        "thanos-receive",
        "-o",
        "jsonpath={.spec.replicas}/{.spec.replicationFactor}",
    ]);
    assert_eq!(example, "3/3");
    // And the README's examples, as a user pastes them.
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut found = 0;
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap();
        if block.contains("kind: ThanosReceiver") {
            let f = server.dir().join(format!("readme-{found}.yaml"));
            std::fs::write(&f, block).unwrap();
            server.kubectl(&[
                "apply",
                "--server-side",
                "--namespace=monitoring",
                "-f",
                &f.display().to_string(),
            ]);
            found += 1;
        }
    }
    assert!(found >= 2, "README has {found} ThanosReceiver examples");
}

#[test]
fn rendered_receiver_objects_validate_against_kubernetes_1_30() {
    // The README's production example, HPA and PDB included, rendered by the operator's own
    // builders (`render`), as a GitOps pipeline would.
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let example = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("kind: ThanosReceiver") && b.contains("autoscaling:"))
        .expect("the README's production example");
    let dir = tempfile::tempdir().unwrap();
    let cr = dir.path().join("recv.yaml");
    std::fs::write(&cr, example).unwrap();
    let rendered = run(Command::new(e2e::bin("thanos-receiver-operator"))
        .args(["render", "-f"])
        .arg(&cr));
    let objs = objects(&rendered);
    let k = kinds(&objs);
    for kind in [
        "StatefulSet",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Role",
    ] {
        assert!(k.contains(&kind), "{kind} missing from {k:?}");
    }
    validate_k8s_130(&objs, dir.path());
    // A spec the API server would refuse is refused here too, with the reason.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: receiver.thanos-rs.io/v1alpha1\nkind: ThanosReceiver\nmetadata: {name: r}\nspec: {replicas: 1, replicationFactor: 3}\n",
    )
    .unwrap();
    let out = Command::new(e2e::bin("thanos-receiver-operator"))
        .args(["render", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must not exceed replicas"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

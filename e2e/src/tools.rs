//! The command-line tools `scripts/setup.sh` installs (helm, kubernetes-validate, umoci, ...), found
//! on `PATH` or where the set-up caches them, and the Helm chart rendered with them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;

use crate::kube::workspace_root;

/// Path of the `name` tool: from the set-up's cache (`bin/`, then the virtualenv, whose
/// `python3` has the packages the checks import), else on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cache = Path::new(&home).join(".cache/thanos-receiver");
    let cached = [cache.join("bin"), cache.join("venv/bin")];
    let path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    cached
        .iter()
        .chain(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is missing: run scripts/setup.sh test"))
}

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/thanos-receiver")
}

/// `(API group, resource, verb)` of every rule the chart grants the operator with leader election
/// on: its ClusterRole and its Lease Role.
pub fn chart_rules() -> BTreeSet<(String, String, String)> {
    let rendered = helm_template(&["--set=replicas=2", "--show-only=templates/rbac.yaml"]);
    let mut out = BTreeSet::new();
    for doc in serde_yaml::Deserializer::from_str(&rendered) {
        let obj = serde_yaml::Value::deserialize(doc).expect("rendered YAML");
        let strings = |v: &serde_yaml::Value| -> Vec<String> {
            v.as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        for rule in obj["rules"].as_sequence().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.insert((group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    out
}

/// `helm template thanos-receiver <chart> ARGS`: the chart rendered as release `thanos-receiver`.
pub fn helm_template(args: &[&str]) -> String {
    let out = Command::new(tool("helm"))
        .arg("template")
        .arg("thanos-receiver")
        .arg(chart_dir())
        .args(args)
        .output()
        .expect("running helm");
    assert!(
        out.status.success(),
        "helm template {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

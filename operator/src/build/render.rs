//! Every object the operator would apply for a `ThanosReceiver` once all its receivers are Ready,
//! from the same builders, without a cluster: `thanos-receiver-operator render -f cr.yaml` (for
//! GitOps and review).

use std::collections::BTreeSet;

use kube::ResourceExt;
use serde::Serialize;

use super::{
    Names, hashring_configmap, hashrings, headless_service, horizontal_pod_autoscaler,
    pod_disruption_budget, remote_write_service, role, role_binding, service_account,
    service_monitor, statefulset,
};
use crate::crd::ThanosReceiver;

/// Why a resource cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The spec breaks a rule the API server (or the operator) would refuse.
    #[error("invalid ThanosReceiver {name}: {problems}")]
    Invalid {
        /// The resource.
        name: String,
        /// What is wrong, `; `-separated.
        problems: String,
    },
    /// An object could not be written as YAML.
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The objects of `tr` as YAML documents, in the order the operator applies them; a resource
/// without a namespace is rendered into `default`.
pub fn render(
    tr: &ThanosReceiver,
    cluster_domain: &str,
    receiver_image: &str,
) -> Result<String, RenderError> {
    let problems = tr.spec.problems();
    if !problems.is_empty() {
        return Err(RenderError::Invalid {
            name: tr.name_any(),
            problems: problems.join("; "),
        });
    }
    let mut tr = tr.clone();
    if tr.metadata.namespace.is_none() {
        tr.metadata.namespace = Some("default".into());
    }
    let names = Names::new(&tr, cluster_domain);
    let members: BTreeSet<u32> = (0..u32::try_from(tr.spec.replicas).unwrap_or(0)).collect();
    let json = hashring::to_json(&hashrings(&tr, &names, &members));
    let mut docs = vec![
        yaml(&service_account(&tr, &names))?,
        yaml(&role(&tr, &names))?,
        yaml(&role_binding(&tr, &names))?,
        yaml(&headless_service(&tr, &names))?,
        yaml(&remote_write_service(&tr, &names))?,
        yaml(&ring_configmap(&tr, &names, json))?,
        yaml(&statefulset(&tr, &names, tr.spec.replicas, receiver_image))?,
    ];
    if let Some(a) = &tr.spec.autoscaling {
        docs.push(yaml(&horizontal_pod_autoscaler(&tr, &names, a))?);
    }
    if tr.spec.pod_disruption_budget.enabled {
        docs.push(yaml(&pod_disruption_budget(&tr, &names))?);
    }
    if tr.spec.service_monitor.enabled {
        // A DynamicObject carries its own apiVersion and kind.
        docs.push(serde_yaml::to_string(&service_monitor(&tr, &names))?);
    }
    Ok(docs.join("---\n"))
}

/// The ring ConfigMap without its ring-change time, which only a running operator knows (it
/// treats a ring without one as settled).
fn ring_configmap(
    tr: &ThanosReceiver,
    names: &Names,
    json: String,
) -> k8s_openapi::api::core::v1::ConfigMap {
    let mut cm = hashring_configmap(tr, names, json, "");
    if let Some(a) = cm.metadata.annotations.as_mut() {
        a.remove(super::RING_CHANGED_AT_ANNOTATION);
    }
    cm
}

/// `obj` with its `apiVersion` and `kind`, as YAML.
fn yaml<K: kube::Resource<DynamicType = ()> + Serialize>(obj: &K) -> Result<String, RenderError> {
    let mut value = serde_yaml::to_value(obj)?;
    if let serde_yaml::Value::Mapping(m) = &mut value {
        m.insert("apiVersion".into(), K::api_version(&()).into());
        m.insert("kind".into(), K::kind(&()).into());
    }
    Ok(serde_yaml::to_string(&value)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    #[test]
    fn renders_every_object_the_operator_applies() {
        let mut tr = receiver("recv", "mon", 3);
        tr.spec.autoscaling = Some(
            serde_json::from_value(serde_json::json!({"minReplicas": 3, "maxReplicas": 9}))
                .unwrap(),
        );
        tr.spec.service_monitor.enabled = true;
        let out = render(&tr, "cluster.local", "r:1").unwrap();
        let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| {
                let v = <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap();
                v["kind"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "Service",
                "Service",
                "ConfigMap",
                "StatefulSet",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
                "ServiceMonitor"
            ]
        );
        assert!(
            out.contains("recv-2.recv.mon.svc.cluster.local:10901"),
            "{out}"
        );
        let mut bad = tr.clone();
        bad.spec.replication_factor = 5;
        assert!(render(&bad, "cluster.local", "r:1").is_err());
    }
}

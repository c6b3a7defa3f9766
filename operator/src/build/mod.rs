//! Builders: one pure function per Kubernetes object, from a `ThanosReceiver` to the desired object.

mod configmap;
mod hpa;
mod pdb;
mod rbac;
mod render;
mod service;
mod servicemonitor;
mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::ThanosReceiver;
use hashring::contract;

pub use configmap::{RING_CHANGED_AT_ANNOTATION, hashring_configmap, hashrings};
pub use hpa::horizontal_pod_autoscaler;
pub use pdb::{max_unavailable, pod_disruption_budget};
pub use rbac::{role, role_binding, service_account};
pub use render::{RenderError, render};
pub use service::{
    PEERS_SERVICE, REMOTE_WRITE_SERVICE, SERVICE_LABEL, headless_service, remote_write_service,
};
pub use servicemonitor::{service_monitor, service_monitor_resource};
pub use statefulset::{
    DEFAULT_IMAGE_REPOSITORY, default_image, keep_claim_templates, receiver_args, statefulset,
};

/// gRPC port (replication and StoreAPI); the port of ring endpoints.
pub const GRPC_PORT: i32 = contract::GRPC_PORT as i32;
/// HTTP port (`/metrics`, `/-/ready`, `/-/healthy`).
pub const HTTP_PORT: i32 = contract::HTTP_PORT as i32;
/// Remote-write port.
pub const REMOTE_WRITE_PORT: i32 = contract::REMOTE_WRITE_PORT as i32;
/// Key of the hashring ConfigMap that holds the Thanos `hashrings.json`.
pub const HASHRINGS_KEY: &str = contract::HASHRINGS_KEY;
/// Value of `app.kubernetes.io/name` on everything the operator creates.
pub const APP_NAME: &str = "thanos-receiver";
/// Value of `app.kubernetes.io/managed-by`, also the server-side-apply field manager.
pub const MANAGER: &str = "thanos-receiver-operator";

/// Names of the objects of one `ThanosReceiver`, and the DNS names of its receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Name of the resource; also the StatefulSet, headless Service, HPA and PDB.
    pub name: String,
    /// Namespace of the resource and all its objects.
    pub namespace: String,
    /// Cluster DNS domain (`cluster.local`).
    pub cluster_domain: String,
}

impl Names {
    /// Names for `tr` in a cluster whose DNS domain is `cluster_domain`.
    pub fn new(tr: &ThanosReceiver, cluster_domain: &str) -> Self {
        Names {
            name: tr.name_any(),
            namespace: tr.namespace().unwrap_or_default(),
            cluster_domain: cluster_domain.to_owned(),
        }
    }

    /// The remote-write ClusterIP Service.
    pub fn remote_write_service(&self) -> String {
        format!("{}-remote-write", self.name)
    }

    /// The hashring ConfigMap.
    pub fn configmap(&self) -> String {
        format!("{}-hashring", self.name)
    }

    /// The receivers' ServiceAccount, Role and RoleBinding.
    pub fn receiver_identity(&self) -> String {
        format!("{}-receiver", self.name)
    }

    /// The pod of `ordinal`.
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// Suffix of every receiver's DNS name after its pod name: `.N.NS.svc.<domain>:10901`.
    fn endpoint_suffix(&self) -> String {
        format!(
            ".{}.{}.svc.{}:{GRPC_PORT}",
            self.name, self.namespace, self.cluster_domain
        )
    }

    /// The ring endpoint of `ordinal`: `N-<i>.N.NS.svc.<domain>:10901`.
    pub fn endpoint(&self, ordinal: u32) -> String {
        format!("{}{}", self.pod(ordinal), self.endpoint_suffix())
    }

    /// The ordinal of a ring endpoint written by [`Names::endpoint`]; `None` for anything else.
    pub fn ordinal_of_endpoint(&self, endpoint: &str) -> Option<u32> {
        let pod = endpoint.strip_suffix(&self.endpoint_suffix())?;
        self.ordinal_of_pod(pod)
    }

    /// The ordinal of a pod of the StatefulSet, from its name `N-<i>`.
    pub fn ordinal_of_pod(&self, pod: &str) -> Option<u32> {
        let digits = pod.strip_prefix(&self.name)?.strip_prefix('-')?;
        // "N-01" is not a StatefulSet pod name; rejecting it keeps the mapping one-to-one.
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        digits.parse().ok()
    }
}

/// Labels that select the receiver pods of `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}

/// The selector as a string, for `status.selector`.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every object the operator creates for `name`.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels
}

/// The label selector of all pods managed by this operator, for the pod watch.
pub fn managed_pods_selector() -> String {
    format!("app.kubernetes.io/name={APP_NAME},app.kubernetes.io/managed-by={MANAGER}")
}

/// Metadata of an owned object: name, namespace, labels and the controller owner reference.
fn owned_meta(tr: &ThanosReceiver, names: &Names, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels(&names.name)),
        owner_references: Some(vec![owner_reference(tr)]),
        ..ObjectMeta::default()
    }
}

/// The controller owner reference to `tr`, so that deleting it deletes its objects.
fn owner_reference(tr: &ThanosReceiver) -> OwnerReference {
    // A ThanosReceiver read from the API always has a name and uid; the empty uid of an object
    // that never was stored only appears in tests.
    tr.controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: ThanosReceiver::api_version(&()).into_owned(),
            kind: ThanosReceiver::kind(&()).into_owned(),
            name: tr.name_any(),
            uid: String::new(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A `ThanosReceiver` as the API server would hand it to the reconciler.

    use kube::api::ObjectMeta;

    use crate::crd::{ThanosReceiver, ThanosReceiverSpec};

    /// `name` in `ns` with `replicas` receivers, RF 3 and defaults elsewhere.
    pub fn receiver(name: &str, ns: &str, replicas: i32) -> ThanosReceiver {
        let spec: ThanosReceiverSpec = serde_json::from_value(serde_json::json!({
            "replicas": replicas,
            "image": "thanos-receiver:test",
        }))
        .expect("spec");
        let mut tr = ThanosReceiver::new(name, spec);
        tr.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        tr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            name: "recv".into(),
            namespace: "mon".into(),
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn endpoints_are_pod_dns_names_and_parse_back() {
        let n = names();
        assert_eq!(n.endpoint(2), "recv-2.recv.mon.svc.cluster.local:10901");
        assert_eq!(n.ordinal_of_endpoint(&n.endpoint(12)), Some(12));
        assert_eq!(
            n.ordinal_of_endpoint("recv-2.recv.other.svc.cluster.local:10901"),
            None
        );
        assert_eq!(
            n.ordinal_of_endpoint("recv-x.recv.mon.svc.cluster.local:10901"),
            None
        );
        assert_eq!(n.ordinal_of_pod("recv-01"), None);
        assert_eq!(n.ordinal_of_pod("recv-0"), Some(0));
        assert_eq!(n.ordinal_of_pod("recvx-1"), None);
        assert_eq!(n.ordinal_of_pod("recv-remote-write"), None);
    }

    #[test]
    fn owned_objects_point_at_their_receiver() {
        let tr = fixtures::receiver("recv", "mon", 3);
        let meta = owned_meta(&tr, &names(), "x".into());
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ThanosReceiver", "recv", "uid-recv")
        );
        assert_eq!(owner.api_version, "receiver.thanos-rs.io/v1alpha1");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(
            selector_string("recv"),
            "app.kubernetes.io/instance=recv,app.kubernetes.io/name=thanos-receiver"
        );
    }
}

//! The receivers' identity: a ServiceAccount allowed to read its hashring ConfigMap and to annotate
//! its own pods with the ring in force, and nothing else.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{Names, owned_meta};
use crate::crd::ThanosReceiver;

/// The ServiceAccount the receiver pods run as.
pub fn service_account(tr: &ThanosReceiver, names: &Names) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(tr, names, names.receiver_identity()),
        ..ServiceAccount::default()
    }
}

/// Read access to the hashring ConfigMap, and `patch` on the resource's own pods (by name, up to
/// the most receivers the spec allows), where each receiver reports the ring it has in force.
pub fn role(tr: &ThanosReceiver, names: &Names) -> Role {
    let most = tr
        .spec
        .autoscaling
        .as_ref()
        .map_or(tr.spec.replicas, |a| a.max_replicas.max(tr.spec.replicas));
    let pods = (0..u32::try_from(most).unwrap_or(0))
        .map(|i| names.pod(i))
        .collect();
    Role {
        metadata: owned_meta(tr, names, names.receiver_identity()),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec![names.configmap()]),
                // `list` is needed by list-then-watch clients; with resourceNames it only ever
                // returns this one ConfigMap (a fieldSelector on metadata.name is required).
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["pods".into()]),
                resource_names: Some(pods),
                verbs: vec!["patch".into()],
                ..PolicyRule::default()
            },
        ]),
    }
}

/// Binds [`role`] to [`service_account`].
pub fn role_binding(tr: &ThanosReceiver, names: &Names) -> RoleBinding {
    RoleBinding {
        metadata: owned_meta(tr, names, names.receiver_identity()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: names.receiver_identity(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names.receiver_identity(),
            namespace: Some(names.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    #[test]
    fn receivers_may_only_read_their_configmap_and_annotate_their_pods() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let rules = role(&tr, &names).rules.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].verbs, ["patch"]);
        assert_eq!(
            rules[1].resource_names.as_deref(),
            Some(&["recv-0".to_owned(), "recv-1".into(), "recv-2".into()][..])
        );
        let rule = &rules[0];
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["configmaps".to_owned()][..])
        );
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["recv-hashring".to_owned()][..])
        );
        assert_eq!(rule.verbs, ["get", "list", "watch"]);
        let binding = role_binding(&tr, &names);
        assert_eq!(binding.role_ref.name, "recv-receiver");
        let subject = &binding.subjects.unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", "recv-receiver", Some("mon"))
        );
        assert_eq!(
            service_account(&tr, &names).metadata.name.as_deref(),
            Some("recv-receiver")
        );
    }
}

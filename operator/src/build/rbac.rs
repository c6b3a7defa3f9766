//! The receivers' identity: a ServiceAccount allowed to read its hashring ConfigMap and nothing else.

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

/// Read access to the hashring ConfigMap only.
pub fn role(tr: &ThanosReceiver, names: &Names) -> Role {
    Role {
        metadata: owned_meta(tr, names, names.receiver_identity()),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            resource_names: Some(vec![names.configmap()]),
            // `list` is needed by list-then-watch clients; with resourceNames it only ever
            // returns this one ConfigMap (a fieldSelector on metadata.name is required).
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
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
    fn receivers_may_only_read_their_configmap() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let rules = role(&tr, &names).rules.unwrap();
        assert_eq!(rules.len(), 1);
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

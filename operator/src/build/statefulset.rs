//! The receivers' StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    GRPC_PORT, HASHRINGS_KEY, HTTP_PORT, Names, REMOTE_WRITE_PORT, labels, owned_meta,
    selector_labels,
};
use crate::crd::{Flavor, PvcRetention, ThanosReceiver, TlsSpec};

const DATA_VOLUME: &str = "data";
const DATA_PATH: &str = "/data";
const HASHRING_VOLUME: &str = "hashring";
const HASHRING_DIR: &str = "/etc/thanos/hashring";
const OBJSTORE_VOLUME: &str = "objstore";
const OBJSTORE_DIR: &str = "/etc/thanos/objstore";
const OBJSTORE_FILE: &str = "objstore.yml";
const TLS_SERVER_VOLUME: &str = "tls-server";
const TLS_SERVER_DIR: &str = "/etc/thanos/tls/server";
const TLS_CLIENT_VOLUME: &str = "tls-client";
const TLS_CLIENT_DIR: &str = "/etc/thanos/tls/client";
const TLS_CA_VOLUME: &str = "tls-ca";
const TLS_CA_DIR: &str = "/etc/thanos/tls/ca";
const TLS_CLIENT_CA_VOLUME: &str = "tls-client-ca";
const TLS_CLIENT_CA_DIR: &str = "/etc/thanos/tls/client-ca";

/// The receiver command line, exactly the flags thanos-receiver accepts (with the Thanos flavor,
/// only flags `thanos receive` knows too), then `extraArgs`.
pub fn receiver_args(tr: &ThanosReceiver, names: &Names) -> Vec<String> {
    let spec = &tr.spec;
    let mut args = vec![
        "receive".to_owned(),
        format!("--tsdb.path={DATA_PATH}"),
        format!("--grpc-address=0.0.0.0:{GRPC_PORT}"),
        format!("--http-address=0.0.0.0:{HTTP_PORT}"),
        format!("--remote-write.address=0.0.0.0:{REMOTE_WRITE_PORT}"),
        format!("--receive.replication-factor={}", spec.replication_factor),
    ];
    // Ours watches the ConfigMap through the API (a ring applies in about a second and is
    // confirmed on the pod); Thanos reads the mounted file, which the kubelet refreshes.
    if spec.flavor() == Flavor::ThanosReceiver {
        args.push(format!(
            "--receive.hashrings-configmap={}/{}",
            names.namespace,
            names.configmap()
        ));
    }
    args.extend([
        format!("--receive.hashrings-file={HASHRING_DIR}/{HASHRINGS_KEY}"),
        // The kubelet expands $(POD_NAME) from the env var below.
        format!(
            "--receive.local-endpoint=$(POD_NAME).{}.{}.svc.{}:{GRPC_PORT}",
            names.name, names.namespace, names.cluster_domain
        ),
        "--label=replica=\"$(POD_NAME)\"".to_owned(),
    ]);
    args.extend(
        spec.external_labels
            .iter()
            .map(|(k, v)| format!("--label={k}={}", go_quote(v))),
    );
    args.push(format!("--tsdb.retention={}", spec.retention));
    if spec.object_storage.is_some() {
        args.push(format!(
            "--objstore.config-file={OBJSTORE_DIR}/{OBJSTORE_FILE}"
        ));
    }
    if let Some(tls) = &spec.tls {
        args.extend(tls_args(tls));
    }
    args.extend(spec.extra_args.iter().cloned());
    args
}

/// The TLS flags (Thanos' own): mTLS on gRPC, TLS forwards presenting the client certificate,
/// and TLS (optionally mTLS, optionally the tenant from the certificate) on remote write.
fn tls_args(tls: &TlsSpec) -> Vec<String> {
    let server = TLS_SERVER_DIR;
    let client = if tls.client_secret_name.is_some() {
        TLS_CLIENT_DIR
    } else {
        TLS_SERVER_DIR
    };
    let ca = if tls.ca_secret_name.is_some() {
        TLS_CA_DIR
    } else {
        TLS_SERVER_DIR
    };
    let mut args = vec![
        format!("--grpc-server-tls-cert={server}/tls.crt"),
        format!("--grpc-server-tls-key={server}/tls.key"),
        format!("--grpc-server-tls-client-ca={ca}/ca.crt"),
        "--remote-write.client-tls-secure".to_owned(),
        format!("--remote-write.client-tls-cert={client}/tls.crt"),
        format!("--remote-write.client-tls-key={client}/tls.key"),
        format!("--remote-write.client-tls-ca={ca}/ca.crt"),
    ];
    if tls.remote_write {
        args.push(format!("--remote-write.server-tls-cert={server}/tls.crt"));
        args.push(format!("--remote-write.server-tls-key={server}/tls.key"));
        if tls.remote_write_client_auth {
            let clients = if tls.client_ca_secret_name.is_some() {
                TLS_CLIENT_CA_DIR
            } else {
                ca
            };
            args.push(format!(
                "--remote-write.server-tls-client-ca={clients}/ca.crt"
            ));
        }
        if let Some(field) = tls.tenant_certificate_field {
            args.push(format!(
                "--receive.tenant-certificate-field={}",
                field.as_flag_value()
            ));
        }
    }
    args
}

/// A label value quoted the way the receiver's `--label` parser (Go's strconv.Quote) expects.
fn go_quote(v: &str) -> String {
    // JSON string escaping is a subset of Go's for every character a label value holds in practice.
    serde_json::to_string(v).expect("a string always serialises")
}

/// Repository of the receiver image the operator runs when a resource names none.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/thanos-rs/thanos-receiver";

/// The receiver image released with this operator: the default of `spec.image`.
pub fn default_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// The StatefulSet running `replicas` receivers, of `default_image` unless the spec names one.
pub fn statefulset(
    tr: &ThanosReceiver,
    names: &Names,
    replicas: i32,
    default_image: &str,
) -> StatefulSet {
    let spec = &tr.spec;
    let (mut volumes, mut mounts) = volumes(tr, names);
    volumes.extend(spec.volumes.iter().cloned());
    mounts.extend(spec.volume_mounts.iter().cloned());
    let pod_spec = PodSpec {
        service_account_name: Some(names.receiver_identity()),
        security_context: Some(
            spec.pod_security_context
                .clone()
                .unwrap_or_else(default_pod_security_context),
        ),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        termination_grace_period_seconds: Some(spec.termination_grace_period_seconds),
        containers: vec![container(tr, names, mounts, default_image)],
        volumes: Some(volumes),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        topology_spread_constraints: (!spec.topology_spread_constraints.is_empty())
            .then(|| spec.topology_spread_constraints.clone()),
        ..PodSpec::default()
    };
    let claim = data_claim(tr, names);
    StatefulSet {
        metadata: owned_meta(tr, names, names.name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.name.clone()),
            // Receivers need no ordered start: a ring member that is not up yet is tolerated.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&names.name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(
                        spec.pod_labels
                            .clone()
                            .into_iter()
                            .chain(labels(&names.name))
                            .collect(),
                    ),
                    annotations: (!spec.pod_annotations.is_empty())
                        .then(|| spec.pod_annotations.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: Some(vec![claim]),
            // Retain is the API default; leaving the field out keeps the object valid on API
            // servers older than 1.23, which reject fields they do not know under server-side apply.
            persistent_volume_claim_retention_policy: (spec.pvc_retention == PvcRetention::Delete)
                .then(|| StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Delete".into()),
                }),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The pod's volumes (the ring ConfigMap, the objstore Secret) and the container's mounts,
/// the data volume included.
fn volumes(tr: &ThanosReceiver, names: &Names) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &tr.spec;
    let mut volumes = vec![Volume {
        name: HASHRING_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.configmap(),
            // The ConfigMap only exists once enough receivers are Ready; pods must start before.
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![
        VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_PATH.into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: HASHRING_VOLUME.into(),
            mount_path: HASHRING_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    // A read-only Secret volume mounted at `dir`.
    let mut mount_secret = |volume: &str, dir: &str, secret: SecretVolumeSource| {
        volumes.push(Volume {
            name: volume.into(),
            secret: Some(secret),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    };
    if let Some(objstore) = &spec.object_storage {
        mount_secret(
            OBJSTORE_VOLUME,
            OBJSTORE_DIR,
            SecretVolumeSource {
                secret_name: Some(objstore.secret_name.clone()),
                items: Some(vec![KeyToPath {
                    key: objstore.key.clone(),
                    path: OBJSTORE_FILE.into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            },
        );
    }
    if let Some(tls) = &spec.tls {
        let secrets = [
            (TLS_SERVER_VOLUME, TLS_SERVER_DIR, Some(&tls.secret_name)),
            (
                TLS_CLIENT_VOLUME,
                TLS_CLIENT_DIR,
                tls.client_secret_name.as_ref(),
            ),
            (TLS_CA_VOLUME, TLS_CA_DIR, tls.ca_secret_name.as_ref()),
            (
                TLS_CLIENT_CA_VOLUME,
                TLS_CLIENT_CA_DIR,
                tls.client_ca_secret_name.as_ref(),
            ),
        ];
        for (volume, dir, secret) in secrets {
            let Some(secret) = secret else { continue };
            // The whole Secret: the kubelet swaps its files atomically on rotation, and the
            // receiver reloads them.
            mount_secret(
                volume,
                dir,
                SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    ..SecretVolumeSource::default()
                },
            );
        }
    }
    (volumes, mounts)
}

/// The receiver container: its arguments, ports and probes.
fn container(
    tr: &ThanosReceiver,
    names: &Names,
    mounts: Vec<VolumeMount>,
    default_image: &str,
) -> Container {
    let spec = &tr.spec;
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container_port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    Container {
        name: "receiver".into(),
        image: Some(spec.image.as_deref().unwrap_or(default_image).to_owned()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(receiver_args(tr, names)),
        env: Some(
            std::iter::once(EnvVar {
                name: "POD_NAME".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            })
            .chain(spec.env.iter().cloned())
            .collect(),
        ),
        security_context: Some(
            spec.security_context
                .clone()
                .unwrap_or_else(default_security_context),
        ),
        ports: Some(vec![
            container_port("grpc", GRPC_PORT),
            container_port("http", HTTP_PORT),
            container_port("remote-write", REMOTE_WRITE_PORT),
        ]),
        readiness_probe: Some(probe("/-/ready")),
        // A receiver replaying a large WAL is alive but slow to answer; give it room.
        liveness_probe: Some(Probe {
            failure_threshold: Some(12),
            ..probe("/-/healthy")
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// Keeps the running StatefulSet's volume claim templates in `desired` when `spec.storage` asks
/// for another size or class: the API server refuses any change to them, and applying one would
/// fail every later update of the StatefulSet. Returns whether the change was refused.
pub fn keep_claim_templates(desired: &mut StatefulSet, running: Option<&StatefulSet>) -> bool {
    let claims = |s: &StatefulSet| s.spec.as_ref()?.volume_claim_templates.clone();
    let storage = |claims: &[PersistentVolumeClaim]| -> Vec<_> {
        claims
            .iter()
            .map(|c| {
                let spec = c.spec.as_ref();
                (
                    spec.and_then(|s| {
                        s.resources
                            .as_ref()?
                            .requests
                            .as_ref()?
                            .get("storage")
                            .cloned()
                    }),
                    spec.and_then(|s| s.storage_class_name.clone()),
                )
            })
            .collect()
    };
    let (Some(running), Some(wanted)) = (running.and_then(claims), claims(desired)) else {
        return false;
    };
    if storage(&running) == storage(&wanted) {
        return false;
    }
    if let Some(spec) = desired.spec.as_mut() {
        spec.volume_claim_templates = Some(running);
    }
    true
}

/// The image's user (65532) and a volume it can write.
fn default_pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        run_as_group: Some(65532),
        fs_group: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The receiver writes only its data volume and needs no privilege.
fn default_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// The claim template of each receiver's data volume.
fn data_claim(tr: &ThanosReceiver, names: &Names) -> PersistentVolumeClaim {
    let spec = &tr.spec;
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(labels(&names.name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    spec.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    fn container(sts: &StatefulSet) -> &Container {
        &sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
    }

    #[test]
    fn receiver_flags_are_wired() {
        let mut tr = receiver("recv", "mon", 5);
        tr.spec.external_labels = BTreeMap::from([("cluster".into(), "eu-1".into())]);
        tr.spec.extra_args = vec!["--log.level=debug".into()];
        tr.spec.object_storage =
            Some(serde_json::from_value(serde_json::json!({"secretName": "s3"})).unwrap());
        let names = Names::new(&tr, "example.org");
        let sts = statefulset(&tr, &names, 5, "r:default");
        assert_eq!(
            container(&sts).args.as_deref().unwrap(),
            [
                "receive",
                "--tsdb.path=/data",
                "--grpc-address=0.0.0.0:10901",
                "--http-address=0.0.0.0:10902",
                "--remote-write.address=0.0.0.0:19291",
                "--receive.replication-factor=3",
                "--receive.hashrings-configmap=mon/recv-hashring",
                "--receive.hashrings-file=/etc/thanos/hashring/hashrings.json",
                "--receive.local-endpoint=$(POD_NAME).recv.mon.svc.example.org:10901",
                "--label=replica=\"$(POD_NAME)\"",
                "--label=cluster=\"eu-1\"",
                "--tsdb.retention=15d",
                "--objstore.config-file=/etc/thanos/objstore/objstore.yml",
                "--log.level=debug",
            ]
        );
        let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let secret = pod.volumes.as_ref().unwrap()[1].secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("s3"));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "objstore.yml");
        let mounts: Vec<_> = container(&sts)
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(
            mounts,
            ["/data", "/etc/thanos/hashring", "/etc/thanos/objstore"]
        );
    }

    #[test]
    fn pods_are_parallel_probed_and_named_for_peer_dns() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let sts = statefulset(&tr, &names, 4, "r:default");
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.service_name.as_deref(), Some("recv"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.persistent_volume_claim_retention_policy, None);
        let c = container(&sts);
        let path = |p: &Option<Probe>| {
            p.as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .clone()
                .unwrap()
        };
        assert_eq!(path(&c.readiness_probe), "/-/ready");
        assert_eq!(path(&c.liveness_probe), "/-/healthy");
        let env = &c.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "POD_NAME");
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("recv-receiver"));
        assert!(pod.termination_grace_period_seconds.unwrap() >= 600);
        let hashring = pod.volumes.as_ref().unwrap()[0]
            .config_map
            .as_ref()
            .unwrap();
        assert_eq!(
            (hashring.name.as_str(), hashring.optional),
            ("recv-hashring", Some(true))
        );
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        let size = &claim
            .spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"];
        assert_eq!(size.0, "100Gi");
        assert_eq!(spec.selector.match_labels.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn the_image_defaults_to_the_operators_receiver_image() {
        let mut tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let image = |tr: &ThanosReceiver| {
            container(&statefulset(tr, &names, 3, "r:default"))
                .image
                .clone()
        };
        assert_eq!(image(&tr).as_deref(), Some("thanos-receiver:test"));
        tr.spec.image = None;
        assert_eq!(image(&tr).as_deref(), Some("r:default"));
        assert!(default_image().starts_with("ghcr.io/thanos-rs/thanos-receiver:0."));
    }

    #[test]
    fn pods_are_hardened_by_default_and_take_the_users_additions() {
        let mut tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let sts = statefulset(&tr, &names, 3, "r:default");
        let pod = sts.spec.as_ref().unwrap().template.spec.clone().unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(
            (psc.run_as_non_root, psc.run_as_user, psc.fs_group),
            (Some(true), Some(65532), Some(65532))
        );
        let sc = container(&sts).security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));

        tr.spec = serde_json::from_value(serde_json::json!({
            "replicas": 3,
            "imagePullSecrets": [{"name": "registry"}],
            "podSecurityContext": {"fsGroup": 2000},
            "podLabels": {"team": "obs", "app.kubernetes.io/name": "not-ours"},
            "podAnnotations": {"prometheus.io/scrape": "true"},
            "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
            "volumes": [{"name": "ca", "configMap": {"name": "ca"}}],
            "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}],
        }))
        .unwrap();
        let sts = statefulset(&tr, &names, 3, "r:default");
        let template = &sts.spec.as_ref().unwrap().template;
        let meta = template.metadata.as_ref().unwrap();
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "obs");
        assert_eq!(
            labels["app.kubernetes.io/name"], "thanos-receiver",
            "our selector wins"
        );
        assert_eq!(
            meta.annotations.as_ref().unwrap()["prometheus.io/scrape"],
            "true"
        );
        let pod = template.spec.as_ref().unwrap();
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "registry");
        assert_eq!(pod.security_context.as_ref().unwrap().fs_group, Some(2000));
        assert!(pod.volumes.as_ref().unwrap().iter().any(|v| v.name == "ca"));
        let c = container(&sts);
        assert!(
            c.env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "AWS_REGION")
        );
        assert!(c.env.as_ref().unwrap().iter().any(|e| e.name == "POD_NAME"));
        assert!(
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.mount_path == "/etc/ca")
        );
    }

    #[test]
    fn the_thanos_flavor_uses_only_flags_thanos_receive_knows() {
        let thanos: std::collections::BTreeSet<&str> =
            include_str!("../../testdata/thanos-receive-flags.txt")
                .lines()
                .filter(|l| !l.starts_with('#'))
                .collect();
        let mut tr = receiver("recv", "mon", 3);
        tr.spec.image = Some("quay.io/thanos/thanos:v0.42.0".into());
        tr.spec.external_labels = BTreeMap::from([("cluster".into(), "eu-1".into())]);
        tr.spec.object_storage =
            Some(serde_json::from_value(serde_json::json!({"secretName": "s3"})).unwrap());
        tr.spec.tls = Some(
            serde_json::from_value(serde_json::json!({"secretName": "tls",
                "remoteWriteClientAuth": true, "tenantCertificateField": "commonName",
                "clientCaSecretName": "clients"}))
            .unwrap(),
        );
        assert_eq!(tr.spec.flavor(), Flavor::Thanos);
        let names = Names::new(&tr, "cluster.local");
        let args = receiver_args(&tr, &names);
        assert_eq!(args[0], "receive");
        for arg in &args[1..] {
            let flag = arg.trim_start_matches("--").split('=').next().unwrap();
            assert!(
                thanos.contains(flag),
                "thanos receive v0.42 has no --{flag}"
            );
        }
        assert!(
            args.iter()
                .any(|a| a.starts_with("--receive.hashrings-file="))
        );
        // Ours keeps the ConfigMap watch, and an explicit flavor wins over the image name.
        tr.spec.flavor = Some(Flavor::ThanosReceiver);
        let ours = receiver_args(&tr, &names);
        assert!(
            ours.iter()
                .any(|a| a.starts_with("--receive.hashrings-configmap="))
        );
        tr.spec.flavor = None;
        tr.spec.image = Some("ghcr.io/thanos-rs/thanos-receiver:0.1.0".into());
        assert_eq!(tr.spec.flavor(), Flavor::ThanosReceiver);
    }

    #[test]
    fn tls_mounts_the_secrets_and_wires_thanos_flags() {
        let mut tr = receiver("recv", "mon", 3);
        tr.spec.tls = Some(
            serde_json::from_value(serde_json::json!({"secretName": "recv-tls",
                "caSecretName": "ca", "remoteWriteClientAuth": true,
                "clientCaSecretName": "clients", "tenantCertificateField": "organization"}))
            .unwrap(),
        );
        let names = Names::new(&tr, "cluster.local");
        let args = receiver_args(&tr, &names);
        for want in [
            "--grpc-server-tls-cert=/etc/thanos/tls/server/tls.crt",
            "--grpc-server-tls-client-ca=/etc/thanos/tls/ca/ca.crt",
            "--remote-write.client-tls-secure",
            "--remote-write.client-tls-cert=/etc/thanos/tls/server/tls.crt",
            "--remote-write.client-tls-ca=/etc/thanos/tls/ca/ca.crt",
            "--remote-write.server-tls-key=/etc/thanos/tls/server/tls.key",
            "--remote-write.server-tls-client-ca=/etc/thanos/tls/client-ca/ca.crt",
            "--receive.tenant-certificate-field=organization",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} missing: {args:?}");
        }
        let sts = statefulset(&tr, &names, 3, "img");
        let pod = sts.spec.unwrap().template.spec.unwrap();
        let secrets: Vec<_> = pod
            .volumes
            .unwrap()
            .iter()
            .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
            .collect();
        assert_eq!(secrets, ["recv-tls", "ca", "clients"]);
        let mounts: Vec<_> = pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert!(mounts.contains(&"/etc/thanos/tls/server"));
        assert!(mounts.contains(&"/etc/thanos/tls/ca"));
        // Without remote-write TLS the port stays plaintext.
        tr.spec.tls.as_mut().unwrap().remote_write = false;
        tr.spec.tls.as_mut().unwrap().remote_write_client_auth = false;
        tr.spec.tls.as_mut().unwrap().tenant_certificate_field = None;
        let args = receiver_args(&tr, &names);
        assert!(
            !args
                .iter()
                .any(|a| a.starts_with("--remote-write.server-tls"))
        );
    }

    #[test]
    fn a_storage_change_keeps_the_running_claim_templates() {
        let mut tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let running = statefulset(&tr, &names, 3, "r:default");
        let mut same = running.clone();
        assert!(!keep_claim_templates(&mut same, Some(&running)));
        assert!(!keep_claim_templates(&mut same, None), "nothing runs yet");
        tr.spec.storage.size =
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("200Gi".into());
        let mut grown = statefulset(&tr, &names, 3, "r:default");
        assert!(keep_claim_templates(&mut grown, Some(&running)));
        let size = &grown.spec.unwrap().volume_claim_templates.unwrap()[0]
            .spec
            .clone()
            .unwrap()
            .resources
            .unwrap()
            .requests
            .unwrap()["storage"];
        assert_eq!(size.0, "100Gi");
    }

    #[test]
    fn pvc_retention_delete_is_explicit() {
        let mut tr = receiver("recv", "mon", 3);
        tr.spec.pvc_retention = PvcRetention::Delete;
        let sts = statefulset(&tr, &Names::new(&tr, "cluster.local"), 3, "r:default");
        let policy = sts
            .spec
            .unwrap()
            .persistent_volume_claim_retention_policy
            .unwrap();
        assert_eq!(policy.when_deleted.as_deref(), Some("Delete"));
        assert_eq!(policy.when_scaled.as_deref(), Some("Delete"));
    }
}

//! The operator↔receiver contract: the arguments the operator writes into a receiver pod, for a
//! spec that sets every field, are parsed by the receiver's own argument parser to the meaning
//! the operator intends. A renamed or retyped flag fails here, not in a rollout.

use std::collections::BTreeMap;

use hashring::contract;
use operator::build::{Names, receiver_args, statefulset};
use operator::crd::{ThanosReceiver, ThanosReceiverSpec};
use receiver::cli::Args;

fn full_spec() -> ThanosReceiver {
    let spec: ThanosReceiverSpec = serde_json::from_value(serde_json::json!({
        "replicas": 5,
        "replicationFactor": 3,
        "image": "thanos-receiver:test",
        "retention": "30d",
        "objectStorage": {"secretName": "s3", "key": "objstore.yml"},
        "externalLabels": {"cluster": "eu-1", "quoted": "a \"b\" c"},
        "hashringAlgorithm": "ketama",
        "hashrings": [{"name": "team-a", "tenants": ["a-*"], "tenantMatcherType": "glob"}],
        "extraArgs": ["--log.level=debug", "--log.format=json"],
        "tls": {"secretName": "recv-tls", "clientSecretName": "recv-client",
            "caSecretName": "recv-ca", "clientCaSecretName": "clients", "remoteWriteClientAuth": true,
            "tenantCertificateField": "commonName"},
    }))
    .expect("a spec with every receiver-facing field");
    let mut tr = ThanosReceiver::new("recv", spec);
    tr.metadata.namespace = Some("mon".into());
    tr
}

/// The pod's arguments as the kubelet hands them to the process: `$(POD_NAME)` expanded.
fn pod_args(tr: &ThanosReceiver, names: &Names) -> Vec<String> {
    receiver_args(tr, names)
        .into_iter()
        .map(|a| a.replace("$(POD_NAME)", "recv-2"))
        .collect()
}

#[test]
fn the_receiver_parses_what_the_operator_writes() {
    let tr = full_spec();
    let names = Names::new(&tr, "cluster.local");
    let argv = std::iter::once("thanos-receiver".to_string()).chain(pod_args(&tr, &names));
    let args = Args::try_parse_thanos(argv)
        .unwrap_or_else(|e| panic!("the receiver refuses the operator's arguments:\n{e}"));

    assert_eq!(args.grpc_address.port(), contract::GRPC_PORT);
    assert_eq!(args.http_address.port(), contract::HTTP_PORT);
    assert_eq!(
        args.remote_write_address.port(),
        contract::REMOTE_WRITE_PORT
    );
    assert_eq!(args.replication_factor, 3);
    // TLS: each flag lands where the receiver looks for it.
    let tls = &args.tls;
    assert_eq!(tls.grpc_cert, "/etc/thanos/tls/server/tls.crt");
    assert_eq!(tls.grpc_client_ca, "/etc/thanos/tls/ca/ca.crt");
    assert!(tls.client_secure);
    assert_eq!(tls.client_cert, "/etc/thanos/tls/client/tls.crt");
    assert_eq!(tls.rw_client_ca, "/etc/thanos/tls/client-ca/ca.crt");
    assert_eq!(
        tls.tenant_certificate_field,
        Some(receiver::tls::CertificateField::CommonName)
    );
    assert_eq!(
        args.hashrings_configmap.as_deref(),
        Some(format!("mon/{}", names.configmap()).as_str())
    );
    let file = args
        .hashrings_file
        .expect("the mounted ring file as fallback");
    assert_eq!(
        file.file_name().unwrap().to_str(),
        Some(contract::HASHRINGS_KEY)
    );
    assert_eq!(
        args.local_endpoint.as_deref(),
        Some(format!("recv-2.recv.mon.svc.cluster.local:{}", contract::GRPC_PORT).as_str())
    );
    let labels: BTreeMap<_, _> = args.labels.into_iter().collect();
    assert_eq!(labels.get("replica").map(String::as_str), Some("recv-2"));
    assert_eq!(labels.get("cluster").map(String::as_str), Some("eu-1"));
    assert_eq!(labels.get("quoted").map(String::as_str), Some("a \"b\" c"));
    assert_eq!(
        args.tsdb_retention,
        std::time::Duration::from_secs(30 * 86_400)
    );
    assert!(args.objstore_config_file.is_some());
    assert!(matches!(args.log_format, receiver::cli::LogFormat::Json));
}

#[test]
fn the_pod_exposes_and_probes_the_ports_the_receiver_listens_on() {
    let tr = full_spec();
    let names = Names::new(&tr, "cluster.local");
    let sts = statefulset(&tr, &names, 5, &operator::build::default_image());
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    let ports: BTreeMap<i32, String> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.container_port, p.name.clone().unwrap_or_default()))
        .collect();
    for port in [
        contract::GRPC_PORT,
        contract::HTTP_PORT,
        contract::REMOTE_WRITE_PORT,
    ] {
        assert!(
            ports.contains_key(&i32::from(port)),
            "{port} not exposed: {ports:?}"
        );
    }
    let ready = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(ready.path.as_deref(), Some("/-/ready"));
    let probed = match &ready.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => name.clone(),
        other => panic!("probe port {other:?}"),
    };
    assert_eq!(
        ports.get(&i32::from(contract::HTTP_PORT)),
        Some(&probed),
        "the readiness probe hits the ops port"
    );
    let ring_volume = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.config_map.as_ref())
        .expect("the hashring ConfigMap is mounted");
    // Without items every key becomes a file of its name; with items, the key maps to the file.
    assert!(
        ring_volume.items.as_ref().is_none_or(|items| items
            .iter()
            .any(|i| i.key == contract::HASHRINGS_KEY && i.path == contract::HASHRINGS_KEY)),
        "{ring_volume:?}"
    );
}

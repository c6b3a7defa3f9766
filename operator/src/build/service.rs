//! The Services: headless for peer DNS, ClusterIP for remote write.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{GRPC_PORT, HTTP_PORT, Names, REMOTE_WRITE_PORT, owned_meta, selector_labels};
use crate::crd::ThanosReceiver;

/// Label telling the two Services apart (a ServiceMonitor selects the peers Service only, so
/// each receiver is scraped once).
pub const SERVICE_LABEL: &str = "receiver.thanos-rs.io/service";
/// [`SERVICE_LABEL`] of the headless Service.
pub const PEERS_SERVICE: &str = "peers";
/// [`SERVICE_LABEL`] of the remote-write Service.
pub const REMOTE_WRITE_SERVICE: &str = "remote-write";

/// The metadata of a Service, labelled with its role.
fn service_meta(tr: &ThanosReceiver, names: &Names, name: String, role: &str) -> ObjectMeta {
    let mut meta = owned_meta(tr, names, name);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(SERVICE_LABEL.into(), role.into());
    meta
}

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// The headless Service that gives each receiver its DNS name, Ready or not.
pub fn headless_service(tr: &ThanosReceiver, names: &Names) -> Service {
    Service {
        metadata: service_meta(tr, names, names.name.clone(), PEERS_SERVICE),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Peers must resolve a receiver that is starting or briefly unready: it stays in the
            // ring, and replication to it should fail fast rather than on NXDOMAIN.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names.name)),
            ports: Some(vec![
                port("grpc", GRPC_PORT),
                port("http", HTTP_PORT),
                port("remote-write", REMOTE_WRITE_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Service Prometheus remote-writes to; any receiver forwards to the right replicas.
pub fn remote_write_service(tr: &ThanosReceiver, names: &Names) -> Service {
    Service {
        metadata: service_meta(
            tr,
            names,
            names.remote_write_service(),
            REMOTE_WRITE_SERVICE,
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&names.name)),
            ports: Some(vec![port("remote-write", REMOTE_WRITE_PORT)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    #[test]
    fn headless_service_publishes_not_ready_receivers() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let svc = headless_service(&tr, &names);
        assert_eq!(svc.metadata.name.as_deref(), Some("recv"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<_> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [10901, 10902, 19291]);
        assert_eq!(spec.selector.unwrap()["app.kubernetes.io/instance"], "recv");
        assert_eq!(svc.metadata.labels.unwrap()[SERVICE_LABEL], PEERS_SERVICE);
    }

    #[test]
    fn remote_write_service_exposes_19291() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let svc = remote_write_service(&tr, &names);
        assert_eq!(svc.metadata.name.as_deref(), Some("recv-remote-write"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip, None);
        let ports = spec.ports.unwrap();
        assert_eq!((ports.len(), ports[0].port), (1, 19291));
    }
}

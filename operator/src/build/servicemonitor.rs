//! The prometheus-operator ServiceMonitor (`monitoring.coreos.com/v1`) that scrapes every
//! receiver's `/metrics` through the headless Service.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, TypeMeta};
use serde_json::json;

use super::service::{PEERS_SERVICE, SERVICE_LABEL};
use super::{Names, labels, owned_meta};
use crate::crd::ThanosReceiver;

/// The ServiceMonitor resource type, which Kubernetes itself does not define.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// The ServiceMonitor of `tr`: the `http` port of every pod behind the headless Service, with
/// the `job` label the Thanos mixin selects.
pub fn service_monitor(tr: &ThanosReceiver, names: &Names) -> DynamicObject {
    let spec = &tr.spec.service_monitor;
    let mut metadata = owned_meta(tr, names, names.name.clone());
    let mut all = spec.labels.clone();
    // The operator's own labels win, as on the pods.
    all.extend(labels(&names.name));
    metadata.labels = Some(all);
    let mut selector = labels(&names.name);
    selector.insert(SERVICE_LABEL.into(), PEERS_SERVICE.into());
    let mut endpoint = json!({
        "port": "http",
        "path": "/metrics",
        "relabelings": [{
            "action": "replace",
            "targetLabel": "job",
            "replacement": spec.job_name,
        }],
    });
    if let Some(interval) = &spec.interval {
        endpoint["interval"] = json!(interval);
    }
    if let Some(timeout) = &spec.scrape_timeout {
        endpoint["scrapeTimeout"] = json!(timeout);
    }
    let resource = service_monitor_resource();
    DynamicObject {
        types: Some(TypeMeta {
            api_version: resource.api_version,
            kind: resource.kind,
        }),
        metadata,
        data: json!({
            "spec": {
                "selector": {"matchLabels": selector},
                "namespaceSelector": {"matchNames": [names.namespace]},
                "endpoints": [endpoint],
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;
    use crate::build::headless_service;
    use crate::build::remote_write_service;

    #[test]
    fn service_monitor_selects_the_peers_service_only() {
        let mut tr = receiver("recv", "mon", 3);
        tr.spec.service_monitor.enabled = true;
        tr.spec.service_monitor.interval = Some("30s".into());
        tr.spec.service_monitor.labels = [
            ("release".to_string(), "kube-prometheus".to_string()),
            ("app.kubernetes.io/name".to_string(), "mine".to_string()),
        ]
        .into();
        let names = Names::new(&tr, "cluster.local");
        let sm = service_monitor(&tr, &names);
        let types = sm.types.as_ref().unwrap();
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("monitoring.coreos.com/v1", "ServiceMonitor")
        );
        let labels = sm.metadata.labels.clone().unwrap();
        assert_eq!(labels["release"], "kube-prometheus");
        assert_eq!(labels["app.kubernetes.io/name"], "thanos-receiver");
        let spec = &sm.data["spec"];
        let selector = spec["selector"]["matchLabels"].as_object().unwrap();
        let matches = |svc: k8s_openapi::api::core::v1::Service| {
            let have = svc.metadata.labels.unwrap();
            selector
                .iter()
                .all(|(k, v)| have.get(k).map(String::as_str) == v.as_str())
        };
        assert!(matches(headless_service(&tr, &names)));
        assert!(!matches(remote_write_service(&tr, &names)));
        assert_eq!(spec["namespaceSelector"]["matchNames"], json!(["mon"]));
        let endpoint = &spec["endpoints"][0];
        assert_eq!(endpoint["port"], "http");
        assert_eq!(endpoint["interval"], "30s");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "job");
        assert_eq!(endpoint["relabelings"][0]["replacement"], "thanos-receive");
        assert!(endpoint.get("scrapeTimeout").is_none());
    }
}

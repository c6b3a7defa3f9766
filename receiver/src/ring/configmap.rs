//! The `--receive.hashrings-configmap=NAMESPACE/NAME` source: a watch on the ConfigMap through the
//! Kubernetes API, so a ring change applies about a second after the operator writes it, without
//! waiting for the kubelet to sync a mounted volume.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::RingHolder;

/// Key of the ring in the ConfigMap, as Thanos.
pub const KEY: &str = "hashrings.json";

/// Parses `NAMESPACE/NAME`.
pub fn parse_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?} must be NAMESPACE/NAME")),
    }
}

/// The ring bytes a ConfigMap carries, if any.
pub fn ring_bytes(cm: &ConfigMap) -> Option<&[u8]> {
    cm.data.as_ref()?.get(KEY).map(|s| s.as_bytes())
}

/// Watches the ConfigMap until the process ends, applying each version to the holder.
pub async fn watch(
    client: Client,
    namespace: String,
    name: String,
    holder: Arc<RingHolder>,
    delivered: Arc<AtomicBool>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(cm) => match ring_bytes(&cm) {
                Some(bytes) => {
                    delivered.store(true, Ordering::Relaxed);
                    let _ = holder.apply("configmap", bytes);
                }
                None => tracing::error!(
                    namespace,
                    name,
                    "ConfigMap has no {KEY} key; keeping the ring in force"
                ),
            },
            Err(e) => {
                tracing::warn!(namespace, name, error = %e, "hashring ConfigMap watch error; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_refs() {
        assert_eq!(
            parse_ref("monitoring/ring"),
            Ok(("monitoring".into(), "ring".into()))
        );
        assert!(parse_ref("ring").is_err());
        assert!(parse_ref("/ring").is_err());
        assert!(parse_ref("a/b/c").is_err());
    }

    #[test]
    fn ring_bytes_come_from_the_thanos_key() {
        let mut cm = ConfigMap::default();
        assert!(ring_bytes(&cm).is_none());
        cm.data = Some([(KEY.to_string(), "[]".to_string())].into());
        assert_eq!(ring_bytes(&cm), Some(&b"[]"[..]));
    }
}

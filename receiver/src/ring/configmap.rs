//! The `--receive.hashrings-configmap=NAMESPACE/NAME` source: a watch on the ConfigMap through the
//! Kubernetes API, so a ring change applies about a second after the operator writes it, without
//! waiting for the kubelet to sync a mounted volume. Each ring put in force is reported on the
//! receiver's own pod (annotation [`hashring::contract::RING_HASH_ANNOTATION`]), so the operator
//! stops leaving receivers only once every remaining one runs the new ring.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::RingHolder;

/// Key of the ring in the ConfigMap, as Thanos.
pub const KEY: &str = hashring::contract::HASHRINGS_KEY;

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

/// Writes the hash of the ring in force on this receiver's pod, once per change.
pub struct PodReporter {
    pods: Api<Pod>,
    pod: String,
    reported: Option<String>,
}

impl PodReporter {
    /// Reports on pod `pod` of `namespace`.
    pub fn new(client: Client, namespace: &str, pod: String) -> Self {
        PodReporter {
            pods: Api::namespaced(client, namespace),
            pod,
            reported: None,
        }
    }

    /// Annotates the pod with `hash` unless that was the last hash reported; a failure is logged
    /// and retried at the next ring event.
    async fn report(&mut self, hash: String) {
        if self.reported.as_ref() == Some(&hash) {
            return;
        }
        let patch = serde_json::json!({
            "metadata": {"annotations": {hashring::contract::RING_HASH_ANNOTATION: hash}}
        });
        match self
            .pods
            .patch(&self.pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => self.reported = Some(hash),
            Err(e) => {
                tracing::warn!(pod = self.pod, error = %e, "cannot report the ring in force on the pod")
            }
        }
    }
}

/// Watches the ConfigMap until the process ends, applying each version to the holder and
/// reporting the ring in force through `reporter`.
pub async fn watch(
    client: Client,
    namespace: String,
    name: String,
    holder: Arc<RingHolder>,
    delivered: Arc<AtomicBool>,
    mut reporter: Option<PodReporter>,
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
                    if let (Some(r), Some(ring)) = (reporter.as_mut(), holder.load()) {
                        r.report(ring.hash.to_hex()).await;
                    }
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
    use crate::metrics::Metrics;
    use hashring::Algorithm;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;

    const THREE: &str = r#"[{"endpoints":["a:1","b:1","c:1"]}]"#;
    const FIVE: &str = r#"[{"endpoints":["a:1","b:1","c:1","d:1","e:1"]}]"#;

    fn cm(ring: &str, rv: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "ring", "namespace": "mon", "resourceVersion": rv},
               "data": {KEY: ring}})
    }

    async fn until_hash(holder: &RingHolder, ring: &str) {
        let want = hashring::config_hash(ring.as_bytes()).to_hex();
        for _ in 0..100 {
            if holder.load().is_some_and(|s| s.hash.to_hex() == want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("ring {ring} never came into force");
    }

    /// A mocked API server: the watch lists the one ConfigMap by name, then follows its changes.
    #[tokio::test]
    async fn watch_applies_every_version_and_refuses_a_bad_one() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let metrics = Metrics::new();
        let holder = Arc::new(RingHolder::new(
            3,
            Algorithm::Ketama,
            None,
            metrics.ring.clone(),
        ));
        let delivered = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(watch(
            client,
            "mon".into(),
            "ring".into(),
            Arc::clone(&holder),
            Arc::clone(&delivered),
            None,
        ));

        let (req, send) = handle.next_request().await.expect("initial list");
        let query = req.uri().query().unwrap_or_default().to_string();
        assert_eq!(req.uri().path(), "/api/v1/namespaces/mon/configmaps");
        assert!(
            query.contains("fieldSelector=metadata.name%3Dring"),
            "{query}"
        );
        assert!(!query.contains("watch=true"), "{query}");
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "10"}, "items": [cm(THREE, "5")]});
        send.send_response(Response::new(Body::from(
            serde_json::to_vec(&list).unwrap(),
        )));
        until_hash(&holder, THREE).await;
        assert!(
            delivered.load(Ordering::Relaxed),
            "the file fallback stands down once the API answered"
        );

        let (req, send) = handle.next_request().await.expect("watch");
        let query = req.uri().query().unwrap_or_default().to_string();
        assert!(
            query.contains("watch=true") && query.contains("resourceVersion=10"),
            "{query}"
        );
        assert!(
            query.contains("fieldSelector=metadata.name%3Dring"),
            "{query}"
        );
        let events: Vec<String> = [cm(FIVE, "11"), cm("{broken", "12")]
            .into_iter()
            .map(|o| json!({"type": "MODIFIED", "object": o}).to_string())
            .collect();
        send.send_response(Response::new(Body::from(
            format!("{}\n", events.join("\n")).into_bytes(),
        )));
        until_hash(&holder, FIVE).await;
        // The broken version arrives after FIVE: wait until it has been counted as refused.
        let refused = "thanos_receive_hashrings_file_errors_total 1\n";
        for _ in 0..200 {
            if metrics.encode().contains(refused) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(metrics.encode().contains(refused), "{}", metrics.encode());
        assert_eq!(
            holder.load().unwrap().hash.to_hex(),
            hashring::config_hash(FIVE.as_bytes()).to_hex(),
            "the broken version is refused"
        );
        task.abort();
    }

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

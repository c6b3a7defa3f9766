//! The reconciler: reads pods and the ring in force, applies every object with server-side
//! apply, then writes the status.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::build::{self, HASHRINGS_KEY, MANAGER, Names, RING_CHANGED_AT_ANNOTATION};
use crate::crd::{ThanosReceiver, reasons};
use crate::metrics::{Metrics, ResourceLabels};
use crate::ring::{self, Members, RingDecision, Scale};
use crate::status::{self, Observed, RingInForce};

/// How often a settled resource is reconciled anyway, to repair drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(300);

/// What every reconciliation shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// DNS domain of the cluster, for ring endpoints.
    pub cluster_domain: String,
    /// Receiver image of resources that name none.
    pub receiver_image: String,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Who publishes Events.
    pub reporter: Reporter,
    /// Publishes warnings; a repeated warning becomes a series on one Event.
    pub recorder: Recorder,
}

/// Reconciles one `ThanosReceiver` now.
pub async fn reconcile(tr: Arc<ThanosReceiver>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_at(&tr, &ctx, Timestamp::now()).await
}

/// Reconciles one `ThanosReceiver` as of `now`; on failure the Degraded condition says why.
pub async fn reconcile_at(
    tr: &ThanosReceiver,
    ctx: &Context,
    now: Timestamp,
) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let result = Reconciler::new(tr, ctx, now).run().await;
    if let Err(e) = &result {
        ctx.metrics.reconcile_failed(e);
        let message = e.to_string();
        publish(
            &ctx.recorder,
            tr,
            EventType::Warning,
            "ReconcileFailed",
            "Reconcile",
            &message,
        )
        .await;
        let status = status::failed(tr.status.as_ref(), tr.metadata.generation, message, now);
        if let Err(e) = patch_status(ctx, tr, &status).await {
            tracing::warn!(error = %e, "writing the failure status failed too");
        }
    }
    result
}

/// Requeues a failed resource; the Degraded condition already carries the error.
pub fn error_policy(_tr: Arc<ThanosReceiver>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(15))
}

/// One reconciliation: the resource, its names and the clock.
struct Reconciler<'a> {
    tr: &'a ThanosReceiver,
    ctx: &'a Context,
    names: Names,
    now: Timestamp,
}

impl<'a> Reconciler<'a> {
    fn new(tr: &'a ThanosReceiver, ctx: &'a Context, now: Timestamp) -> Self {
        Reconciler {
            tr,
            ctx,
            names: Names::new(tr, &ctx.cluster_domain),
            now,
        }
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
        &self,
    ) -> Api<K> {
        Api::namespaced(self.ctx.client.clone(), &self.names.namespace)
    }

    /// Applies `obj` with server-side apply as the operator's field manager.
    async fn apply<K>(&self, obj: &K) -> Result<K, kube::Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
    }

    async fn run(&self) -> Result<Action, Error> {
        let spec = &self.tr.spec;
        let names = &self.names;
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&build::selector_string(&names.name)))
            .await?;
        let configmap = self.api::<ConfigMap>().get_opt(&names.configmap()).await?;
        let statefulset = self.api::<StatefulSet>().get_opt(&names.name).await?;

        let ready: Members = pods
            .items
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| names.ordinal_of_pod(&p.name_any()))
            .collect();
        let pod_count = pods
            .items
            .iter()
            .filter(|p| names.ordinal_of_pod(&p.name_any()).is_some())
            .count();
        let mut ring = configmap.as_ref().and_then(|cm| ring_in_force(cm, names));
        let problems = spec.problems();
        let spec_changed = self.tr.status.as_ref().and_then(|s| s.observed_generation)
            != self.tr.metadata.generation;
        let mut scale = None;
        let mut unavailable = Vec::new();

        if !problems.is_empty() && spec_changed {
            let note = problems.join("; ");
            publish(
                &self.ctx.recorder,
                self.tr,
                EventType::Warning,
                "InvalidSpec",
                "Validate",
                &note,
            )
            .await;
        }
        if !spec.paused && problems.is_empty() {
            self.apply_access_and_services().await?;
            ring = self.reconcile_ring(ring, &ready).await?;
            let unconfirmed = ring
                .as_ref()
                .map(|r| unconfirmed(&pods.items, names, r))
                .unwrap_or_default();
            scale = Some(
                self.reconcile_statefulset(statefulset.as_ref(), ring.as_ref(), &unconfirmed)
                    .await?,
            );
            unavailable = self.reconcile_optional_objects(spec_changed).await?;
        }

        if let Some(r) = &ring {
            let labels = self.labels();
            self.ctx
                .metrics
                .set_ring_endpoints(&labels, r.members.len());
            self.ctx.metrics.set_ring_hash(&labels, &r.hash);
        }
        let observed = Observed {
            generation: self.tr.metadata.generation,
            selector: build::selector_string(&names.name),
            desired: spec.replicas,
            replication_factor: spec.replication_factor,
            pods: i32::try_from(pod_count).unwrap_or(i32::MAX),
            ready: &ready,
            ring: ring.as_ref(),
            scale: scale.clone(),
            paused: spec.paused,
            problems: &problems,
            unavailable: &unavailable,
        };
        let new_status = status::status(self.tr.status.as_ref(), &observed, self.now);
        // An unchanged status is not written: the write would wake this controller up again.
        if self.tr.status.as_ref() != Some(&new_status) {
            patch_status(self.ctx, self.tr, &new_status).await?;
        }
        Ok(match scale {
            Some(Scale::HoldForPropagation { remaining, .. }) => Action::requeue(remaining),
            _ => Action::requeue(RESYNC),
        })
    }

    /// The ServiceAccount, Role and RoleBinding the receivers read the ring with, and the Services.
    async fn apply_access_and_services(&self) -> Result<(), Error> {
        let (tr, names) = (self.tr, &self.names);
        self.apply(&build::service_account(tr, names)).await?;
        self.apply(&build::role(tr, names)).await?;
        self.apply(&build::role_binding(tr, names)).await?;
        self.apply(&build::headless_service(tr, names)).await?;
        self.apply(&build::remote_write_service(tr, names)).await?;
        Ok(())
    }

    /// Writes the ring the ring policy decides on from the Ready receivers; returns the ring in
    /// force afterwards.
    async fn reconcile_ring(
        &self,
        ring: Option<RingInForce>,
        ready: &Members,
    ) -> Result<Option<RingInForce>, Error> {
        let spec = &self.tr.spec;
        let desired = u32::try_from(spec.replicas).unwrap_or(0);
        let rf = u32::try_from(spec.replication_factor).unwrap_or(1);
        let members = match ring::decide(ring.as_ref().map(|r| &r.members), ready, desired, rf) {
            RingDecision::Write(members) => members,
            RingDecision::Keep => match &ring {
                Some(r) => r.members.clone(),
                None => return Ok(ring),
            },
            RingDecision::TooFewReceivers { .. } => return Ok(ring),
        };
        let json = hashring::to_json(&build::hashrings(self.tr, &self.names, &members));
        let hash = hashring::config_hash(json.as_bytes()).to_hex();
        // Same members but other tenant rings is a ring change too: receivers reload it.
        if ring.as_ref().map(|r| &r.hash) == Some(&hash) {
            return Ok(ring);
        }
        let cm = build::hashring_configmap(self.tr, &self.names, json, &self.now.to_string());
        self.apply(&cm).await?;
        self.ring_changed(&members, ring.as_ref()).await;
        Ok(Some(RingInForce {
            members,
            hash,
            changed_at: Some(self.now),
        }))
    }

    /// Sizes the StatefulSet as the ring policy allows (a shrink waits until the remaining
    /// receivers report the new ring, `ringPropagationSeconds` at most).
    async fn reconcile_statefulset(
        &self,
        statefulset: Option<&StatefulSet>,
        ring: Option<&RingInForce>,
        unconfirmed: &Members,
    ) -> Result<Scale, Error> {
        let spec = &self.tr.spec;
        let running = statefulset
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas);
        let chosen = ring::statefulset_scale(
            spec.replicas,
            running,
            ring.map(|r| &r.members),
            unconfirmed,
            ring.and_then(|r| r.changed_at),
            self.now,
            Duration::from_secs(u64::try_from(spec.ring_propagation_seconds).unwrap_or(0)),
        );
        let mut desired = build::statefulset(
            self.tr,
            &self.names,
            chosen.replicas(),
            &self.ctx.receiver_image,
        );
        if build::keep_claim_templates(&mut desired, statefulset) {
            publish(
                &self.ctx.recorder,
                self.tr,
                EventType::Warning,
                reasons::STORAGE_CHANGE_REFUSED,
                "Reconcile",
                "spec.storage differs from the running StatefulSet's volume claim template, which Kubernetes cannot change: the running one is kept; resize the PVCs instead",
            )
            .await;
        }
        self.apply(&desired).await?;
        // Thanos' own receivers never confirm a ring: waiting out the bound is their normal case.
        if let Scale::TimedOut { unconfirmed, .. } = &chosen
            && spec.flavor() == crate::crd::Flavor::ThanosReceiver
        {
            let note = format!(
                "stopped leaving receivers after ringPropagationSeconds; receivers {unconfirmed:?} never reported the new ring"
            );
            publish(
                &self.ctx.recorder,
                self.tr,
                EventType::Warning,
                reasons::RING_PROPAGATION_TIMED_OUT,
                "ScaleDown",
                &note,
            )
            .await;
        }
        Ok(chosen)
    }

    /// The HPA, PDB and ServiceMonitor: applied when asked for, deleted when no longer; returns the API groups
    /// the cluster does not serve.
    async fn reconcile_optional_objects(&self, spec_changed: bool) -> Result<Vec<String>, Error> {
        let (spec, names) = (&self.tr.spec, &self.names);
        let mut unavailable = Vec::new();
        match &spec.autoscaling {
            Some(a) => {
                let hpa = build::horizontal_pod_autoscaler(self.tr, names, a);
                if self.apply_optional(&hpa).await? {
                    unavailable.push("autoscaling/v2 (HorizontalPodAutoscaler skipped)".to_owned());
                }
            }
            None if spec_changed => self.delete_optional::<HorizontalPodAutoscaler>().await?,
            None => {}
        }
        if spec.pod_disruption_budget.enabled {
            let pdb = build::pod_disruption_budget(self.tr, names);
            if self.apply_optional(&pdb).await? {
                unavailable.push("policy/v1 (PodDisruptionBudget skipped)".to_owned());
            }
        } else if spec_changed {
            self.delete_optional::<PodDisruptionBudget>().await?;
        }
        let monitors: Api<DynamicObject> = Api::namespaced_with(
            self.ctx.client.clone(),
            &names.namespace,
            &build::service_monitor_resource(),
        );
        if spec.service_monitor.enabled {
            let sm = build::service_monitor(self.tr, names);
            let applied = monitors
                .patch(
                    &names.name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&sm),
                )
                .await;
            match applied {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => unavailable.push(
                    "monitoring.coreos.com/v1 (ServiceMonitor skipped: is prometheus-operator installed?)"
                        .to_owned(),
                ),
                Err(e) => return Err(e.into()),
            }
        } else if spec_changed {
            match monitors.delete(&names.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(unavailable)
    }

    /// Applies an object of an API group some clusters lack; `Ok(true)` when the cluster does not
    /// serve it, so the rest of the reconciliation goes on.
    async fn apply_optional<K>(&self, obj: &K) -> Result<bool, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        match self.apply(obj).await {
            Ok(_) => Ok(false),
            // Server-side apply creates missing objects, so 404 means the resource type is unknown.
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an optional object the spec no longer asks for; absent or unknown is fine.
    async fn delete_optional<K>(&self) -> Result<(), Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        match self
            .api::<K>()
            .delete(&self.names.name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn labels(&self) -> ResourceLabels {
        ResourceLabels {
            namespace: self.names.namespace.clone(),
            name: self.names.name.clone(),
        }
    }

    async fn ring_changed(&self, members: &Members, before: Option<&RingInForce>) {
        self.ctx.metrics.ring_changed(&self.labels());
        let list = |m: &Members| {
            m.iter()
                .map(|o| self.names.pod(*o))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let note = match before {
            Some(b) => format!("hashring: [{}] -> [{}]", list(&b.members), list(members)),
            None => format!("first hashring: [{}]", list(members)),
        };
        tracing::info!(namespace = %self.names.namespace, name = %self.names.name, "{note}");
        // A fresh recorder: the shared one would fold this change into the previous change's
        // Event (it aggregates by reason, not by note), hiding what the ring became.
        let recorder = Recorder::new(self.ctx.client.clone(), self.ctx.reporter.clone());
        publish(
            &recorder,
            self.tr,
            EventType::Normal,
            "RingChanged",
            "UpdateHashring",
            &note,
        )
        .await;
    }
}

// 404 is checked by code: for an API group the server lacks entirely (no CRD), the answer is a
// plain-text 404 page, which `Status::is_not_found` does not recognise.

/// Whether a pod is Ready and not being deleted.
fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ring in force, read back from the ConfigMap: the default ring's members and the file hash.
pub fn ring_in_force(cm: &ConfigMap, names: &Names) -> Option<RingInForce> {
    let json = cm.data.as_ref()?.get(HASHRINGS_KEY)?;
    // A ConfigMap someone broke by hand counts as no ring: the next one is built from Ready pods.
    let configs = hashring::parse(json.as_bytes()).ok()?;
    let default = configs.iter().find(|c| c.tenants.is_empty())?;
    let members = default
        .endpoints
        .iter()
        .filter_map(|e| names.ordinal_of_endpoint(&e.address))
        .collect();
    let changed_at = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RING_CHANGED_AT_ANNOTATION))
        .and_then(|t| t.parse().ok());
    Some(RingInForce {
        members,
        hash: hashring::config_hash(json.as_bytes()).to_hex(),
        changed_at,
    })
}

async fn patch_status(
    ctx: &Context,
    tr: &ThanosReceiver,
    status: &crate::crd::ThanosReceiverStatus,
) -> Result<(), kube::Error> {
    let api: Api<ThanosReceiver> =
        Api::namespaced(ctx.client.clone(), &tr.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": ThanosReceiver::api_version(&()),
        "kind": ThanosReceiver::kind(&()),
        "status": status,
    });
    api.patch_status(
        &tr.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await
    .map(drop)
}

/// Publishes an Event on `tr`; a failure to do so is logged, never fatal.
async fn publish(
    recorder: &Recorder,
    tr: &ThanosReceiver,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &tr.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "publishing an event failed");
    }
}

/// Runs the controller until a shutdown signal: watches ThanosReceivers (in `namespace`, or all),
/// the objects they own and their pods.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    let client = ctx.client.clone();
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));
    Controller::new(
        scoped::<ThanosReceiver>(&client, namespace),
        watcher::Config::default().any_semantic(),
    )
    .owns(scoped::<StatefulSet>(&client, namespace), owned.clone())
    .owns(scoped::<ConfigMap>(&client, namespace), owned.clone())
    .owns(scoped::<Service>(&client, namespace), owned.clone())
    .owns(scoped::<ServiceAccount>(&client, namespace), owned.clone())
    .owns(scoped::<Role>(&client, namespace), owned.clone())
    .owns(scoped::<RoleBinding>(&client, namespace), owned)
    // Pods are owned by the StatefulSet, not by us: map them back through their instance label.
    .watches(
        scoped::<Pod>(&client, namespace),
        watcher::Config::default().labels(&build::managed_pods_selector()),
        |pod: Pod| {
            let ns = pod.namespace()?;
            let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::new(&instance).within(&ns))
        },
    )
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        match result {
            Ok((obj, _)) => tracing::debug!(%obj, "reconciled"),
            Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
        }
    })
    .await;
}

/// Members of `ring` whose pod does not report running it (annotation
/// [`hashring::contract::RING_HASH_ANNOTATION`] equal to the ring's hash), or has no pod.
fn unconfirmed(pods: &[Pod], names: &Names, ring: &RingInForce) -> Members {
    let confirmed: Members = pods
        .iter()
        .filter(|p| {
            p.annotations()
                .get(hashring::contract::RING_HASH_ANNOTATION)
                == Some(&ring.hash)
        })
        .filter_map(|p| names.ordinal_of_pod(&p.name_any()))
        .collect();
    ring.members.difference(&confirmed).copied().collect()
}

/// An API over `namespace`, or over all namespaces.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails when the ThanosReceiver CRD is not installed, with a hint, instead of watching nothing.
pub async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), Error> {
    scoped::<ThanosReceiver>(client, namespace)
        .list(&ListParams::default().limit(1))
        .await
        .map(drop)
        .map_err(Error::CrdMissing)
}

#[cfg(test)]
mod tests;

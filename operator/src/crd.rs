//! The `ThanosReceiver` custom resource (`receiver.thanos-rs.io/v1alpha1`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, ResourceRequirements,
    SecurityContext, Toleration, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource (ours, not upstream Thanos').
pub const GROUP: &str = "receiver.thanos-rs.io";

/// A pool of thanos-receiver instances sharing one hashring.
#[allow(
    clippy::duplicated_attributes,
    reason = "each printcolumn(...) repeats the same keys, which clippy misreads as duplicates"
)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "receiver.thanos-rs.io",
    version = "v1alpha1",
    kind = "ThanosReceiver",
    plural = "thanosreceivers",
    shortname = "tr",
    namespaced,
    status = "ThanosReceiverStatus",
    derive = "PartialEq",
    doc = "A pool of thanos-receiver instances that share a hashring",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "RF", type_ = "integer", json_path = ".spec.replicationFactor"),
    printcolumn(
        name = "Ring endpoints",
        type_ = "integer",
        json_path = ".status.ring.endpoints"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status"
    ),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".status.paused"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.replicationFactor <= self.replicas").message("replicationFactor must not exceed replicas"),
    validation = Rule::new("!has(self.autoscaling) || self.autoscaling.minReplicas >= self.replicationFactor").message("autoscaling.minReplicas must be at least replicationFactor"),
    validation = Rule::new("!has(self.autoscaling) || self.autoscaling.maxReplicas >= self.autoscaling.minReplicas").message("autoscaling.maxReplicas must be at least minReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct ThanosReceiverSpec {
    /// Number of receivers; the scale subresource and an HPA write this field.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Copies of every series (`--receive.replication-factor`), at most `replicas`; a write
    /// needs `(RF + 1) / 2` of them, as in Thanos (RF=2 writes succeed with one copy).
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1))]
    pub replication_factor: i32,
    /// Container image of thanos-receiver; unset means the receiver image of the operator's own
    /// version (the operator's `--receiver-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Which receiver the image holds: `thanosReceiver` (ours) or `thanos` (the stock Thanos
    /// image, for a migration: only flags Thanos knows, the ring read from the mounted
    /// ConfigMap); unset: `thanos` when the image is Thanos' own, else ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<Flavor>,
    /// Image pull policy (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// CPU and memory of the receiver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The per-receiver data volume; fixed once created (a StatefulSet's claim template cannot
    /// change: grow volumes through their PVCs).
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage cannot change after creation: a StatefulSet's volume claim template is immutable; resize the PVCs instead"))]
    pub storage: StorageSpec,
    /// How long blocks stay on local disk (`--tsdb.retention`).
    #[serde(default = "default_retention")]
    pub retention: String,
    /// Where finished blocks are uploaded; without it blocks stay local only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_storage: Option<ObjectStorageSpec>,
    /// External labels added to every block (`--label`); `replica` is set per pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// Placement algorithm of the default hashring.
    #[serde(default)]
    pub hashring_algorithm: HashringAlgorithm,
    /// Tenant hashrings; each holds every receiver, like the default ring, so no ring can be
    /// smaller than the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashrings: Vec<TenantHashring>,
    /// Longest wait, after a ring change, for every remaining receiver to report running it
    /// before leaving receivers are stopped on scale-down (normally they report within seconds).
    #[serde(default = "default_ring_propagation_seconds")]
    #[schemars(range(min = 0))]
    pub ring_propagation_seconds: i32,
    /// Seconds a stopping receiver has to cut its head and upload it.
    #[serde(default = "default_termination_grace_period_seconds")]
    #[schemars(range(min = 0))]
    pub termination_grace_period_seconds: i64,
    /// A HorizontalPodAutoscaler driving `replicas` through the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// The PodDisruptionBudget that keeps a write quorum through voluntary disruptions.
    #[serde(default)]
    pub pod_disruption_budget: PodDisruptionBudgetSpec,
    /// What happens to data volumes when the resource is deleted or scaled down.
    #[serde(default)]
    pub pvc_retention: PvcRetention,
    /// Node labels the receivers must run on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the receiver pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the receiver pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Topology spread constraints of the receiver pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra receiver flags, appended after the ones the operator sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Secrets to pull the image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The pods' security context; unset: non-root user and group 65532, `fsGroup` 65532 (so the
    /// data volume is writable), seccomp `RuntimeDefault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// The receiver container's security context; unset: no privilege escalation, read-only root
    /// filesystem, every capability dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Labels added to the pods (the operator's own selector labels win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Annotations added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra environment variables of the receiver container (e.g. `AWS_*` credentials from a Secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Extra volumes of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Extra volume mounts of the receiver container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// A prometheus-operator ServiceMonitor scraping every receiver's `/metrics`.
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
    /// TLS: mTLS between the receivers (forwards, StoreAPI) and on the remote-write port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// When true the operator writes nothing but this resource's status.
    #[serde(default)]
    pub paused: bool,
}

fn default_replicas() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    3
}

fn default_retention() -> String {
    "15d".into()
}

fn default_ring_propagation_seconds() -> i32 {
    60
}

fn default_termination_grace_period_seconds() -> i64 {
    // Cutting a 2h head of ~1M series and uploading it takes minutes, not the default 30 s.
    900
}

/// The data volume of each receiver.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of the volume.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// Storage class; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("100Gi".into())
}

/// A Secret holding a Thanos object storage configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageSpec {
    /// Name of the Secret in the resource's namespace.
    pub secret_name: String,
    /// Key of the Secret that holds the configuration.
    #[serde(default = "default_objstore_key")]
    pub key: String,
}

fn default_objstore_key() -> String {
    "objstore.yml".into()
}

/// The receiver implementation an image holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Flavor {
    /// thanos-receiver: reads its ring from the ConfigMap through the API and confirms it.
    ThanosReceiver,
    /// Thanos' own `thanos receive`: reads the mounted ring file; it cannot confirm a ring, so a
    /// scale-down waits out `ringPropagationSeconds`.
    Thanos,
}

impl ThanosReceiverSpec {
    /// The flavor in force: the spec's, else guessed from the image (Thanos' own repositories).
    pub fn flavor(&self) -> Flavor {
        self.flavor.unwrap_or_else(|| {
            let thanos_image = self.image.as_deref().is_some_and(|i| {
                let repo = i.split([':', '@']).next().unwrap_or(i);
                repo.ends_with("thanos/thanos") || repo.ends_with("thanos-io/thanos")
            });
            if thanos_image {
                Flavor::Thanos
            } else {
                Flavor::ThanosReceiver
            }
        })
    }
}

/// Placement algorithm of a hashring.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HashringAlgorithm {
    /// Thanos' original `hash % n`: every scale event moves most series.
    Hashmod,
    /// Consistent hashing: scaling 3 → 5 moves about 2/5 of the series.
    #[default]
    Ketama,
}

/// How the tenants of a hashring are matched.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantMatcherType {
    /// Tenant names compared byte for byte.
    #[default]
    Exact,
    /// Shell-style patterns such as `team-*`.
    Glob,
}

/// A hashring reserved for some tenants; it holds every receiver of the pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantHashring {
    /// Name of the ring (a metric label in receivers).
    #[x_kube(validation = Rule::new("self != 'default'").message("'default' is the name of the implicit default ring"))]
    pub name: String,
    /// Tenants (or patterns) routed to this ring.
    #[x_kube(validation = Rule::new("size(self) > 0").message("a tenant hashring needs at least one tenant"))]
    pub tenants: Vec<String>,
    /// How `tenants` are matched.
    #[serde(default)]
    pub tenant_matcher_type: TenantMatcherType,
    /// Placement algorithm of this ring; the pool's `hashringAlgorithm` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<HashringAlgorithm>,
}

/// HorizontalPodAutoscaler settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Lower bound for `replicas`; at least `replicationFactor`.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Upper bound for `replicas`.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Target average CPU utilisation (percent of requests); 80 when no target is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Target average memory utilisation (percent of requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory_utilization_percentage: Option<i32>,
    /// More metrics for the HPA (`autoscaling/v2` MetricSpec: pods, object, external), e.g.
    /// samples received per second per receiver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<k8s_openapi::api::autoscaling::v2::MetricSpec>,
    /// The HPA's scaling behavior; unset: scale up at once, scale down one receiver at a time at
    /// most every 5 minutes (each leaver cuts and uploads its head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior>,
}

/// PodDisruptionBudget settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Whether the operator manages a PodDisruptionBudget.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Receivers that may be down at once; `replicationFactor - quorum` (at least 1) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<i32>,
}

impl Default for PodDisruptionBudgetSpec {
    fn default() -> Self {
        PodDisruptionBudgetSpec {
            enabled: true,
            max_unavailable: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// TLS of the receivers, from Secrets as cert-manager writes them (`tls.crt`, `tls.key`,
/// `ca.crt`). The gRPC port always requires client certificates from the CA, and forwards present
/// the client certificate, so only holders of a certificate from the CA can write through or read
/// from a receiver's gRPC port (Thanos Query included).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.tenantCertificateField) || self.remoteWriteClientAuth").message("tenantCertificateField needs remoteWriteClientAuth: the tenant comes from a verified client certificate"),
    validation = Rule::new("!has(self.tenantCertificateField) || has(self.clientCaSecretName)").message("tenantCertificateField needs clientCaSecretName: with the ring's CA a tenant's certificate would also open the gRPC port to every tenant"),
    validation = Rule::new("!self.remoteWriteClientAuth || self.remoteWrite").message("remoteWriteClientAuth needs remoteWrite")
)]
pub struct TlsSpec {
    /// Secret with the server certificate (`tls.crt`, `tls.key`): valid for
    /// `*.<name>.<namespace>.svc.<cluster domain>` and, for the remote-write port, the names
    /// clients use.
    pub secret_name: String,
    /// Secret with the certificate forwards present to peers; unset: `secretName` (which must
    /// then allow client auth too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_name: Option<String>,
    /// Secret whose `ca.crt` signs the receivers' certificates; unset: `ca.crt` of `secretName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
    /// Secret whose `ca.crt` signs remote-write clients' certificates; unset: the receivers' CA,
    /// which also admits to the gRPC port (forwards into any tenant, reads of every tenant), so
    /// give clients their own CA whenever they are not as trusted as the receivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_secret_name: Option<String>,
    /// TLS on the remote-write port too.
    #[serde(default = "default_true")]
    pub remote_write: bool,
    /// Require remote-write clients to present a certificate the CA signed.
    #[serde(default)]
    pub remote_write_client_auth: bool,
    /// Take each remote-write request's tenant from this field of its client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_certificate_field: Option<CertificateField>,
}

/// A client-certificate field, by Thanos' names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CertificateField {
    /// The subject's `CN`.
    #[serde(rename = "commonName")]
    CommonName,
    /// The subject's first `O`.
    #[serde(rename = "organization")]
    Organization,
    /// The subject's first `OU`.
    #[serde(rename = "organizationalUnit")]
    OrganizationalUnit,
}

impl CertificateField {
    /// The value of `--receive.tenant-certificate-field`.
    pub fn as_flag_value(self) -> &'static str {
        match self {
            CertificateField::CommonName => "commonName",
            CertificateField::Organization => "organization",
            CertificateField::OrganizationalUnit => "organizationalUnit",
        }
    }
}

/// ServiceMonitor settings (`monitoring.coreos.com/v1`, prometheus-operator).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Whether the operator manages a ServiceMonitor (the cluster needs prometheus-operator's CRD).
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, e.g. `30s`; unset: the Prometheus' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Scrape timeout, e.g. `10s`; unset: the Prometheus' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    /// Labels of the ServiceMonitor, e.g. the `release` label a Prometheus selects monitors by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The `job` label of the scraped series; the Thanos mixin and the chart's alerts and
    /// dashboard select `thanos-receive`.
    #[serde(default = "default_job_name")]
    pub job_name: String,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        ServiceMonitorSpec {
            enabled: false,
            interval: None,
            scrape_timeout: None,
            labels: BTreeMap::new(),
            job_name: default_job_name(),
        }
    }
}

fn default_job_name() -> String {
    "thanos-receive".into()
}

/// Fate of the data volumes when the resource is deleted or scaled down.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PvcRetention {
    /// Keep the volumes (the safe choice: a volume may hold blocks not yet uploaded).
    #[default]
    Retain,
    /// Delete the volumes with their pods.
    Delete,
}

/// Observed state of a `ThanosReceiver`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThanosReceiverStatus {
    /// Receiver pods that exist (the scale subresource's `status.replicas`).
    #[serde(default)]
    pub replicas: i32,
    /// Receiver pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the receiver pods, for the scale subresource and HPAs.
    // Optional rather than defaulted: Kubernetes 1.20 rejects a CRD whose schema defaults a string to "".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The hashring in force, as written in the ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<RingStatus>,
    /// The operator saw `spec.paused` and wrote nothing but this status.
    #[serde(default)]
    pub paused: bool,
    /// `Available`, `Progressing`, `Degraded` and `RingReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The hashring in force.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingStatus {
    /// Endpoints in the default ring.
    pub endpoints: i32,
    /// Pod ordinals in the ring, ascending.
    pub members: Vec<i32>,
    /// `config_hash` of `hashrings.json`, as receivers report it.
    pub hash: String,
    /// When the ring last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_time: Option<Time>,
}

/// Condition types.
pub mod conditions {
    /// Writes reach a quorum for every series.
    pub const AVAILABLE: &str = "Available";
    /// The pool is moving towards the spec (scaling, waiting for pods).
    pub const PROGRESSING: &str = "Progressing";
    /// Something prevents the operator from doing its job fully.
    pub const DEGRADED: &str = "Degraded";
    /// The hashring in force holds exactly the desired receivers.
    pub const RING_READY: &str = "RingReady";
}

/// Condition reasons.
pub mod reasons {
    /// Available: the ring exists and at most `RF - quorum` members are unready.
    pub const QUORUM_AVAILABLE: &str = "QuorumAvailable";
    /// Available: more ring members are unready than a quorum tolerates.
    pub const QUORUM_AT_RISK: &str = "QuorumAtRisk";
    /// Available / RingReady: no ring has been written yet.
    pub const NO_RING: &str = "NoRing";
    /// RingReady: every desired receiver is in the ring.
    pub const ALL_RECEIVERS_IN_RING: &str = "AllReceiversInRing";
    /// RingReady / Progressing: receivers still have to turn Ready to join the ring.
    pub const WAITING_FOR_READY_RECEIVERS: &str = "WaitingForReadyReceivers";
    /// RingReady: the ring still holds leaving receivers.
    pub const LEAVING_RECEIVERS_IN_RING: &str = "LeavingReceiversInRing";
    /// Progressing: leaving receivers are out of the ring; waiting for the others to run it.
    pub const SCALING_DOWN: &str = "ScalingDown";
    /// Event: `spec.storage` changed; the running volume claim template is kept.
    pub const STORAGE_CHANGE_REFUSED: &str = "StorageChangeRefused";
    /// Progressing: leaving receivers were stopped although some remaining ones never reported
    /// the new ring within `ringPropagationSeconds`.
    pub const RING_PROPAGATION_TIMED_OUT: &str = "RingPropagationTimedOut";
    /// Progressing: nothing left to do.
    pub const RECONCILED: &str = "Reconciled";
    /// Progressing: `spec.paused` is set.
    pub const PAUSED: &str = "Paused";
    /// Degraded: all is well.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Degraded: the spec breaks a rule (checked here too, as old API servers skip CEL).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Degraded: the cluster lacks an API group (e.g. `policy/v1` before Kubernetes 1.21).
    pub const API_GROUP_UNAVAILABLE: &str = "ApiGroupUnavailable";
    /// Degraded: a request to the API server failed.
    pub const RECONCILE_FAILED: &str = "ReconcileFailed";
}

impl ThanosReceiverSpec {
    /// The rules of the CEL validations, checked in the operator too, as messages.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.replicas < 1 {
            problems.push(format!(
                "replicas must be at least 1, got {}",
                self.replicas
            ));
        }
        if self.replication_factor < 1 {
            problems.push(format!(
                "replicationFactor must be positive, got {}",
                self.replication_factor
            ));
        }
        if self.replication_factor > self.replicas {
            problems.push(format!(
                "replicationFactor {} must not exceed replicas {}",
                self.replication_factor, self.replicas
            ));
        }
        if let Some(a) = &self.autoscaling {
            if a.min_replicas < self.replication_factor {
                problems.push(format!(
                    "autoscaling.minReplicas {} must be at least replicationFactor {}",
                    a.min_replicas, self.replication_factor
                ));
            }
            if a.max_replicas < a.min_replicas {
                problems.push(format!(
                    "autoscaling.maxReplicas {} must be at least minReplicas {}",
                    a.max_replicas, a.min_replicas
                ));
            }
        }
        for h in &self.hashrings {
            if h.name == "default" {
                problems.push("hashring name 'default' is reserved for the default ring".into());
            }
            if h.tenants.is_empty() {
                problems.push(format!("hashring {:?} needs at least one tenant", h.name));
            }
        }
        if let Some(t) = &self.tls {
            if t.tenant_certificate_field.is_some() && !t.remote_write_client_auth {
                problems.push("tls.tenantCertificateField needs tls.remoteWriteClientAuth: the tenant comes from a verified client certificate".into());
            }
            if t.remote_write_client_auth && !t.remote_write {
                problems.push("tls.remoteWriteClientAuth needs tls.remoteWrite".into());
            }
            if t.tenant_certificate_field.is_some() && t.client_ca_secret_name.is_none() {
                problems.push("tls.tenantCertificateField needs tls.clientCaSecretName: with the ring's CA a tenant's certificate would also open the gRPC port to every tenant".into());
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    fn spec(json: serde_json::Value) -> ThanosReceiverSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn committed_crd_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../crds/thanosreceivers.receiver.thanos-rs.io.yaml"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let generated = serde_yaml::to_string(&ThanosReceiver::crd()).unwrap();
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b);
        assert!(
            committed == generated,
            "crds/ is stale: run `make crds` (cargo run -p operator --bin crdgen > {path}); \
             first differing line: {first_difference:?}, {} vs {} bytes",
            committed.len(),
            generated.len()
        );
    }

    #[test]
    fn crd_has_scale_subresource_and_columns() {
        let crd = ThanosReceiver::crd();
        assert_eq!(crd.spec.group, "receiver.thanos-rs.io");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["tr".to_owned()][..])
        );
        let version = &crd.spec.versions[0];
        let scale = version
            .subresources
            .as_ref()
            .unwrap()
            .scale
            .as_ref()
            .unwrap();
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            columns,
            [
                "Replicas",
                "Ready",
                "RF",
                "Ring endpoints",
                "Available",
                "Degraded",
                "Paused",
                "Age"
            ]
        );
    }

    #[test]
    fn defaults_fill_a_minimal_spec() {
        let s = spec(serde_json::json!({}));
        assert_eq!(s.image, None);
        assert_eq!(
            (s.replicas, s.replication_factor, s.ring_propagation_seconds),
            (3, 3, 60)
        );
        assert_eq!(
            (s.retention.as_str(), s.storage.size.0.as_str()),
            ("15d", "100Gi")
        );
        assert_eq!(
            (s.pvc_retention, s.hashring_algorithm),
            (PvcRetention::Retain, HashringAlgorithm::Ketama)
        );
        assert!(s.pod_disruption_budget.enabled && !s.paused);
        assert!(s.problems().is_empty());
    }

    /// Every `x-kubernetes-validations` rule under `schema`: the path of the value it checks
    /// (object keys, `*` for array items), the rule and its message.
    fn cel_rules(
        schema: &serde_json::Value,
        path: &[String],
        out: &mut Vec<(Vec<String>, String, String)>,
    ) {
        for rule in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.push((
                path.to_vec(),
                rule["rule"].as_str().unwrap().to_owned(),
                rule["message"].as_str().unwrap().to_owned(),
            ));
        }
        if let Some(props) = schema["properties"].as_object() {
            for (key, sub) in props {
                cel_rules(sub, &[path, std::slice::from_ref(key)].concat(), out);
            }
        }
        if schema["items"].is_object() {
            cel_rules(&schema["items"], &[path, &["*".to_owned()]].concat(), out);
        }
    }

    /// The values of `json` at `path`.
    fn values_at<'a>(json: &'a serde_json::Value, path: &[String]) -> Vec<&'a serde_json::Value> {
        match path.split_first() {
            None => vec![json],
            Some((key, rest)) if key == "*" => json
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|v| values_at(v, rest))
                .collect(),
            Some((key, rest)) => json.get(key).map_or_else(Vec::new, |v| values_at(v, rest)),
        }
    }

    /// The messages of the CEL rules `spec` breaks, evaluated by a CEL implementation on the spec
    /// as the API server sees it (defaults applied), the way Kubernetes ≥ 1.25 evaluates them.
    fn broken_rules(spec_json: serde_json::Value) -> Vec<String> {
        let crd = serde_json::to_value(ThanosReceiver::crd()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut rules = Vec::new();
        cel_rules(root, &[], &mut rules);
        assert!(rules.len() >= 5, "{rules:?}");
        let object = serde_json::json!({"spec": serde_json::to_value(spec(spec_json)).unwrap()});
        let mut broken = Vec::new();
        for (path, rule, message) in rules {
            let program = cel::Program::compile(&rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            for value in values_at(&object, &path) {
                let mut context = cel::Context::default();
                context.add_variable("self", value.clone()).unwrap();
                // An update that changes nothing: transition rules see oldSelf == self.
                context.add_variable("oldSelf", value.clone()).unwrap();
                match program.execute(&context) {
                    Ok(cel::Value::Bool(true)) => {}
                    Ok(cel::Value::Bool(false)) => broken.push(message.clone()),
                    other => panic!("{rule} on {value}: {other:?}"),
                }
            }
        }
        broken
    }

    #[test]
    fn cel_rules_accept_good_specs_and_refuse_each_bad_one_with_its_message() {
        for good in [
            serde_json::json!({}),
            serde_json::json!({"replicas": 3, "replicationFactor": 2}),
            serde_json::json!({"replicas": 5, "autoscaling": {"minReplicas": 3, "maxReplicas": 9},
                "hashrings": [{"name": "team-a", "tenants": ["a-*"], "tenantMatcherType": "glob"}]}),
            serde_json::json!({"tls": {"secretName": "recv-tls"}}),
            serde_json::json!({"tls": {"secretName": "recv-tls", "remoteWriteClientAuth": true,
                "tenantCertificateField": "commonName", "clientCaSecretName": "clients"}}),
        ] {
            assert_eq!(broken_rules(good.clone()), Vec::<String>::new(), "{good}");
        }
        let bad = [
            (
                serde_json::json!({"replicas": 1, "replicationFactor": 3}),
                "replicationFactor must not exceed replicas",
            ),
            (
                serde_json::json!({"autoscaling": {"minReplicas": 1, "maxReplicas": 5}}),
                "autoscaling.minReplicas must be at least replicationFactor",
            ),
            (
                serde_json::json!({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}),
                "autoscaling.maxReplicas must be at least minReplicas",
            ),
            (
                serde_json::json!({"hashrings": [{"name": "default", "tenants": ["x"]}]}),
                "'default' is the name of the implicit default ring",
            ),
            (
                serde_json::json!({"hashrings": [{"name": "a", "tenants": []}]}),
                "a tenant hashring needs at least one tenant",
            ),
            (
                serde_json::json!({"tls": {"secretName": "t", "tenantCertificateField": "organization",
                    "clientCaSecretName": "c"}}),
                "tenantCertificateField needs remoteWriteClientAuth: the tenant comes from a verified client certificate",
            ),
            (
                serde_json::json!({"tls": {"secretName": "t", "remoteWriteClientAuth": true,
                    "tenantCertificateField": "organization"}}),
                "tenantCertificateField needs clientCaSecretName: with the ring's CA a tenant's certificate would also open the gRPC port to every tenant",
            ),
            (
                serde_json::json!({"tls": {"secretName": "t", "remoteWrite": false, "remoteWriteClientAuth": true}}),
                "remoteWriteClientAuth needs remoteWrite",
            ),
        ];
        for (json, message) in bad {
            assert_eq!(broken_rules(json.clone()), [message], "{json}");
        }
    }

    #[test]
    fn storage_is_immutable_by_a_transition_rule() {
        let crd = serde_json::to_value(ThanosReceiver::crd()).unwrap();
        let storage = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["storage"];
        let rule = storage["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap();
        let program = cel::Program::compile(rule).unwrap();
        let eval = |old: serde_json::Value, new: serde_json::Value| {
            let mut context = cel::Context::default();
            context.add_variable("self", new).unwrap();
            context.add_variable("oldSelf", old).unwrap();
            program.execute(&context).unwrap()
        };
        let small = serde_json::json!({"size": "100Gi"});
        assert_eq!(eval(small.clone(), small.clone()), cel::Value::Bool(true));
        assert_eq!(
            eval(small, serde_json::json!({"size": "200Gi"})),
            cel::Value::Bool(false)
        );
    }

    #[test]
    fn problems_mirror_the_cel_rules() {
        let cases = [
            (
                serde_json::json!({"image": "r", "replicas": 1, "replicationFactor": 3}),
                "must not exceed replicas",
            ),
            (
                serde_json::json!({"image": "r", "autoscaling": {"minReplicas": 1, "maxReplicas": 5}}),
                "minReplicas 1 must be at least replicationFactor 3",
            ),
            (
                serde_json::json!({"image": "r", "autoscaling": {"minReplicas": 5, "maxReplicas": 3}}),
                "maxReplicas 3 must be at least minReplicas 5",
            ),
            (
                serde_json::json!({"image": "r", "hashrings": [{"name": "a", "tenants": []}]}),
                "needs at least one tenant",
            ),
            (
                serde_json::json!({"image": "r", "hashrings": [{"name": "default", "tenants": ["x"]}]}),
                "reserved",
            ),
        ];
        for (json, want) in cases {
            let problems = spec(json.clone()).problems().join("; ");
            assert!(problems.contains(want), "{json}: {problems}");
        }
        // RF=2 is allowed, as in Thanos (its write quorum is 1).
        let rf2 = spec(serde_json::json!({"replicas": 3, "replicationFactor": 2}));
        assert!(rf2.problems().is_empty(), "{:?}", rf2.problems());
    }
}

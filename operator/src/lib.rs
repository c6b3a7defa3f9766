//! The ThanosReceiver operator: reconciles `ThanosReceiver` resources into receivers and their hashring.

#![forbid(unsafe_code)]

pub mod build;
pub mod controller;
pub mod crd;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod ring;
pub mod status;

/// Why a reconciliation or the operator failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the Kubernetes API failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The ThanosReceiver CRD is not installed.
    #[error("the ThanosReceiver CRD is not installed (kubectl apply -f crds/): {0}")]
    CrdMissing(#[source] kube::Error),
    /// The leader Lease was lost; another replica may now be writing.
    #[error("lost the leader Lease {0}")]
    LeaseLost(String),
}

impl Error {
    /// A short label for the `reconcile_errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::CrdMissing(_) => "crd_missing",
            Error::LeaseLost(_) => "lease_lost",
        }
    }
}

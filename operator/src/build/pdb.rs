//! The `policy/v1` PodDisruptionBudget that keeps a write quorum.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Names, owned_meta, selector_labels};
use crate::crd::ThanosReceiver;

/// Receivers that may be evicted at once: the spec's value, else `RF - quorum(RF)`, at least 1.
pub fn max_unavailable(tr: &ThanosReceiver) -> i32 {
    let spec = &tr.spec;
    spec.pod_disruption_budget
        .max_unavailable
        .unwrap_or_else(|| {
            let rf = usize::try_from(spec.replication_factor).unwrap_or(1);
            let spare = rf.saturating_sub(hashring::quorum(rf));
            // With RF 1 no receiver can go without losing writes; a budget of 0 would block every
            // node drain forever, which users then work around by deleting the budget.
            i32::try_from(spare).unwrap_or(i32::MAX).max(1)
        })
}

/// The PDB over all receivers of `tr`.
pub fn pod_disruption_budget(tr: &ThanosReceiver, names: &Names) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(tr, names, names.name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(tr))),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    #[test]
    fn budget_keeps_a_write_quorum() {
        let mut tr = receiver("recv", "mon", 7);
        let cases = [(1, 1), (3, 1), (5, 2), (7, 3)];
        for (rf, want) in cases {
            tr.spec.replication_factor = rf;
            assert_eq!(max_unavailable(&tr), want, "RF {rf}");
        }
        tr.spec.pod_disruption_budget.max_unavailable = Some(2);
        let pdb = pod_disruption_budget(&tr, &Names::new(&tr, "cluster.local"));
        assert_eq!(pdb.metadata.name.as_deref(), Some("recv"));
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(2)));
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "recv"
        );
    }
}

//! The `autoscaling/v2` HorizontalPodAutoscaler, targeting the ThanosReceiver's scale subresource.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};
use kube::Resource;

use super::{Names, owned_meta};
use crate::crd::{AutoscalingSpec, ThanosReceiver};

/// Target CPU utilisation when the spec sets no target at all.
const DEFAULT_CPU_TARGET: i32 = 80;

fn utilization(resource: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: resource.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

/// Scale down one receiver at a time, at most every 5 minutes after 5 minutes of low load: each
/// leaver cuts and uploads its head, and the ring moves a share of every tenant's series.
fn default_behavior() -> HorizontalPodAutoscalerBehavior {
    HorizontalPodAutoscalerBehavior {
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(300),
            policies: Some(vec![HPAScalingPolicy {
                type_: "Pods".into(),
                value: 1,
                period_seconds: 300,
            }]),
            ..HPAScalingRules::default()
        }),
        scale_up: None,
    }
}

/// The HPA for `autoscaling`; it scales the ThanosReceiver, never the StatefulSet, so that every
/// scale event goes through the ring-aware reconciler.
pub fn horizontal_pod_autoscaler(
    tr: &ThanosReceiver,
    names: &Names,
    autoscaling: &AutoscalingSpec,
) -> HorizontalPodAutoscaler {
    let mut metrics = Vec::new();
    if let Some(cpu) = autoscaling.target_cpu_utilization_percentage {
        metrics.push(utilization("cpu", cpu));
    }
    if let Some(memory) = autoscaling.target_memory_utilization_percentage {
        metrics.push(utilization("memory", memory));
    }
    metrics.extend(autoscaling.metrics.iter().cloned());
    if metrics.is_empty() {
        metrics.push(utilization("cpu", DEFAULT_CPU_TARGET));
    }
    HorizontalPodAutoscaler {
        metadata: owned_meta(tr, names, names.name.clone()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(ThanosReceiver::api_version(&()).into_owned()),
                kind: ThanosReceiver::kind(&()).into_owned(),
                name: names.name.clone(),
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(metrics),
            behavior: Some(
                autoscaling
                    .behavior
                    .clone()
                    .unwrap_or_else(default_behavior),
            ),
        }),
        ..HorizontalPodAutoscaler::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::receiver;

    #[test]
    fn hpa_scales_the_custom_resource() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let a: AutoscalingSpec = serde_json::from_value(serde_json::json!({
            "minReplicas": 3, "maxReplicas": 9, "targetMemoryUtilizationPercentage": 70
        }))
        .unwrap();
        let spec = horizontal_pod_autoscaler(&tr, &names, &a).spec.unwrap();
        let target = &spec.scale_target_ref;
        assert_eq!(
            target.api_version.as_deref(),
            Some("receiver.thanos-rs.io/v1alpha1")
        );
        assert_eq!(
            (target.kind.as_str(), target.name.as_str()),
            ("ThanosReceiver", "recv")
        );
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 9));
        let metrics = spec.metrics.unwrap();
        assert_eq!(metrics.len(), 1);
        let r = metrics[0].resource.as_ref().unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.average_utilization),
            ("memory", Some(70))
        );
        let down = spec.behavior.unwrap().scale_down.unwrap();
        assert_eq!(
            down.policies.unwrap()[0].value,
            1,
            "one receiver at a time by default"
        );
    }

    #[test]
    fn extra_metrics_and_behavior_are_passed_through() {
        let tr = receiver("recv", "mon", 3);
        let names = Names::new(&tr, "cluster.local");
        let a: AutoscalingSpec = serde_json::from_value(serde_json::json!({
            "minReplicas": 3, "maxReplicas": 9,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": "thanos_receive_write_samples_per_second"},
                "target": {"type": "AverageValue", "averageValue": "500k"}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 900}},
        }))
        .unwrap();
        let spec = horizontal_pod_autoscaler(&tr, &names, &a).spec.unwrap();
        let metrics = spec.metrics.unwrap();
        assert_eq!(
            metrics.iter().map(|m| m.type_.as_str()).collect::<Vec<_>>(),
            ["Pods"],
            "an extra metric replaces the default CPU target"
        );
        assert_eq!(
            spec.behavior
                .unwrap()
                .scale_down
                .unwrap()
                .stabilization_window_seconds,
            Some(900)
        );
    }

    #[test]
    fn hpa_defaults_to_cpu() {
        let tr = receiver("recv", "mon", 3);
        let a = AutoscalingSpec {
            min_replicas: 3,
            max_replicas: 5,
            target_cpu_utilization_percentage: None,
            target_memory_utilization_percentage: None,
            metrics: Vec::new(),
            behavior: None,
        };
        let spec = horizontal_pod_autoscaler(&tr, &Names::new(&tr, "cluster.local"), &a)
            .spec
            .unwrap();
        let r = spec.metrics.unwrap()[0].resource.clone().unwrap();
        assert_eq!(
            (r.name.as_str(), r.target.average_utilization),
            ("cpu", Some(80))
        );
    }
}

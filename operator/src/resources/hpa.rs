//! The broker's autoscaling/v2 HorizontalPodAutoscaler: CPU, and optionally connections per
//! pod through the custom-metrics API.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

use super::{Tier, child_meta};
use crate::crd::RobustMQCluster;

/// The per-pod metric the broker exports for live connections.
pub const CONNECTIONS_METRIC: &str = "robustmq_connections";

pub fn broker_hpa(c: &RobustMQCluster) -> HorizontalPodAutoscaler {
    let name = Tier::Broker.name(&c.name_any());
    let b = &c.spec.broker;
    let mut metrics = vec![MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(b.autoscaling.target_cpu_utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }];
    if let Some(conns) = b.autoscaling.target_connections_per_pod {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: CONNECTIONS_METRIC.into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(conns.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    HorizontalPodAutoscaler {
        metadata: child_meta(c, Tier::Broker, name.clone()),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(b.min_replicas),
            max_replicas: b.max_replicas,
            metrics: Some(metrics),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn hpa_targets_the_broker_deployment_with_cpu_and_connections() {
        let h = broker_hpa(&cluster(
            "broker: {minReplicas: 2, maxReplicas: 8, autoscaling: {targetCpuUtilization: 60, targetConnectionsPerPod: 5000}}",
        ));
        let s = h.spec.unwrap();
        assert_eq!(s.scale_target_ref.kind, "Deployment");
        assert_eq!(s.scale_target_ref.name, "demo-broker");
        assert_eq!((s.min_replicas, s.max_replicas), (Some(2), 8));
        let m = s.metrics.unwrap();
        assert_eq!(
            m[0].resource.as_ref().unwrap().target.average_utilization,
            Some(60)
        );
        let pods = m[1].pods.as_ref().unwrap();
        assert_eq!(pods.metric.name, CONNECTIONS_METRIC);
        assert_eq!(pods.target.average_value.as_ref().unwrap().0, "5000");
    }

    #[test]
    fn hpa_uses_cpu_only_by_default() {
        let s = broker_hpa(&cluster("{}")).spec.unwrap();
        assert_eq!(s.metrics.unwrap().len(), 1);
    }
}

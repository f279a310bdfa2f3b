//! PodDisruptionBudgets: meta keeps its Raft quorum through voluntary disruptions; journal
//! and broker lose at most one pod at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{Tier, child_meta, label_selector};
use crate::crd::RobustMQCluster;

/// Pods of a tier that may be disrupted at once. For meta that is the voters a quorum can
/// spare (1 of 3, 2 of 5), but at least 1 so a single-node meta can still be drained.
pub fn max_unavailable(c: &RobustMQCluster, tier: Tier) -> i32 {
    match tier {
        Tier::Meta => ((c.spec.meta.replicas - 1) / 2).max(1),
        Tier::Journal | Tier::Broker => 1,
    }
}

pub fn pdb(c: &RobustMQCluster, tier: Tier) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(c, tier, tier.name(&c.name_any())),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(c, tier))),
            selector: Some(label_selector(&c.name_any(), tier)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn meta_pdb_keeps_a_quorum() {
        assert_eq!(
            max_unavailable(&cluster("meta: {replicas: 3}"), Tier::Meta),
            1
        );
        assert_eq!(
            max_unavailable(&cluster("meta: {replicas: 5}"), Tier::Meta),
            2
        );
        assert_eq!(
            max_unavailable(&cluster("meta: {replicas: 1}"), Tier::Meta),
            1
        );
        let p = pdb(&cluster("{}"), Tier::Journal);
        assert_eq!(p.metadata.name.as_deref(), Some("demo-journal"));
        assert_eq!(p.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }
}

//! The RobustMQCluster reconciler: applies every child (ConfigMaps, Services, StatefulSets,
//! Deployment, HPA, PDBs, TLS Secret), drains journal nodes before a scale-in, and computes
//! the status from the children as observed and from meta (leader, quorum).
//!
//! Children carry a controller ownerReference, so deleting the cluster lets the garbage
//! collector remove them: no finalizer is needed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use robustmq_proto::meta::{GetClusterRequest, NodeRef, NodeRole};

use super::{Context, apply, patch_status};
use crate::crd::{Condition, RobustMQCluster, RobustMQClusterStatus, merge_conditions};
use crate::meta::meta_err;
use crate::resources::{self, Tier};
use crate::{Error, Result};

/// What the reconciler observed of the children and of meta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildStatus {
    pub meta_ready: i32,
    pub journal_ready: i32,
    pub brokers_ready: i32,
    /// Some workload has not caught up with its spec (rollout or scale in progress).
    pub rolling: bool,
    /// Meta's Raft leader id (0: none) and voter count, or the error reaching meta.
    pub meta: Result<(u64, usize), String>,
}

/// Conditions for a spec and what was observed (pure, unit-tested).
pub fn cluster_conditions(c: &RobustMQCluster, s: &ChildStatus) -> Vec<Condition> {
    let spec = &c.spec;
    let quorum = spec.meta.replicas / 2 + 1;
    let meta_quorum = match &s.meta {
        Ok((leader, voters)) if *leader != 0 => Condition::new(
            "MetaQuorum",
            true,
            "LeaderElected",
            format!(
                "leader {}, {voters} voters",
                leader_pod(&c.name_any(), *leader)
            ),
        ),
        Ok(_) => Condition::new("MetaQuorum", false, "NoLeader", "meta has no Raft leader"),
        Err(e) => Condition::new("MetaQuorum", false, "MetaUnreachable", e.clone()),
    };
    let journal = Condition::new(
        "JournalReady",
        s.journal_ready >= spec.journal.replicas,
        if s.journal_ready >= spec.journal.replicas {
            "AllReplicasReady"
        } else {
            "ReplicasNotReady"
        },
        format!("{}/{} ready", s.journal_ready, spec.journal.replicas),
    );
    let brokers_ok = s.brokers_ready >= spec.broker.min_replicas;
    let brokers = Condition::new(
        "BrokersReady",
        brokers_ok,
        if brokers_ok {
            "MinReplicasReady"
        } else {
            "ReplicasNotReady"
        },
        format!(
            "{} ready (min {})",
            s.brokers_ready, spec.broker.min_replicas
        ),
    );
    let ready = meta_quorum.is_true() && journal.is_true() && brokers.is_true();
    let degraded_reasons: Vec<String> = [
        (s.meta_ready < quorum).then(|| {
            format!(
                "meta {}/{} ready, quorum {quorum}",
                s.meta_ready, spec.meta.replicas
            )
        }),
        (spec.journal.replicas > 0 && s.journal_ready == 0)
            .then(|| "no journal node ready".to_string()),
        (s.brokers_ready == 0).then(|| "no broker ready".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let progressing = s.rolling || !ready;
    vec![
        Condition::new(
            "Ready",
            ready,
            if ready {
                "AllTiersReady"
            } else {
                "TiersNotReady"
            },
            if ready {
                "meta has quorum, journal and brokers are ready".to_string()
            } else {
                "waiting for meta quorum, journal and brokers".to_string()
            },
        ),
        meta_quorum,
        journal,
        brokers,
        Condition::new(
            "Progressing",
            progressing,
            if s.rolling {
                "RollingOut"
            } else if progressing {
                "Starting"
            } else {
                "Stable"
            },
            "",
        ),
        Condition::new(
            "Degraded",
            !degraded_reasons.is_empty(),
            if degraded_reasons.is_empty() {
                "AsExpected"
            } else {
                "TierDown"
            },
            degraded_reasons.join("; "),
        ),
    ]
}

/// Meta node ids are StatefulSet ordinals + 1.
fn leader_pod(cluster: &str, leader_id: u64) -> String {
    format!(
        "{}-{}",
        Tier::Meta.name(cluster),
        leader_id.saturating_sub(1)
    )
}

fn sts_lagging(s: &StatefulSet) -> bool {
    let want = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = s.status.clone().unwrap_or_default();
    st.observed_generation < s.metadata.generation
        || st.updated_replicas.unwrap_or(0) < want
        || st.replicas != want
}

fn deploy_lagging(d: &Deployment) -> bool {
    let st = d.status.clone().unwrap_or_default();
    st.observed_generation < d.metadata.generation
        || st.updated_replicas.unwrap_or(0) < st.replicas.unwrap_or(0)
}

#[tracing::instrument(skip_all, fields(namespace = %c.namespace().unwrap_or_default(), name = %c.name_any(), generation = ?c.metadata.generation))]
pub(super) async fn reconcile(c: Arc<RobustMQCluster>, ctx: Arc<Context>) -> Result<Action> {
    let ns = c.namespace().ok_or(Error::MissingField {
        object: "RobustMQCluster",
        field: "metadata.namespace",
    })?;
    let name = c.name_any();
    let client = &ctx.client;

    for tier in Tier::ALL {
        apply(client, &ns, &resources::configmap(&c, tier)).await?;
    }
    apply(client, &ns, &resources::headless_service(&c, Tier::Meta)).await?;
    apply(client, &ns, &resources::headless_service(&c, Tier::Journal)).await?;
    apply(client, &ns, &resources::broker_service(&c)).await?;

    if c.spec.tls.as_ref().and_then(|t| t.self_signed) == Some(true) {
        ensure_self_signed(&c, &ctx, &ns).await?;
    }

    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    drain_before_shrink(&c, &ctx, &sts_api, &ns).await?;

    let meta_sts = apply(client, &ns, &resources::meta_statefulset(&c)).await?;
    let journal_sts = apply(client, &ns, &resources::journal_statefulset(&c)).await?;
    let broker = apply(client, &ns, &resources::broker_deployment(&c)).await?;
    apply(client, &ns, &resources::broker_hpa(&c)).await?;
    for tier in Tier::ALL {
        apply(client, &ns, &resources::pdb(&c, tier)).await?;
    }

    // Status from what the API server reports of the children, and from meta itself.
    let ready = |s: &StatefulSet| {
        s.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    let meta = meta_cluster_info(&c, &ctx, &ns).await;
    let observed = ChildStatus {
        meta_ready: ready(&meta_sts),
        journal_ready: ready(&journal_sts),
        brokers_ready: broker
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        rolling: sts_lagging(&meta_sts) || sts_lagging(&journal_sts) || deploy_lagging(&broker),
        meta: meta.clone(),
    };
    let previous = c.status.clone().unwrap_or_default();
    let conditions = merge_conditions(
        &previous.conditions,
        cluster_conditions(&c, &observed),
        c.metadata.generation,
    );
    let svc = format!("{}.{ns}.svc", Tier::Broker.name(&name));
    let mut endpoints = BTreeMap::new();
    for (proto, port) in resources::broker_ports(&c) {
        endpoints.insert(proto.to_string(), format!("{svc}:{port}"));
    }
    let status = RobustMQClusterStatus {
        observed_generation: c.metadata.generation,
        conditions,
        meta_ready: observed.meta_ready,
        journal_ready: observed.journal_ready,
        brokers_ready: observed.brokers_ready,
        meta_leader: match meta {
            Ok((leader, _)) if leader != 0 => Some(leader_pod(&name, leader)),
            _ => None,
        },
        endpoints,
    };
    let now_ready = crate::crd::condition(&status.conditions, "Ready").is_some_and(|c| c.is_true());
    let was_ready =
        crate::crd::condition(&previous.conditions, "Ready").is_some_and(|c| c.is_true());
    if previous.observed_generation != c.metadata.generation {
        ctx.event(
            c.as_ref(),
            EventType::Normal,
            "Applied",
            format!("applied generation {}", c.metadata.generation.unwrap_or(0)),
        )
        .await;
    }
    if now_ready && !was_ready {
        ctx.event(
            c.as_ref(),
            EventType::Normal,
            "Ready",
            "all tiers ready".into(),
        )
        .await;
    }
    let api: Api<RobustMQCluster> = Api::namespaced(client.clone(), &ns);
    if c.status.as_ref() != Some(&status) {
        patch_status(&api, &name, &status).await?;
    }
    // Meta's leader is not a Kubernetes object, so nothing wakes us when it changes: poll.
    Ok(Action::requeue(if now_ready {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(5)
    }))
}

async fn meta_cluster_info(
    c: &RobustMQCluster,
    ctx: &Context,
    ns: &str,
) -> std::result::Result<(u64, usize), String> {
    let mut client = ctx
        .meta
        .client(&c.name_any(), ns)
        .map_err(|e| e.to_string())?;
    let call = client.get_cluster(GetClusterRequest {});
    match tokio::time::timeout(Duration::from_secs(3), call).await {
        Ok(Ok(info)) => {
            let info = info.into_inner();
            Ok((info.leader_id, info.voters.len()))
        }
        Ok(Err(status)) => Err(format!("GetCluster: {}", status.message())),
        Err(_) => Err(format!(
            "GetCluster: no answer from {} within 3s",
            ctx.meta.endpoint(&c.name_any(), ns)
        )),
    }
}

/// Creates the self-signed Secret once; an existing one is kept (clients trust it).
async fn ensure_self_signed(c: &RobustMQCluster, ctx: &Context, ns: &str) -> Result<()> {
    let secret = resources::self_signed_secret(c)?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = secret.metadata.name.clone().unwrap_or_default();
    if api.get_opt(&name).await?.is_none() {
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                ctx.event(
                    c,
                    EventType::Normal,
                    "CertificateCreated",
                    format!("self-signed certificate in Secret {name}"),
                )
                .await
            }
            // Another reconcile created it first: keep that one.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Before the journal StatefulSet shrinks, asks meta to drain the nodes it removes so their
/// shards move first. An error stops the reconcile before the scale-in, and it is retried.
async fn drain_before_shrink(
    c: &RobustMQCluster,
    ctx: &Context,
    sts: &Api<StatefulSet>,
    ns: &str,
) -> Result<()> {
    let Some(current) = sts.get_opt(&Tier::Journal.name(&c.name_any())).await? else {
        return Ok(());
    };
    let have = current.spec.and_then(|s| s.replicas).unwrap_or(0);
    let removed = resources::journal_nodes_removed(have, c.spec.journal.replicas);
    if removed.is_empty() {
        return Ok(());
    }
    let mut client = ctx.meta.client(&c.name_any(), ns)?;
    for id in &removed {
        let req = NodeRef {
            role: NodeRole::Journal as i32,
            id: *id,
        };
        match client.drain_node(req).await {
            Ok(_) => {}
            // Never registered (e.g. the pod never started): nothing to drain.
            Err(s) if super::is_not_found(&s) => {}
            Err(s) => return Err(meta_err("DrainNode", &format!("journal node {id}"), s)),
        }
    }
    ctx.event(
        c,
        EventType::Normal,
        "JournalDrained",
        format!(
            "drained journal nodes {removed:?} before scaling to {}",
            c.spec.journal.replicas
        ),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::condition;
    use crate::resources::tests::cluster;

    fn status_of(conds: &[Condition], t: &str) -> String {
        condition(conds, t)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn ready_needs_meta_quorum_journal_and_min_brokers() {
        let c = cluster("meta: {replicas: 3}\njournal: {replicas: 2}\nbroker: {minReplicas: 2}");
        let all = ChildStatus {
            meta_ready: 3,
            journal_ready: 2,
            brokers_ready: 2,
            rolling: false,
            meta: Ok((1, 3)),
        };
        let conds = cluster_conditions(&c, &all);
        for t in ["Ready", "MetaQuorum", "JournalReady", "BrokersReady"] {
            assert_eq!(status_of(&conds, t), "True", "{t}: {conds:?}");
        }
        assert_eq!(status_of(&conds, "Progressing"), "False");
        assert_eq!(status_of(&conds, "Degraded"), "False");
        assert!(
            condition(&conds, "MetaQuorum")
                .unwrap()
                .message
                .contains("demo-meta-0")
        );

        let no_meta = ChildStatus {
            meta: Err("unreachable".into()),
            ..all.clone()
        };
        let conds = cluster_conditions(&c, &no_meta);
        assert_eq!(status_of(&conds, "Ready"), "False");
        assert_eq!(
            condition(&conds, "MetaQuorum").unwrap().reason,
            "MetaUnreachable"
        );

        let one_broker = ChildStatus {
            brokers_ready: 1,
            ..all.clone()
        };
        let conds = cluster_conditions(&c, &one_broker);
        assert_eq!(status_of(&conds, "BrokersReady"), "False");
        assert_eq!(status_of(&conds, "Progressing"), "True");
    }

    #[test]
    fn losing_meta_quorum_is_degraded() {
        let c = cluster("meta: {replicas: 3}");
        let s = ChildStatus {
            meta_ready: 1,
            journal_ready: 3,
            brokers_ready: 2,
            rolling: false,
            meta: Ok((0, 3)),
        };
        let conds = cluster_conditions(&c, &s);
        assert_eq!(status_of(&conds, "Degraded"), "True");
        assert!(
            condition(&conds, "Degraded")
                .unwrap()
                .message
                .contains("quorum 2")
        );
        assert_eq!(condition(&conds, "MetaQuorum").unwrap().reason, "NoLeader");
    }
}

//! The Topic reconciler: creates the topic in the cluster's meta-service with the chosen
//! storage policy and grows its shards; a finalizer deletes it from meta on deletion unless
//! `deletionPolicy: Retain`.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use robustmq_proto::meta::{self as pb, AddPartitionsRequest, NameRequest};

use super::{Context, finalizer_error, is_not_found, patch_status};
use crate::crd::{
    Condition, DeletionPolicy, RobustMQCluster, StoragePolicy, Topic, TopicStatus, merge_conditions,
};
use crate::meta::meta_err;
use crate::{Error, Result};

pub const FINALIZER: &str = "robustmq.io/topic";

#[tracing::instrument(skip_all, fields(namespace = %t.namespace().unwrap_or_default(), name = %t.name_any(), generation = ?t.metadata.generation))]
pub(super) async fn reconcile(t: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let ns = t.namespace().ok_or(Error::MissingField {
        object: "Topic",
        field: "metadata.namespace",
    })?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let name = t.name_any();
    finalizer(&api, FINALIZER, t, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx, &ns, &api).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| finalizer_error(&name, e))
}

/// The topic as meta's message (pure, unit-tested).
pub fn topic_to_meta(t: &Topic, policy: &str) -> Result<pb::Topic> {
    let name = t.name_any();
    let retention = match &t.spec.retention {
        Some(r) => Some(r.to_meta().map_err(|reason| Error::Invalid {
            kind: "Topic",
            name: name.clone(),
            reason,
        })?),
        None => None,
    };
    Ok(pb::Topic {
        name: name.clone(),
        shards: t.spec.partitions.max(1) as u32,
        storage_policy: policy.to_string(),
        retention,
        kafka_name: t
            .spec
            .kafka
            .as_ref()
            .map(|k| k.name.clone())
            .unwrap_or_default(),
        mqtt_filter: t
            .spec
            .mqtt
            .as_ref()
            .map(|m| m.filter.clone())
            .unwrap_or_default(),
        created_at_ms: 0,
        config: Default::default(),
    })
}

struct Observed {
    shards: i32,
    engine: Option<String>,
    policy: Option<String>,
}

async fn set_status(
    t: &Topic,
    api: &Api<Topic>,
    cond: Condition,
    observed: Observed,
) -> Result<()> {
    let previous = t.status.clone().unwrap_or_default();
    let status = TopicStatus {
        observed_generation: t.metadata.generation,
        conditions: merge_conditions(&previous.conditions, vec![cond], t.metadata.generation),
        shards: observed.shards,
        engine: observed.engine,
        storage_policy: observed.policy,
    };
    if t.status.as_ref() != Some(&status) {
        patch_status(api, &t.name_any(), &status).await?;
    }
    Ok(())
}

/// Sets Ready=False with `reason`, keeps what was last observed, and retries later.
async fn not_ready(t: &Topic, api: &Api<Topic>, reason: &str, message: String) -> Result<Action> {
    let prev = t.status.clone().unwrap_or_default();
    tracing::info!(topic = %t.name_any(), reason, %message, "topic not ready");
    set_status(
        t,
        api,
        Condition::new("Ready", false, reason, message),
        Observed {
            shards: prev.shards,
            engine: prev.engine,
            policy: prev.storage_policy,
        },
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(10)))
}

async fn apply(t: &Topic, ctx: &Context, ns: &str, api: &Api<Topic>) -> Result<Action> {
    let name = t.name_any();
    let clusters: Api<RobustMQCluster> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cluster) = clusters.get_opt(&t.spec.cluster_ref).await? else {
        let msg = format!("RobustMQCluster {} not found in {ns}", t.spec.cluster_ref);
        return not_ready(t, api, "ClusterNotFound", msg).await;
    };
    let Some(policy_name) = t
        .spec
        .storage_policy
        .clone()
        .or(cluster.spec.default_storage_policy.clone())
    else {
        let msg = "no storagePolicy and the cluster has no defaultStoragePolicy".to_string();
        return not_ready(t, api, "NoStoragePolicy", msg).await;
    };
    let policies: Api<StoragePolicy> = Api::namespaced(ctx.client.clone(), ns);
    let Some(policy) = policies.get_opt(&policy_name).await? else {
        let msg = format!("StoragePolicy {policy_name} not found in {ns}");
        return not_ready(t, api, "StoragePolicyNotFound", msg).await;
    };
    let policy_ready = policy
        .status
        .as_ref()
        .and_then(|s| crate::crd::condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.is_true());
    if !policy_ready {
        let msg = format!("StoragePolicy {policy_name} is not Ready yet");
        return not_ready(t, api, "StoragePolicyNotReady", msg).await;
    }

    let mut client = ctx.meta.client(&t.spec.cluster_ref, ns)?;
    let want = topic_to_meta(t, &policy_name)?;
    let existing = match client.get_topic(NameRequest { name: name.clone() }).await {
        Ok(r) => Some(r.into_inner()),
        Err(s) if is_not_found(&s) => None,
        Err(s) => return Err(meta_err("GetTopic", &name, s)),
    };
    let result = match existing {
        None => {
            let r = client.create_topic(want.clone()).await;
            if r.is_ok() {
                ctx.event(
                    t,
                    EventType::Normal,
                    "Created",
                    format!(
                        "topic created in meta with {} shards, policy {policy_name}",
                        want.shards
                    ),
                )
                .await;
            }
            r
        }
        Some(cur) => {
            let have = cur.shards.len() as u32;
            if have < want.shards {
                let r = client
                    .add_partitions(AddPartitionsRequest {
                        name: name.clone(),
                        shards: want.shards,
                    })
                    .await;
                if r.is_ok() {
                    ctx.event(
                        t,
                        EventType::Normal,
                        "PartitionsAdded",
                        format!("shards {have} -> {}", want.shards),
                    )
                    .await;
                }
                r
            } else {
                Ok(tonic::Response::new(cur))
            }
        }
    };
    let topic = match result {
        Ok(r) => r.into_inner(),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::NotFound
            ) =>
        {
            return not_ready(t, api, "Rejected", s.message().to_string()).await;
        }
        Err(s) => return Err(meta_err("CreateTopic/AddPartitions", &name, s)),
    };
    let in_meta_policy = topic
        .topic
        .as_ref()
        .map(|t| t.storage_policy.clone())
        .unwrap_or_default();
    set_status(
        t,
        api,
        Condition::new(
            "Ready",
            true,
            "Synced",
            format!("{} shards in meta", topic.shards.len()),
        ),
        Observed {
            shards: topic.shards.len() as i32,
            engine: Some(policy.spec.engine.as_str().to_string()),
            policy: Some(if in_meta_policy.is_empty() {
                policy_name
            } else {
                in_meta_policy
            }),
        },
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(t: &Topic, ctx: &Context, ns: &str) -> Result<Action> {
    let name = t.name_any();
    if t.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            t,
            EventType::Normal,
            "Retained",
            "topic kept in meta (deletionPolicy: Retain)".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    let clusters: Api<RobustMQCluster> = Api::namespaced(ctx.client.clone(), ns);
    // With the cluster gone its meta (and the topic's data) are gone too: never block the
    // deletion on a meta that no longer exists.
    if !ctx.meta.is_overridden() && clusters.get_opt(&t.spec.cluster_ref).await?.is_none() {
        return Ok(Action::await_change());
    }
    let mut client = ctx.meta.client(&t.spec.cluster_ref, ns)?;
    match client
        .delete_topic(NameRequest { name: name.clone() })
        .await
    {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => return Err(meta_err("DeleteTopic", &name, s)),
    }
    ctx.event(
        t,
        EventType::Normal,
        "Deleted",
        "topic deleted from meta".into(),
    )
    .await;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::TopicSpec;

    #[test]
    fn topic_maps_bindings_retention_and_policy_to_meta() {
        let spec: TopicSpec = serde_yaml::from_str(
            "clusterRef: demo\npartitions: 6\nkafka: {name: orders}\nmqtt: {filter: 'orders/#'}\nretention: {time: 2h, bytes: 1000}",
        )
        .unwrap();
        let t = Topic::new("orders-topic", spec);
        let m = topic_to_meta(&t, "durable").unwrap();
        assert_eq!(m.name, "orders-topic");
        assert_eq!(m.shards, 6);
        assert_eq!(m.storage_policy, "durable");
        assert_eq!(m.kafka_name, "orders");
        assert_eq!(m.mqtt_filter, "orders/#");
        let r = m.retention.unwrap();
        assert_eq!((r.time_ms, r.bytes), (7_200_000, 1000));
        assert_eq!(t.spec.deletion_policy, DeletionPolicy::Delete);
    }
}

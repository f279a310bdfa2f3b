//! The StoragePolicy reconciler: creates or updates the policy of the same name in the
//! cluster's meta-service; a finalizer deletes it there (meta refuses while topics use it,
//! and the deletion is retried until they are gone).

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use robustmq_proto::meta::NameRequest;

use super::{Context, finalizer_error, is_not_found, patch_status};
use crate::crd::{
    Condition, RobustMQCluster, StoragePolicy, StoragePolicyStatus, merge_conditions,
};
use crate::meta::meta_err;
use crate::{Error, Result};

pub const FINALIZER: &str = "robustmq.io/storage-policy";

#[tracing::instrument(skip_all, fields(namespace = %p.namespace().unwrap_or_default(), name = %p.name_any(), generation = ?p.metadata.generation))]
pub(super) async fn reconcile(p: Arc<StoragePolicy>, ctx: Arc<Context>) -> Result<Action> {
    let ns = p.namespace().ok_or(Error::MissingField {
        object: "StoragePolicy",
        field: "metadata.namespace",
    })?;
    let api: Api<StoragePolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let name = p.name_any();
    finalizer(&api, FINALIZER, p, |event| async {
        match event {
            Finalizer::Apply(p) => apply(&p, &ctx, &ns, &api).await,
            Finalizer::Cleanup(p) => cleanup(&p, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| finalizer_error(&name, e))
}

async fn set_status(
    p: &StoragePolicy,
    api: &Api<StoragePolicy>,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<()> {
    let previous = p.status.clone().unwrap_or_default();
    let status = StoragePolicyStatus {
        observed_generation: p.metadata.generation,
        conditions: merge_conditions(
            &previous.conditions,
            vec![Condition::new("Ready", ready, reason, message)],
            p.metadata.generation,
        ),
    };
    if p.status.as_ref() != Some(&status) {
        patch_status(api, &p.name_any(), &status).await?;
    }
    Ok(())
}

async fn apply(
    p: &StoragePolicy,
    ctx: &Context,
    ns: &str,
    api: &Api<StoragePolicy>,
) -> Result<Action> {
    let name = p.name_any();
    let clusters: Api<RobustMQCluster> = Api::namespaced(ctx.client.clone(), ns);
    if clusters.get_opt(&p.spec.cluster_ref).await?.is_none() {
        set_status(
            p,
            api,
            false,
            "ClusterNotFound",
            format!("RobustMQCluster {} not found in {ns}", p.spec.cluster_ref),
        )
        .await?;
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let want = p.to_meta(&name).map_err(|reason| Error::Invalid {
        kind: "StoragePolicy",
        name: name.clone(),
        reason,
    })?;
    let mut client = ctx.meta.client(&p.spec.cluster_ref, ns)?;
    let current = match client.get_policy(NameRequest { name: name.clone() }).await {
        Ok(r) => Some(r.into_inner()),
        Err(s) if is_not_found(&s) => None,
        Err(s) => return Err(meta_err("GetPolicy", &name, s)),
    };
    let result = match current {
        None => client.create_policy(want).await.map(|_| "created"),
        Some(cur) if cur != want => client.update_policy(want).await.map(|_| "updated"),
        Some(_) => Ok("unchanged"),
    };
    match result {
        Ok(what) => {
            if what != "unchanged" {
                ctx.event(
                    p,
                    EventType::Normal,
                    "Synced",
                    format!("policy {what} in meta"),
                )
                .await;
            }
            set_status(
                p,
                api,
                true,
                "Synced",
                format!("engine {} in meta", p.spec.engine.as_str()),
            )
            .await?;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        // Meta judged the policy itself invalid: report it and retry later, no hot loop.
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
            ) =>
        {
            set_status(p, api, false, "Rejected", s.message().to_string()).await?;
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(s) => Err(meta_err("CreatePolicy/UpdatePolicy", &name, s)),
    }
}

async fn cleanup(p: &StoragePolicy, ctx: &Context, ns: &str) -> Result<Action> {
    let name = p.name_any();
    let clusters: Api<RobustMQCluster> = Api::namespaced(ctx.client.clone(), ns);
    // The cluster (and its meta) is gone: nothing left to delete from.
    if !ctx.meta.is_overridden() && clusters.get_opt(&p.spec.cluster_ref).await?.is_none() {
        return Ok(Action::await_change());
    }
    let mut client = ctx.meta.client(&p.spec.cluster_ref, ns)?;
    match client
        .delete_policy(NameRequest { name: name.clone() })
        .await
    {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => return Err(meta_err("DeletePolicy", &name, s)),
    }
    ctx.event(
        p,
        EventType::Normal,
        "Deleted",
        "policy deleted from meta".into(),
    )
    .await;
    Ok(Action::await_change())
}

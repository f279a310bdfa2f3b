//! The reconcilers, one per kind, and what they share: the [`Context`] (API client, meta
//! clients, metrics, event recorder), error handling with per-object exponential backoff,
//! and [`run`], which drives all three kube-runtime Controllers until shutdown.

mod cluster;
mod storage_policy;
mod topic;

pub use cluster::{ChildStatus, cluster_conditions};

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{RobustMQCluster, StoragePolicy, Topic};
use crate::meta::MetaClients;
use crate::metrics::Metrics;
use crate::{Error, FIELD_MANAGER};

/// State shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub meta: MetaClients,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Consecutive failures per object, for the backoff; cleared by a success.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, meta: MetaClients, metrics: Arc<Metrics>, instance: String) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            meta,
            metrics,
            failures: Mutex::default(),
        }
    }

    /// Publishes an Event about `obj`; failing to publish is logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing event failed");
        }
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Records a failure and returns how long to wait: 2 s doubling to 5 min.
    fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff_delay(*n)
    }
}

/// Delay after the `n`th consecutive failure (n >= 1).
pub fn backoff_delay(n: u32) -> Duration {
    let secs = 2u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Server-side applies `obj` under the operator's field manager (forcing ownership of the
/// fields it sets, which is what a controller must do).
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let name = obj.meta().name.clone().unwrap_or_default();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    Ok(api.patch(&name, &pp, &Patch::Apply(obj)).await?)
}

/// Merge-patches the status subresource.
pub async fn patch_status<K>(api: &Api<K>, name: &str, status: impl Serialize) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Wraps a reconcile with metrics, backoff bookkeeping and a Warning Event on failure.
async fn instrumented<K, F, Fut>(
    kind: &'static str,
    obj: Arc<K>,
    ctx: Arc<Context>,
    f: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let _timer = ctx.metrics.start(kind);
    let k = key(obj.as_ref());
    let result = f(obj.clone(), ctx.clone()).await;
    match &result {
        Ok(_) => ctx.succeeded(&k),
        Err(e) => {
            ctx.metrics.failed(kind, e.metric_label());
            tracing::warn!(object = %k, error = %e, "reconcile failed");
            ctx.event(
                obj.as_ref(),
                EventType::Warning,
                "ReconcileFailed",
                e.to_string(),
            )
            .await;
        }
    }
    result
}

fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    _err: &Error,
    ctx: Arc<Context>,
) -> Action {
    Action::requeue(ctx.backoff(&key(obj.as_ref())))
}

/// Runs the three controllers until `shutdown` resolves. `namespace`: watch one namespace,
/// or all when None.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let signal = {
        let tx = tx.clone();
        async move {
            shutdown.await;
            let _ = tx.send(());
        }
    };
    let trigger = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };

    let wc = watcher::Config::default;
    // Children are watched through their label, so the operator does not cache every
    // Service and ConfigMap of the cluster.
    let owned = || wc().labels("app.kubernetes.io/managed-by=robustmq-operator");
    let clusters = Controller::new(api::<RobustMQCluster>(&client, &namespace), wc())
        .owns(api::<StatefulSet>(&client, &namespace), owned())
        .owns(api::<Deployment>(&client, &namespace), owned())
        .owns(api::<Service>(&client, &namespace), owned())
        .owns(api::<ConfigMap>(&client, &namespace), owned())
        .graceful_shutdown_on(trigger(&tx))
        .run(
            |obj, ctx| instrumented("robustmqcluster", obj, ctx, cluster::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster controller");
            }
        });
    let policies = Controller::new(api::<StoragePolicy>(&client, &namespace), wc())
        .graceful_shutdown_on(trigger(&tx))
        .run(
            |obj, ctx| instrumented("storagepolicy", obj, ctx, storage_policy::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "storage policy controller");
            }
        });
    let topics = Controller::new(api::<Topic>(&client, &namespace), wc())
        .graceful_shutdown_on(trigger(&tx))
        .run(
            |obj, ctx| instrumented("topic", obj, ctx, topic::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "topic controller");
            }
        });
    tokio::join!(signal, clusters, policies, topics);
}

/// Unwraps kube-runtime's finalizer error into ours.
fn finalizer_error(name: &str, e: kube::runtime::finalizer::Error<Error>) -> Error {
    use kube::runtime::finalizer::Error as F;
    match e {
        F::ApplyFailed(e) | F::CleanupFailed(e) => e,
        F::AddFinalizer(e) | F::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer {
            name: name.to_string(),
            message: other.to_string(),
        },
    }
}

/// Whether a tonic status means "does not exist".
fn is_not_found(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff_delay(1), Duration::from_secs(2));
        assert_eq!(backoff_delay(2), Duration::from_secs(4));
        assert_eq!(backoff_delay(5), Duration::from_secs(32));
        assert_eq!(backoff_delay(40), Duration::from_secs(300));
    }
}

#[cfg(test)]
mod mock_tests;

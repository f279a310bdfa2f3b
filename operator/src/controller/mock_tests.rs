//! The cluster reconciler against a scripted API server (a tower service standing in for
//! kube-apiserver, as in kube-rs's controller-rs): which requests it makes, in which order,
//! and what it must not do when meta cannot drain journal nodes.

use std::sync::{Arc, Mutex};

use kube::Client;
use kube::client::Body;

use super::{Context, cluster};
use crate::crd::RobustMQCluster;
use crate::meta::MetaClients;
use crate::metrics::Metrics;
use crate::resources::{self, tests::cluster as cluster_from};

const NOT_FOUND: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#;

/// A fake API server: GET of the journal StatefulSet returns it with `journal_replicas`
/// (or 404), other GETs 404, writes echo the object (status writes return the cluster).
/// Returns the client and the log of "METHOD path?query" lines.
fn api_server(
    c: &RobustMQCluster,
    journal_replicas: Option<i32>,
) -> (Client, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let mut journal = resources::journal_statefulset(c);
    if let (Some(spec), Some(n)) = (journal.spec.as_mut(), journal_replicas) {
        spec.replicas = Some(n);
    }
    let journal = serde_json::to_vec(&journal).expect("journal json");
    let cluster_json = serde_json::to_vec(c).expect("cluster json");
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let log = log.clone();
        let journal = journal.clone();
        let cluster_json = cluster_json.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect_bytes().await.unwrap_or_default();
            let path = parts.uri.path().to_string();
            log.lock()
                .unwrap()
                .push(format!("{} {}", parts.method, parts.uri));
            let (code, out): (u16, Vec<u8>) = match parts.method.as_str() {
                "GET"
                    if path.ends_with("/statefulsets/demo-journal")
                        && journal_replicas.is_some() =>
                {
                    (200, journal)
                }
                "GET" => (404, NOT_FOUND.as_bytes().to_vec()),
                _ if path.contains("/robustmqclusters/") => (200, cluster_json),
                _ => (200, body.to_vec()),
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(out))
                .expect("response");
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    (Client::new(svc, "default"), calls)
}

fn context(client: Client) -> Arc<Context> {
    // Nothing listens on port 1: every meta call fails fast with "connection refused".
    Arc::new(Context::new(
        client,
        MetaClients::new(Some("127.0.0.1:1".into())),
        Arc::new(Metrics::default()),
        "test".into(),
    ))
}

fn patches(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| c.starts_with("PATCH")).collect()
}

#[tokio::test]
async fn reconcile_applies_every_child_under_the_operator_field_manager() {
    let c = cluster_from("meta: {replicas: 3}\njournal: {replicas: 3}");
    let (client, calls) = api_server(&c, None);
    let action = cluster::reconcile(Arc::new(c), context(client)).await;
    assert!(action.is_ok(), "{action:?}");
    let calls = calls.lock().unwrap().clone();
    let applied = patches(&calls);
    for child in [
        "/configmaps/demo-meta-config",
        "/configmaps/demo-journal-config",
        "/configmaps/demo-broker-config",
        "/services/demo-meta",
        "/services/demo-journal",
        "/services/demo-broker",
        "/statefulsets/demo-meta",
        "/statefulsets/demo-journal",
        "/deployments/demo-broker",
        "/horizontalpodautoscalers/demo-broker",
        "/poddisruptionbudgets/demo-meta",
        "/poddisruptionbudgets/demo-journal",
        "/poddisruptionbudgets/demo-broker",
    ] {
        let call = applied
            .iter()
            .find(|p| p.contains(&format!("{child}?")))
            .unwrap_or_else(|| panic!("{child} was not applied: {calls:#?}"));
        assert!(
            call.contains("fieldManager=robustmq-operator") && call.contains("force=true"),
            "{call}"
        );
    }
    // Status is written last, from what was observed (meta unreachable here).
    let last = applied.last().expect("a status patch");
    assert!(last.contains("/robustmqclusters/demo/status"), "{calls:#?}");
    // No TLS asked: no Secret touched.
    assert!(!calls.iter().any(|c| c.contains("/secrets")), "{calls:#?}");
}

#[tokio::test]
async fn the_journal_does_not_shrink_while_meta_cannot_drain_the_removed_nodes() {
    let c = cluster_from("journal: {replicas: 3}");
    let (client, calls) = api_server(&c, Some(5));
    let result = cluster::reconcile(Arc::new(c), context(client)).await;
    let err = result.expect_err("the reconcile must fail while the drain fails");
    assert_eq!(err.metric_label(), "meta", "{err}");
    assert!(err.to_string().contains("DrainNode"), "{err}");
    let calls = calls.lock().unwrap().clone();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("PATCH") && c.contains("/statefulsets/demo-journal?")),
        "the journal StatefulSet was shrunk before its nodes were drained: {calls:#?}"
    );
}

#[tokio::test]
async fn growing_the_journal_needs_no_drain() {
    let c = cluster_from("journal: {replicas: 3}");
    let (client, calls) = api_server(&c, Some(1));
    let result = cluster::reconcile(Arc::new(c), context(client)).await;
    assert!(result.is_ok(), "{result:?}");
    let calls = calls.lock().unwrap().clone();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("PATCH") && c.contains("/statefulsets/demo-journal?")),
        "{calls:#?}"
    );
}

#[tokio::test]
async fn a_self_signed_secret_is_created_once() {
    let c = cluster_from("tls: {selfSigned: true}");
    let (client, calls) = api_server(&c, None);
    cluster::reconcile(Arc::new(c), context(client))
        .await
        .expect("reconcile");
    let calls = calls.lock().unwrap().clone();
    let posted: Vec<_> = calls
        .iter()
        .filter(|c| c.starts_with("POST") && c.contains("/secrets"))
        .collect();
    assert_eq!(posted.len(), 1, "{calls:#?}");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("GET") && c.contains("/secrets/demo-tls"))
    );
}

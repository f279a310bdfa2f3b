//! Admin HTTP: liveness, readiness, Prometheus metrics and a JSON view of the cluster.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;

use crate::node::MetaNode;

pub fn router(node: Arc<MetaNode>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/cluster", get(cluster))
        .with_state(node)
}

async fn readyz(State(node): State<Arc<MetaNode>>) -> impl IntoResponse {
    if node.is_ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else if node.leader().is_none() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader known\n".to_string(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "applying committed entries\n".to_string(),
        )
    }
}

async fn metrics(State(node): State<Arc<MetaNode>>) -> impl IntoResponse {
    let m = node.raft_metrics();
    let gauges = &node.metrics;
    let leader = m.current_leader.unwrap_or(0);
    gauges.term.set(m.current_term as i64);
    gauges.leader_id.set(leader as i64);
    gauges.is_leader.set(i64::from(leader == node.id));
    gauges
        .commit_index
        .set(node.committed.load(std::sync::atomic::Ordering::Relaxed) as i64);
    gauges
        .applied_index
        .set(m.last_applied.map_or(0, |l| l.index) as i64);
    gauges
        .last_log_index
        .set(m.last_log_index.unwrap_or(0) as i64);
    gauges
        .revision
        .set(node.shared.state.read().expect("state lock").revision() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gauges.render(),
    )
}

#[derive(Serialize)]
struct MemberJson {
    id: u64,
    addr: String,
}

#[derive(Serialize)]
struct ClusterJson {
    node_id: u64,
    leader_id: Option<u64>,
    term: u64,
    voters: Vec<MemberJson>,
    learners: Vec<MemberJson>,
    last_applied: u64,
    /// Last log index covered by this node's snapshot (0: none).
    snapshot_index: u64,
    /// Last log index purged from this node's log (0: none).
    purged_index: u64,
}

async fn cluster(State(node): State<Arc<MetaNode>>) -> Json<ClusterJson> {
    let m = node.raft_metrics();
    let (voters, learners) = node.members();
    let list = |m: std::collections::BTreeMap<u64, String>| {
        m.into_iter()
            .map(|(id, addr)| MemberJson { id, addr })
            .collect()
    };
    Json(ClusterJson {
        node_id: node.id,
        leader_id: m.current_leader,
        term: m.current_term,
        voters: list(voters),
        learners: list(learners),
        last_applied: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        purged_index: m.purged.map_or(0, |l| l.index),
    })
}

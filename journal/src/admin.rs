//! Admin HTTP (axum) on `--admin-addr`: liveness, readiness, Prometheus metrics and a JSON
//! list of shards.
//!
//! - `GET /healthz`  200 while the process serves HTTP at all.
//! - `GET /readyz`   200 once shards are open, gRPC is listening and (with meta) the node
//!   registered and reconciled its shard list; 503 before.
//! - `GET /metrics`  Prometheus text.
//! - `GET /v1/shards` JSON array of shard stats.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::registry::ShardManager;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub shards: Arc<ShardManager>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

#[derive(Serialize)]
struct ShardJson {
    topic: String,
    shard: u32,
    engine: &'static str,
    origin: &'static str,
    leader: u64,
    epoch: u64,
    log_start_offset: u64,
    high_watermark: u64,
    log_end_offset: u64,
    size_bytes: u64,
    segments: u32,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/shards", get(shards))
        .with_state(state)
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(&s.shards),
    )
}

async fn shards(State(s): State<AdminState>) -> Json<Vec<ShardJson>> {
    Json(
        s.shards
            .list()
            .iter()
            .map(|h| {
                let st = h.stats();
                let l = h.leadership();
                ShardJson {
                    topic: h.id.topic.clone(),
                    shard: h.id.index,
                    engine: h.spec.engine.as_str(),
                    origin: h.origin.as_str(),
                    leader: l.leader,
                    epoch: l.epoch,
                    log_start_offset: st.log_start,
                    high_watermark: st.high_watermark,
                    log_end_offset: st.log_end,
                    size_bytes: st.size_bytes,
                    segments: st.segments,
                }
            })
            .collect(),
    )
}

/// Serves the admin router on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

//! The admin HTTP port: `/healthz` (the process is up), `/readyz` (listening and topic
//! bindings loaded) and `/metrics` (Prometheus text: MQTT, and Kafka when it is served).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::kafka::KafkaContext;
use crate::mqtt::Context;

#[derive(Clone)]
pub struct AdminState {
    pub ctx: Arc<Context>,
    /// Present when a Kafka listener is configured.
    pub kafka: Option<Arc<KafkaContext>>,
    pub ready: Arc<AtomicBool>,
}

async fn readyz(State(s): State<AdminState>) -> (StatusCode, &'static str) {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Appends one unlabelled sample with its `# TYPE` line (Prometheus text format).
pub fn sample(out: &mut String, name: &str, kind: &str, value: u64) {
    use std::fmt::Write as _;
    let _ = write!(out, "# TYPE {name} {kind}\n{name} {value}\n");
}

async fn metrics(State(s): State<AdminState>) -> String {
    let st = &s.ctx.stats;
    let g = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let mut out = String::new();
    for (name, kind, value) in [
        ("robustmq_mqtt_connections", "gauge", g(&st.connections)),
        (
            "robustmq_mqtt_connects_total",
            "counter",
            g(&st.connects_total),
        ),
        (
            "robustmq_mqtt_messages_in_total",
            "counter",
            g(&st.messages_in),
        ),
        (
            "robustmq_mqtt_messages_out_total",
            "counter",
            g(&st.messages_out),
        ),
        (
            "robustmq_mqtt_messages_dropped_total",
            "counter",
            g(&st.messages_dropped) + s.ctx.dispatcher.dropped(),
        ),
        (
            "robustmq_mqtt_malformed_packets_total",
            "counter",
            g(&st.malformed_packets),
        ),
    ] {
        sample(&mut out, name, kind, value);
    }
    if let Some(k) = &s.kafka {
        k.stats.render(&mut out);
    }
    out
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

pub async fn serve(listener: TcpListener, state: AdminState, cancel: CancellationToken) {
    let r = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "admin server stopped");
    }
}

//! `$SYS/brokers/{node_id}/...`: this broker's statistics, published every
//! `sys_interval_ms` to its own subscribers (QoS 0, not stored: they describe one broker,
//! and `#`-bound topics never match `$` topics anyway).
//!
//! ```text
//! $SYS/brokers/{id}/version              crate version
//! $SYS/brokers/{id}/uptime               seconds since start
//! $SYS/brokers/{id}/clients/connected    live connections
//! $SYS/brokers/{id}/clients/total        connections accepted since start
//! $SYS/brokers/{id}/messages/received    PUBLISH packets stored (wills included)
//! $SYS/brokers/{id}/messages/sent        PUBLISH packets written to clients
//! $SYS/brokers/{id}/messages/dropped     messages dropped (slow clients, size limits)
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Context, now_ms};
use crate::storage::record::MqttRecord;

/// The `$SYS` topics and their current values.
pub fn snapshot(ctx: &Context, started: Instant) -> Vec<(String, String)> {
    let st = &ctx.stats;
    let base = format!("$SYS/brokers/{}", ctx.node_id);
    let dropped = st.messages_dropped.load(Ordering::Relaxed) + ctx.dispatcher.dropped();
    [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("uptime", started.elapsed().as_secs().to_string()),
        (
            "clients/connected",
            st.connections.load(Ordering::Relaxed).to_string(),
        ),
        (
            "clients/total",
            st.connects_total.load(Ordering::Relaxed).to_string(),
        ),
        (
            "messages/received",
            st.messages_in.load(Ordering::Relaxed).to_string(),
        ),
        (
            "messages/sent",
            st.messages_out.load(Ordering::Relaxed).to_string(),
        ),
        ("messages/dropped", dropped.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{base}/{k}"), v))
    .collect()
}

pub async fn run(ctx: Arc<Context>, every: Duration) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (topic, value) in snapshot(&ctx, started) {
            ctx.dispatcher.deliver_local(MqttRecord {
                topic,
                payload: Bytes::from(value),
                qos: 0,
                timestamp_ms: now_ms() as i64,
                ..Default::default()
            });
        }
    }
}

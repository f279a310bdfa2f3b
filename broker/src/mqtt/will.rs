//! Will messages: published when a connection ends without DISCONNECT 0x00, after the
//! will delay (MQTT 5; at most the session expiry), unless the client reconnects first.

use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::LastWill;

use super::{Context, ingest, now_ms};
use crate::storage::record::MqttRecord;

/// The record a will becomes.
pub fn to_record(client_id: &str, w: &LastWill) -> MqttRecord {
    let p = &w.properties;
    MqttRecord {
        topic: w.topic.clone(),
        payload: w.payload.clone(),
        qos: w.qos as u8,
        retain: w.retain,
        from_client: client_id.to_string(),
        payload_format: p.payload_format_indicator,
        expires_at_ms: p
            .message_expiry_interval
            .map(|s| now_ms() + s as u64 * 1000),
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        timestamp_ms: now_ms() as i64,
    }
}

/// Publishes the will now, or after its delay unless the client comes back.
pub fn schedule(ctx: Arc<Context>, client_id: String, w: LastWill, session_expiry: u32) {
    let delay = w
        .properties
        .will_delay_interval
        .unwrap_or(0)
        .min(session_expiry);
    if delay == 0 {
        tokio::spawn(async move {
            let code = ingest::publish(&ctx, to_record(&client_id, &w)).await;
            tracing::info!(%client_id, topic = %w.topic, code = code.0, "will published");
        });
        return;
    }
    let (id, tok) = ctx.registry.delay_will(&client_id);
    tokio::spawn(async move {
        tokio::select! {
            _ = tok.cancelled() => {
                tracing::info!(%client_id, "client reconnected; delayed will dropped");
            }
            _ = ctx.cancel.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(delay as u64)) => {
                ctx.registry.will_done(&client_id, id);
                // The will goes out at the time it is published, not when the client left.
                let code = ingest::publish(&ctx, to_record(&client_id, &w)).await;
                tracing::info!(%client_id, topic = %w.topic, delay, code = code.0, "delayed will published");
            }
        }
    });
}

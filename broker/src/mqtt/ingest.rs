//! Storing a publish: route the MQTT topic to its (topic, shard), append through the
//! coalescing appender, and keep the retained copy in meta when RETAIN is set. Used by
//! the PUBLISH handler and by will messages.

use mqtt_codec::ReasonCode;
use robustmq_proto::meta::RetainedMessage;

use super::{Context, Stats, now_ms};
use crate::storage::record::MqttRecord;

/// Stores `record`. Returns the reason code for the publisher (v5 PUBACK/PUBREC).
///
/// QoS 0 publishes wait for their append too, although nobody is told the outcome: letting
/// the connection read on while the append runs was measured slower (fan-in 999 -> 1 at
/// QoS 0: half the throughput and twice the CPU per message; parked publishers probably let
/// the appender gather bigger batches with fewer wake-ups).
pub async fn publish(ctx: &Context, record: MqttRecord) -> ReasonCode {
    Stats::inc(&ctx.stats.messages_in);
    let route = ctx.routes.route(&record.topic);
    let retained = record.retain.then(|| record.clone());
    if let Some((topic, shard)) = &route
        && let Err(e) = ctx.appender.append(topic, *shard, record).await
    {
        tracing::warn!(error = %e, "publish not stored");
        return ReasonCode::UNSPECIFIED_ERROR;
    }
    if let Some(r) = &retained
        && let Err(code) = set_retained(ctx, r).await
    {
        return code;
    }
    if route.is_some() || retained.is_some() {
        ReasonCode::SUCCESS
    } else {
        // Nothing binds the topic (no default `#` topic): nobody can receive it.
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    }
}

async fn set_retained(ctx: &Context, r: &MqttRecord) -> Result<(), ReasonCode> {
    let msg = RetainedMessage {
        topic: r.topic.clone(),
        payload: r.payload.clone(),
        qos: r.qos as u32,
        // The record encoding of the properties (see storage::record): one batch of one
        // record, decoded back with the same code when the retained message is sent.
        properties: if r.payload.is_empty() {
            bytes::Bytes::new()
        } else {
            crate::storage::record::encode_batch(std::slice::from_ref(r))
        },
        stored_at_ms: now_ms(),
        expires_at_ms: r.expires_at_ms.unwrap_or(0),
    };
    ctx.meta.client().set_retained(msg).await.map_err(|s| {
        tracing::warn!(mqtt_topic = %r.topic, error = %s, "storing retained message");
        ReasonCode::UNSPECIFIED_ERROR
    })?;
    Ok(())
}

/// The retained messages matching `filter`, as records (expired ones left out).
pub async fn retained(ctx: &Context, filter: &str) -> Vec<MqttRecord> {
    let resp = ctx
        .meta
        .client()
        .match_retained(robustmq_proto::meta::MatchRetainedRequest {
            filter: filter.to_string(),
        })
        .await;
    let msgs = match resp {
        Ok(r) => r.into_inner().messages,
        Err(s) => {
            tracing::warn!(filter, error = %s, "reading retained messages");
            return Vec::new();
        }
    };
    let now = now_ms();
    msgs.into_iter()
        .filter(|m| m.expires_at_ms == 0 || m.expires_at_ms > now)
        .map(|m| {
            let decoded = crate::storage::record::decode_batches(&m.properties, 0)
                .ok()
                .and_then(|mut v| v.pop());
            let mut r = decoded.map(|s| s.record).unwrap_or_default();
            r.topic = m.topic;
            r.payload = m.payload;
            r.qos = m.qos.min(2) as u8;
            r.retain = true;
            r
        })
        .collect()
}

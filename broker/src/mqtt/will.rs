//! Will messages: published when a connection ends without DISCONNECT 0x00, after the
//! will delay (MQTT 5; at most the session expiry), unless the client reconnects first.
//!
//! The will of a live connection is also stored with its session in meta ([`to_meta`],
//! JSON in `Session.will`), so that if this broker dies another broker can publish it
//! (`orphans`). A will that waits out a delay stays in meta too, as pending, with the
//! broker that is to publish it (`Session.will_holder`) and when it is due: if that broker
//! dies, another takes the will over and publishes it when due (`orphans`), and a client
//! that reconnects anywhere cancels it (its claim clears the holder). Whoever publishes a
//! will has first cleared it in meta with a write conditional on the owner or on the
//! holder, so each will is published once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{LastWill, Properties, QoS};
use robustmq_proto::meta::{NameRequest, Session, UpdateSessionRequest};
use serde::{Deserialize, Serialize};

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

/// The seconds a will waits: its delay, capped by the session expiry (MQTT 5 3.1.3.2.2).
pub fn delay_secs(w: &LastWill, session_expiry: u32) -> u32 {
    w.properties
        .will_delay_interval
        .unwrap_or(0)
        .min(session_expiry)
}

/// What meta stores of a will: everything [`to_record`] needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedWill {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    payload_format: Option<u8>,
    message_expiry_secs: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
}

/// The will as `Session.will` bytes and its delay, for meta; empty without a will.
pub fn to_meta(will: Option<&LastWill>, session_expiry: u32) -> (Bytes, u32) {
    let Some(w) = will else {
        return (Bytes::new(), 0);
    };
    let p = &w.properties;
    let saved = SavedWill {
        topic: w.topic.clone(),
        payload: w.payload.to_vec(),
        qos: w.qos as u8,
        retain: w.retain,
        payload_format: p.payload_format_indicator,
        message_expiry_secs: p.message_expiry_interval,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.as_ref().map(|d| d.to_vec()),
        user_properties: p.user_properties.clone(),
    };
    let bytes = serde_json::to_vec(&saved).unwrap_or_default();
    (bytes.into(), delay_secs(w, session_expiry))
}

/// A will stored by [`to_meta`]; `None` when there is none or it cannot be read.
pub fn from_meta(bytes: &[u8]) -> Option<LastWill> {
    if bytes.is_empty() {
        return None;
    }
    let s: SavedWill = serde_json::from_slice(bytes)
        .map_err(|e| tracing::warn!(error = %e, "unreadable stored will"))
        .ok()?;
    Some(LastWill {
        topic: s.topic,
        payload: s.payload.into(),
        qos: QoS::from_u8(s.qos.min(2)).unwrap_or_default(),
        retain: s.retain,
        properties: Properties {
            payload_format_indicator: s.payload_format,
            message_expiry_interval: s.message_expiry_secs,
            content_type: s.content_type,
            response_topic: s.response_topic,
            correlation_data: s.correlation_data.map(Bytes::from),
            user_properties: s.user_properties,
            ..Properties::default()
        },
    })
}

/// What decides, when the wait is over, whether the will goes out.
pub enum Guard {
    /// Meta holds the will as pending in this session, with this broker (in its current
    /// run) as the holder: it goes out only if the write clearing it there wins.
    Held(Session),
    /// Meta does not hold it (the will is due at once, or meta could not be written): it
    /// goes out unless meta shows the session claimed again. `disconnected_at_ms` is the
    /// disconnect time this broker wrote, if any, so that a later connection that also
    /// ended is told apart.
    Unrecorded { disconnected_at_ms: Option<u64> },
}

/// Marks the will in `s` (a session without an owner) as pending, held by this broker
/// and due in `delay_secs`.
pub fn hold(ctx: &Context, s: &mut Session, delay_secs: u32) {
    s.will_holder = ctx.node_id;
    s.will_holder_epoch = ctx.registry.epoch();
    s.will_due_ms = now_ms() + u64::from(delay_secs) * 1000;
}

/// Publishes the will after `wait` (at once when zero) unless the client comes back:
/// on this broker (the registry cancels the wait) or on any other (see [`Guard`]).
pub fn schedule(ctx: Arc<Context>, client_id: String, w: LastWill, wait: Duration, guard: Guard) {
    if wait.is_zero() && matches!(guard, Guard::Unrecorded { .. }) {
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
            _ = tokio::time::sleep(wait) => {
                ctx.registry.will_done(&client_id, id);
                let go = match guard {
                    Guard::Held(s) => release(&ctx, s).await,
                    Guard::Unrecorded { disconnected_at_ms } => {
                        still_gone(&ctx, &client_id, disconnected_at_ms).await
                    }
                };
                if !go {
                    tracing::info!(%client_id, "client reconnected, or another broker holds the will; delayed will dropped");
                    return;
                }
                // The will goes out at the time it is published, not when the client left.
                let code = ingest::publish(&ctx, to_record(&client_id, &w)).await;
                tracing::info!(%client_id, topic = %w.topic, wait_ms = wait.as_millis() as u64, code = code.0, "delayed will published");
            }
        }
    });
}

/// How often, and how far apart, [`release`] tries meta before it publishes anyway.
const RELEASE_TRIES: u32 = 5;
const RELEASE_RETRY: Duration = Duration::from_secs(1);

/// Clears the pending will this broker holds in `s`; whether it is ours to publish. If
/// meta cannot be reached, the will is published after a few tries: a late duplicate
/// (another broker took it over meanwhile) is better than losing it.
async fn release(ctx: &Context, s: Session) -> bool {
    let cleared = Session {
        will: Bytes::new(),
        will_delay_secs: 0,
        will_holder: 0,
        will_holder_epoch: 0,
        will_due_ms: 0,
        ..s.clone()
    };
    let req = UpdateSessionRequest {
        session: Some(cleared),
        expected_owner: 0,
        expected_epoch: 0,
        expected_will_holder: s.will_holder,
        expected_will_holder_epoch: s.will_holder_epoch,
    };
    for attempt in 1..=RELEASE_TRIES {
        match ctx.meta.client().update_session(req.clone()).await {
            Ok(_) => return true,
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {
                tracing::debug!(client_id = %s.client_id, reason = %e.message(), "pending will not ours to publish");
                return false;
            }
            Err(e) => {
                tracing::warn!(client_id = %s.client_id, attempt, error = %e, "clearing a pending will in meta");
                tokio::time::sleep(RELEASE_RETRY).await;
            }
        }
    }
    true
}

/// Whether the session is still without a connection: gone from meta (expired), or
/// stored without an owner and, when known, with the disconnect time we wrote. When meta
/// cannot be asked, the will is published: losing it is worse than a late duplicate of a
/// reconnect that we could not see.
async fn still_gone(ctx: &Context, client_id: &str, disconnected_at_ms: Option<u64>) -> bool {
    let got = ctx
        .meta
        .client()
        .get_session(NameRequest {
            name: client_id.to_string(),
        })
        .await;
    match got {
        Ok(s) => {
            let s = s.into_inner();
            s.owner_broker == 0 && disconnected_at_ms.is_none_or(|t| s.disconnected_at_ms == t)
        }
        Err(e) if e.code() == tonic::Code::NotFound => true,
        Err(e) => {
            tracing::warn!(%client_id, error = %e, "checking for a reconnect before a delayed will");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_will_round_trips_through_meta_with_its_capped_delay() {
        let w = LastWill {
            topic: "wills/c".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties {
                will_delay_interval: Some(30),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            },
        };
        let (bytes, delay) = to_meta(Some(&w), 10);
        assert_eq!(delay, 10, "the delay is capped by the session expiry");
        let back = from_meta(&bytes).expect("stored will");
        // The delay travels beside the will, not inside it.
        let mut expected = w.clone();
        expected.properties.will_delay_interval = None;
        assert_eq!(back, expected);
        assert_eq!(to_meta(None, 10), (Bytes::new(), 0));
        assert!(from_meta(b"").is_none());
        assert!(from_meta(b"not json").is_none());
    }
}

//! PUBLISH from the client: resolve a topic alias, check the topic, store the message
//! (see `ingest`), then acknowledge by QoS: nothing, PUBACK, or PUBREC with the packet id
//! remembered until PUBREL so that a retransmitted QoS 2 PUBLISH is not stored twice.

use mqtt_codec::{Publish, QoS, ReasonCode, topic};

use super::ack::{puback_for, pubrec_for};
use crate::mqtt::acl::Action;
use crate::mqtt::session::{Flow, Session};
use crate::mqtt::{ingest, now_ms};
use crate::storage::record::MqttRecord;

pub async fn handle(s: &mut Session, mut p: Publish) -> Flow {
    if let Some(alias) = p.properties.topic_alias {
        if alias == 0 || alias > s.ctx.limits.topic_alias_maximum {
            return Flow::Fail(ReasonCode::TOPIC_ALIAS_INVALID);
        }
        if p.topic.is_empty() {
            match s.aliases_in.get(&alias) {
                Some(t) => p.topic = t.clone(),
                None => return Flow::Fail(ReasonCode::PROTOCOL_ERROR),
            }
        } else {
            s.aliases_in.insert(alias, p.topic.clone());
        }
    }
    if !topic::is_valid_topic_name(&p.topic) {
        return Flow::Fail(ReasonCode::TOPIC_NAME_INVALID);
    }
    let pid = p.packet_id;
    if p.qos == QoS::ExactlyOnce && s.awaiting_rel.contains(&pid) {
        // A retransmission of a message already stored: acknowledge again, store nothing.
        s.outbox.push(pubrec_for(pid, ReasonCode::SUCCESS));
        return Flow::Continue;
    }
    if p.qos == QoS::ExactlyOnce && s.awaiting_rel.len() >= s.ctx.limits.receive_maximum as usize {
        return Flow::Fail(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    }
    let code = if topic::level_count(&p.topic) > s.ctx.limits.max_topic_levels {
        ReasonCode::TOPIC_NAME_INVALID
    } else if p.topic.starts_with('$') {
        // `$` topics belong to the broker ($SYS); clients may not publish to them.
        ReasonCode::NOT_AUTHORIZED
    } else if !s.superuser
        && !s
            .ctx
            .acl
            .allowed(s.username.as_deref(), Action::Publish, &p.topic)
    {
        ReasonCode::NOT_AUTHORIZED
    } else {
        ingest::publish(s.ctx.as_ref(), to_record(&s.client_id, &p)).await
    };
    if code.is_error() {
        tracing::info!(client_id = %s.client_id, topic = %p.topic, code = code.0, "publish refused");
        if !s.version.is_v5() && p.qos != QoS::AtMostOnce && code != ReasonCode::NOT_AUTHORIZED {
            // MQTT 3.1.1 cannot report a failure: close so that the client retries.
            return Flow::Fail(code);
        }
    }
    // 3.1.1 has no reason codes: a refused message is acknowledged and dropped.
    let ack_code = if s.version.is_v5() {
        code
    } else {
        ReasonCode::SUCCESS
    };
    match p.qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => s.outbox.push(puback_for(pid, ack_code)),
        QoS::ExactlyOnce => {
            if !code.is_error() {
                s.awaiting_rel.insert(pid);
            }
            s.outbox.push(pubrec_for(pid, ack_code));
        }
    }
    Flow::Continue
}

/// The stored form of a client's PUBLISH.
pub fn to_record(client_id: &str, p: &Publish) -> MqttRecord {
    let props = &p.properties;
    let now = now_ms();
    MqttRecord {
        topic: p.topic.clone(),
        payload: p.payload.clone(),
        qos: p.qos as u8,
        retain: p.retain,
        from_client: client_id.to_string(),
        payload_format: props.payload_format_indicator,
        expires_at_ms: props.message_expiry_interval.map(|s| now + s as u64 * 1000),
        content_type: props.content_type.clone(),
        response_topic: props.response_topic.clone(),
        correlation_data: props.correlation_data.clone(),
        user_properties: props.user_properties.clone(),
        timestamp_ms: now as i64,
    }
}

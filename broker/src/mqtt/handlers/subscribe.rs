//! SUBSCRIBE: check each filter, record the subscriptions (the dispatcher starts
//! delivering matching records at once), answer SUBACK with the granted QoS or a failure
//! per filter, then send retained messages according to each filter's Retain Handling.

use mqtt_codec::{Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, topic};

use crate::mqtt::acl::Action;
use crate::mqtt::ingest;
use crate::mqtt::outbound::OutMsg;
use crate::mqtt::session::{Flow, Session};
use crate::mqtt::state::Sub;

pub async fn handle(s: &mut Session, sub: Subscribe) -> Flow {
    let id = sub.properties.subscription_identifiers.first().copied();
    let mut reason_codes = Vec::with_capacity(sub.filters.len());
    let mut retained_for: Vec<Sub> = Vec::new();
    for ts in &sub.filters {
        let code = match Sub::new(&ts.filter, &ts.options, id) {
            None => ReasonCode::TOPIC_FILTER_INVALID,
            Some(new) if topic::level_count(&new.filter) > s.ctx.limits.max_topic_levels => {
                ReasonCode::TOPIC_FILTER_INVALID
            }
            // MQTT 5: No Local on a shared subscription is a protocol error.
            Some(new) if new.share_group.is_some() && new.no_local && s.version.is_v5() => {
                return Flow::Fail(ReasonCode::PROTOCOL_ERROR);
            }
            Some(new)
                if !s.superuser
                    && !s.ctx.acl.allowed(
                        s.username.as_deref(),
                        Action::Subscribe,
                        &new.filter,
                    ) =>
            {
                ReasonCode::NOT_AUTHORIZED
            }
            Some(new) => {
                let key = new.full_filter();
                let existed = s.state.subs.contains_key(&key);
                if !existed && s.state.subs.len() >= s.ctx.limits.max_subscriptions {
                    ReasonCode::QUOTA_EXCEEDED
                } else {
                    let send_retained = new.share_group.is_none()
                        && match new.retain_handling {
                            RetainHandling::SendAtSubscribe => true,
                            RetainHandling::SendAtNewSubscribe => !existed,
                            RetainHandling::DoNotSend => false,
                        };
                    let granted = ReasonCode(new.qos as u8);
                    if send_retained {
                        retained_for.push(new.clone());
                    }
                    s.state.subs.insert(key, new);
                    granted
                }
            }
        };
        if code.is_error() {
            tracing::info!(client_id = %s.client_id, filter = %ts.filter, code = code.0, "subscription refused");
        }
        // 3.1.1 knows only one failure code.
        reason_codes.push(if code.is_error() && !s.version.is_v5() {
            ReasonCode::UNSPECIFIED_ERROR
        } else {
            code
        });
    }
    s.ctx
        .dispatcher
        .set_subs(s.conn_id, s.state.subs.values().cloned().collect());
    if sub
        .filters
        .iter()
        .any(|f| topic::parse_shared(&f.filter).is_some())
    {
        // The group's shards are split among brokers: own ours before the SUBACK, so
        // that a publish right after it is delivered.
        s.ctx.share.sync().await;
    }
    s.dirty = true;
    s.outbox.push(Packet::SubAck(SubAck {
        packet_id: sub.packet_id,
        properties: Default::default(),
        reason_codes,
    }));
    for sub in retained_for {
        for r in ingest::retained(s.ctx.as_ref(), &sub.filter).await {
            let qos = sub.qos.min(QoS::from_u8(r.qos).unwrap_or_default());
            s.out.enqueue(
                OutMsg {
                    source: None,
                    record: std::sync::Arc::new(r),
                    qos,
                    retain: true,
                    sub_ids: sub.id.into_iter().collect(),
                    ticket: None,
                },
                &mut s.outbox,
            );
        }
    }
    Flow::Continue
}

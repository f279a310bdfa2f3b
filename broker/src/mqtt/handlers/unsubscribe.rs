//! UNSUBSCRIBE: drop the filters (as subscribed, `$share/...` included) and answer
//! UNSUBACK with a reason per filter (MQTT 5).

use mqtt_codec::{Packet, ReasonCode, UnsubAck, Unsubscribe};

use crate::mqtt::session::{Flow, Session};

pub fn handle(s: &mut Session, u: Unsubscribe) -> Flow {
    let reason_codes = u
        .filters
        .iter()
        .map(|f| {
            if s.state.subs.remove(f).is_some() {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            }
        })
        .collect();
    s.ctx
        .dispatcher
        .set_subs(s.conn_id, s.state.subs.values().cloned().collect());
    s.dirty = true;
    s.outbox.push(Packet::UnsubAck(UnsubAck {
        packet_id: u.packet_id,
        properties: Default::default(),
        reason_codes,
    }));
    Flow::Continue
}

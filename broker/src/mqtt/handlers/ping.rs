//! PINGREQ: answer PINGRESP (receiving it already reset the keep-alive timer).

use mqtt_codec::Packet;

use crate::mqtt::session::{Flow, Session};

pub fn handle(s: &mut Session) -> Flow {
    s.outbox.push(Packet::PingResp);
    Flow::Continue
}

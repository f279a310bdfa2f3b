//! One handler per packet kind. Each takes the session and the decoded packet, queues
//! its answers in the session's outbox and says how the loop continues.

pub mod ack;
pub mod connect;
pub mod disconnect;
pub mod ping;
pub mod publish;
pub mod subscribe;
pub mod unsubscribe;

use mqtt_codec::{Packet, ReasonCode};

use super::session::{Flow, Session};

pub async fn handle(s: &mut Session, p: Packet) -> Flow {
    match p {
        Packet::Publish(p) => publish::handle(s, p).await,
        Packet::PubAck(a) => ack::puback(s, a),
        Packet::PubRec(r) => ack::pubrec(s, r),
        Packet::PubRel(r) => ack::pubrel(s, r),
        Packet::PubComp(c) => ack::pubcomp(s, c),
        Packet::Subscribe(sub) => subscribe::handle(s, sub).await,
        Packet::Unsubscribe(u) => unsubscribe::handle(s, u),
        Packet::PingReq => ping::handle(s),
        Packet::Disconnect(d) => disconnect::handle(s, d),
        // A second CONNECT, or packets only a server sends.
        Packet::Connect(_)
        | Packet::ConnAck(_)
        | Packet::SubAck(_)
        | Packet::UnsubAck(_)
        | Packet::PingResp => Flow::Fail(ReasonCode::PROTOCOL_ERROR),
        // Enhanced authentication is not offered, so AUTH is unexpected.
        Packet::Auth(_) => Flow::Fail(ReasonCode::PROTOCOL_ERROR),
    }
}

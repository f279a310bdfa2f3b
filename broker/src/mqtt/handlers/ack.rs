//! The acknowledgements of PUBLISH, both directions: PUBACK, PUBREC and PUBCOMP answer
//! our deliveries (moving the inflight window); PUBREL releases a QoS 2 message the
//! client sent us (answered with PUBCOMP).

use mqtt_codec::{Packet, PubAck, PubComp, PubRec, PubRel, ReasonCode};

use crate::mqtt::outbound::AckResult;
use crate::mqtt::session::{Flow, Session};

fn log_unknown(s: &Session, kind: &str, pid: u16) {
    // Not fatal: a client may acknowledge twice after a reconnect.
    tracing::debug!(client_id = %s.client_id, kind, pid, "acknowledgement for an unknown packet id");
}

pub fn puback(s: &mut Session, a: PubAck) -> Flow {
    s.dirty = true;
    if s.out.on_puback(a.packet_id, &mut s.outbox) == AckResult::UnknownId {
        log_unknown(s, "PUBACK", a.packet_id);
    }
    Flow::Continue
}

pub fn pubrec(s: &mut Session, r: PubRec) -> Flow {
    match s
        .out
        .on_pubrec(r.packet_id, r.reason_code.is_error(), &mut s.outbox)
    {
        AckResult::Release(pid) => s.outbox.push(Packet::PubRel(PubRel::new(pid))),
        AckResult::Done => {}
        AckResult::UnknownId => {
            log_unknown(s, "PUBREC", r.packet_id);
            let mut rel = PubRel::new(r.packet_id);
            rel.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
            s.outbox.push(Packet::PubRel(rel));
        }
    }
    Flow::Continue
}

pub fn pubcomp(s: &mut Session, c: PubComp) -> Flow {
    s.dirty = true;
    if s.out.on_pubcomp(c.packet_id, &mut s.outbox) == AckResult::UnknownId {
        log_unknown(s, "PUBCOMP", c.packet_id);
    }
    Flow::Continue
}

pub fn pubrel(s: &mut Session, r: PubRel) -> Flow {
    let mut comp = PubComp::new(r.packet_id);
    if !s.awaiting_rel.remove(&r.packet_id) {
        comp.reason_code = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
    }
    s.outbox.push(Packet::PubComp(comp));
    Flow::Continue
}

/// The acknowledgement a QoS 1 publish gets.
pub fn puback_for(pid: u16, code: ReasonCode) -> Packet {
    let mut a = PubAck::new(pid);
    a.reason_code = code;
    Packet::PubAck(a)
}

/// The acknowledgement a QoS 2 publish gets.
pub fn pubrec_for(pid: u16, code: ReasonCode) -> Packet {
    let mut r = PubRec::new(pid);
    r.reason_code = code;
    Packet::PubRec(r)
}

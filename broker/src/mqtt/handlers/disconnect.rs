//! DISCONNECT from the client: 0x00 ends the session without the will, 0x04 asks for
//! the will anyway. MQTT 5 may change the session expiry here, except from 0 to non-zero.

use mqtt_codec::{Disconnect, ReasonCode};

use crate::mqtt::session::{Flow, Session};

pub fn handle(s: &mut Session, d: Disconnect) -> Flow {
    if let Some(e) = d.properties.session_expiry_interval {
        if s.expiry_secs == 0 && e != 0 {
            return Flow::Fail(ReasonCode::PROTOCOL_ERROR);
        }
        s.expiry_secs = e.min(s.ctx.limits.max_session_expiry);
    }
    Flow::ClientDisconnect {
        will: d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
    }
}

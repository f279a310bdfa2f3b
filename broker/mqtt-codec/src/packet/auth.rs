//! AUTH: MQTT 5 extended authentication (challenge/response after CONNECT, and
//! re-authentication). It does not exist in 3.x.
//!
//! ```text
//! fixed header   0xF0 | remaining length
//! [remaining length > 0]  reason code u8: 0x00 success, 0x18 continue, 0x19 re-authenticate
//! [remaining length > 1]  properties (authentication method and data, reason string, …)
//! ```

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::Reader;
use crate::{DecodeError, EncodeError, PacketType, Properties, ReasonCode};

const PACKET: PacketType = PacketType::Auth;

/// AUTH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Auth, DecodeError> {
        if r.is_empty() {
            return Ok(Auth::default());
        }
        let code = r.u8()?;
        let reason_code = ReasonCode(code);
        if !reason_code.is_valid_for(PACKET) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PACKET,
                code,
            });
        }
        let properties = if r.is_empty() {
            Properties::default()
        } else {
            Properties::decode(r, Context::Auth)?
        };
        Ok(Auth {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self) -> usize {
        if self.reason_code.0 == 0 && self.properties.is_empty() {
            0
        } else if self.properties.is_empty() {
            1
        } else {
            1 + self.properties.encoded_len()
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self.body_len() {
            0 => {}
            1 => buf.put_u8(self.reason_code.0),
            _ => {
                buf.put_u8(self.reason_code.0);
                self.properties.encode(buf, PACKET)?;
            }
        }
        Ok(())
    }
}

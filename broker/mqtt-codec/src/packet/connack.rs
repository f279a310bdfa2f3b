//! CONNACK: the server's answer to CONNECT.
//!
//! ```text
//! fixed header        0x20 | remaining length
//! acknowledge flags   bit 0 session present, bits 7-1 reserved (all reserved in 3.1)
//! reason code         u8 (3.x: return code 0..=5)
//! [5.0] properties
//! ```
//!
//! 3.x return codes are translated to and from [`ReasonCode`] so the broker uses one
//! vocabulary: 1 ⇔ 0x84, 2 ⇔ 0x85, 3 ⇔ 0x88, 4 ⇔ 0x86, 5 ⇔ 0x87.

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::Reader;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

const PACKET: PacketType = PacketType::ConnAck;

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Always false in 3.1, which has no such flag.
    pub session_present: bool,
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        let session_present = match version {
            ProtocolVersion::V3_1 => false,
            _ if flags & 0xFE != 0 => {
                return Err(r.malformed("reserved acknowledge flags are set"));
            }
            _ => flags & 0x01 != 0,
        };
        let code = r.u8()?;
        let reason_code = if version.is_v5() {
            let rc = ReasonCode(code);
            if !rc.is_valid_for(PACKET) {
                return Err(DecodeError::InvalidReasonCode {
                    packet: PACKET,
                    code,
                });
            }
            rc
        } else {
            ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode {
                packet: PACKET,
                code,
            })?
        };
        if session_present && reason_code.is_error() {
            return Err(r.protocol_error("session present on a refused connection"));
        }
        let properties = if version.is_v5() {
            Properties::decode(r, Context::ConnAck)?
        } else {
            Properties::default()
        };
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        2 + if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let present = self.session_present && version != ProtocolVersion::V3_1;
        buf.put_u8(u8::from(present));
        if version.is_v5() {
            buf.put_u8(self.reason_code.0);
            self.properties.encode(buf, PACKET)?;
        } else {
            buf.put_u8(self.reason_code.to_v3_connack());
        }
        Ok(())
    }
}

//! UNSUBACK: the server's answer to UNSUBSCRIBE.
//!
//! ```text
//! fixed header   0xB0 | remaining length
//! packet id      u16, non-zero
//! [5.0]          properties | one reason code u8 per filter
//! ```
//!
//! 3.x UNSUBACK is just the packet id: `reason_codes` is empty there.

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, check_packet_id};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

const PACKET: PacketType = PacketType::UnsubAck;

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub properties: Properties,
    /// 5.0: one per filter of the UNSUBSCRIBE. Not sent before 5.0.
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<UnsubAck, DecodeError> {
        let packet_id = r.packet_id()?;
        if !version.is_v5() {
            return Ok(UnsubAck {
                packet_id,
                ..UnsubAck::default()
            });
        }
        let properties = Properties::decode(r, Context::UnsubAck)?;
        let codes = r.rest();
        if codes.is_empty() {
            return Err(r.protocol_error("UNSUBACK without reason codes"));
        }
        let reason_codes = codes
            .iter()
            .map(|&code| {
                let rc = ReasonCode(code);
                if rc.is_valid_for(PACKET) {
                    Ok(rc)
                } else {
                    Err(DecodeError::InvalidReasonCode {
                        packet: PACKET,
                        code,
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len() + self.reason_codes.len()
        } else {
            2
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        check_packet_id(PACKET, self.packet_id)?;
        buf.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(buf, PACKET)?;
            buf.extend(self.reason_codes.iter().map(|rc| rc.0));
        }
        Ok(())
    }
}

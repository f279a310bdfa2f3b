//! SUBACK: the server's answer to SUBSCRIBE, one reason code per filter in order.
//!
//! ```text
//! fixed header   0x90 | remaining length
//! packet id      u16, non-zero
//! [5.0]          properties (reason string, user properties)
//! payload        one reason code u8 per filter
//!                (3.x: 0x00, 0x01, 0x02 granted QoS, 0x80 failure)
//! ```
//!
//! Encoding for 3.x maps every 5.0 failure code to 0x80, the only one 3.x has.

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, check_packet_id};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

const PACKET: PacketType = PacketType::SubAck;

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    pub packet_id: u16,
    pub properties: Properties,
    /// One per filter of the SUBSCRIBE: a granted QoS (0x00..=0x02) or a failure.
    pub reason_codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, Context::SubAck)?
        } else {
            Properties::default()
        };
        let codes = r.rest();
        if codes.is_empty() {
            return Err(r.protocol_error("SUBACK without reason codes"));
        }
        let reason_codes = codes
            .iter()
            .map(|&code| {
                let rc = ReasonCode(code);
                let valid = if version.is_v5() {
                    rc.is_valid_for(PACKET)
                } else {
                    matches!(code, 0x00 | 0x01 | 0x02 | 0x80)
                };
                if valid {
                    Ok(rc)
                } else {
                    Err(DecodeError::InvalidReasonCode {
                        packet: PACKET,
                        code,
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props + self.reason_codes.len()
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
        }
        for rc in &self.reason_codes {
            let code = match rc.0 {
                c if version.is_v5() => c,
                c @ 0x00..=0x02 => c,
                _ => 0x80,
            };
            buf.put_u8(code);
        }
        Ok(())
    }
}

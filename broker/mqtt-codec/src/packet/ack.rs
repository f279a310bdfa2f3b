//! PUBACK, PUBREC, PUBREL and PUBCOMP: the acknowledgements of the QoS 1 and QoS 2 flows.
//! One module because the four share one layout; each is still its own type so a handler
//! cannot confuse PUBREC with PUBCOMP.
//!
//! ```text
//! fixed header   0x40 PUBACK | 0x50 PUBREC | 0x62 PUBREL | 0x70 PUBCOMP, remaining length
//! packet id      u16, non-zero
//! [5.0, remaining length > 2]  reason code u8
//! [5.0, remaining length > 3]  properties
//! ```
//!
//! 3.x acks are exactly two bytes. In 5.0 the reason code and properties may be left off
//! when they are "success" and empty; encoding does so, as the spec recommends.

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, check_packet_id};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $packet:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            pub packet_id: u16,
            /// Always success before 5.0.
            pub reason_code: ReasonCode,
            pub properties: Properties,
        }

        impl $name {
            /// A successful acknowledgement of `packet_id`.
            pub fn new(packet_id: u16) -> $name {
                $name {
                    packet_id,
                    ..$name::default()
                }
            }

            pub(crate) fn decode(
                r: &mut Reader,
                version: ProtocolVersion,
            ) -> Result<$name, DecodeError> {
                let (packet_id, reason_code, properties) = decode_ack(r, version, $packet)?;
                Ok($name {
                    packet_id,
                    reason_code,
                    properties,
                })
            }

            pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
                ack_body_len(version, self.reason_code, &self.properties)
            }

            pub(crate) fn encode_body(
                &self,
                version: ProtocolVersion,
                buf: &mut BytesMut,
            ) -> Result<(), EncodeError> {
                encode_ack(
                    buf,
                    version,
                    $packet,
                    self.packet_id,
                    self.reason_code,
                    &self.properties,
                )
            }
        }
    };
}

ack_packet!(
    /// PUBACK: the receiver's answer to a QoS 1 PUBLISH.
    PubAck,
    PacketType::PubAck
);
ack_packet!(
    /// PUBREC: the receiver's first answer to a QoS 2 PUBLISH.
    PubRec,
    PacketType::PubRec
);
ack_packet!(
    /// PUBREL: the sender's release after PUBREC.
    PubRel,
    PacketType::PubRel
);
ack_packet!(
    /// PUBCOMP: the receiver's final answer in the QoS 2 flow.
    PubComp,
    PacketType::PubComp
);

fn decode_ack(
    r: &mut Reader,
    version: ProtocolVersion,
    packet: PacketType,
) -> Result<(u16, ReasonCode, Properties), DecodeError> {
    let packet_id = r.packet_id()?;
    if !version.is_v5() || r.is_empty() {
        return Ok((packet_id, ReasonCode::SUCCESS, Properties::default()));
    }
    let code = r.u8()?;
    let reason_code = ReasonCode(code);
    if !reason_code.is_valid_for(packet) {
        return Err(DecodeError::InvalidReasonCode { packet, code });
    }
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, Context::Ack)?
    };
    Ok((packet_id, reason_code, properties))
}

fn ack_body_len(
    version: ProtocolVersion,
    reason_code: ReasonCode,
    properties: &Properties,
) -> usize {
    if !version.is_v5() || (reason_code == ReasonCode::SUCCESS && properties.is_empty()) {
        2
    } else if properties.is_empty() {
        3
    } else {
        3 + properties.encoded_len()
    }
}

fn encode_ack(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    packet: PacketType,
    packet_id: u16,
    reason_code: ReasonCode,
    properties: &Properties,
) -> Result<(), EncodeError> {
    check_packet_id(packet, packet_id)?;
    buf.put_u16(packet_id);
    match ack_body_len(version, reason_code, properties) {
        2 => {}
        3 => buf.put_u8(reason_code.0),
        _ => {
            buf.put_u8(reason_code.0);
            properties.encode(buf, packet)?;
        }
    }
    Ok(())
}

//! PUBLISH: an application message, in either direction.
//!
//! ```text
//! fixed header   0x30 | DUP << 3 | QoS << 1 | RETAIN, remaining length
//! topic name     string (5.0: may be empty when a Topic Alias property is present)
//! [QoS > 0]      packet identifier u16, non-zero
//! [5.0]          properties
//! payload        all remaining bytes (may be empty)
//! ```
//!
//! The payload is a slice of the received buffer: decoding does not copy it.

use bytes::{Bytes, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, check_packet_id, field_len, put_string};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, QoS, topic};

const PACKET: PacketType = PacketType::Publish;

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// Redelivery of a QoS 1/2 message; always false at QoS 0.
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in 5.0 with `properties.topic_alias` set.
    pub topic: String,
    /// 0 at QoS 0 (not on the wire), non-zero otherwise.
    pub packet_id: u16,
    pub properties: Properties,
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message without properties.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Publish {
        Publish {
            topic: topic.into(),
            payload: payload.into(),
            ..Publish::default()
        }
    }

    pub(crate) fn fixed_flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    pub(crate) fn decode(
        r: &mut Reader,
        flags: u8,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let dup = flags & 0b1000 != 0;
        // QoS 3 was rejected with the fixed header.
        let qos =
            QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS { packet: PACKET })?;
        let retain = flags & 0b0001 != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(r.malformed("DUP set on a QoS 0 message"));
        }
        let topic = r.string()?;
        // Wildcards are checked before the rest of the packet is parsed, so a bad topic
        // is reported as such; emptiness has to wait for the Topic Alias property.
        if !topic.is_empty() && !topic::is_valid_topic_name(&topic) {
            return Err(DecodeError::InvalidTopicName {
                packet: PACKET,
                topic,
            });
        }
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            r.packet_id()?
        };
        let properties = if version.is_v5() {
            Properties::decode(r, Context::Publish)?
        } else {
            Properties::default()
        };
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::InvalidTopicName {
                packet: PACKET,
                topic,
            });
        }
        let payload = r.rest();
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = field_len(self.topic.len());
        if self.qos != QoS::AtMostOnce {
            len += 2;
        }
        if version.is_v5() {
            len += self.properties.encoded_len();
        }
        len + self.payload.len()
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        put_string(buf, PACKET, &self.topic)?;
        if self.qos != QoS::AtMostOnce {
            check_packet_id(PACKET, self.packet_id)?;
            buf.extend_from_slice(&self.packet_id.to_be_bytes());
        }
        if version.is_v5() {
            self.properties.encode(buf, PACKET)?;
        }
        buf.extend_from_slice(&self.payload);
        Ok(())
    }
}

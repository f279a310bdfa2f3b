//! UNSUBSCRIBE: a client drops one or more subscriptions.
//!
//! ```text
//! fixed header   0xA2 | remaining length
//! packet id      u16, non-zero
//! [5.0]          properties (user properties)
//! payload        one or more topic filters: string
//! ```

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, check_packet_id, field_len, put_string};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, topic};

const PACKET: PacketType = PacketType::Unsubscribe;

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub properties: Properties,
    /// At least one, each a valid topic filter.
    pub filters: Vec<String>,
}

impl Unsubscribe {
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, Context::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            if !topic::is_valid_topic_filter(&filter) {
                return Err(DecodeError::InvalidTopicFilter {
                    packet: PACKET,
                    filter,
                });
            }
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(r.protocol_error("UNSUBSCRIBE without topic filters"));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props
            + self
                .filters
                .iter()
                .map(|f| field_len(f.len()))
                .sum::<usize>()
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
        for f in &self.filters {
            put_string(buf, PACKET, f)?;
        }
        Ok(())
    }
}

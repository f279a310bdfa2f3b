//! SUBSCRIBE: a client asks for messages on one or more topic filters.
//!
//! ```text
//! fixed header   0x82 | remaining length
//! packet id      u16, non-zero
//! [5.0]          properties (subscription identifier at most once, user properties)
//! payload        one or more of: topic filter: string | options: u8
//!
//! options bits   7-6 reserved | 5-4 retain handling | 3 retain as published
//!                | 2 no local | 1-0 maximum QoS          (3.x: bits 7-2 reserved)
//! ```

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, check_packet_id, field_len, put_string};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, QoS, topic};

const PACKET: PacketType = PacketType::Subscribe;

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    pub packet_id: u16,
    pub properties: Properties,
    /// At least one.
    pub filters: Vec<TopicSubscription>,
}

/// One filter of a SUBSCRIBE and its options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicSubscription {
    /// A valid topic filter, possibly `$share/{group}/{filter}`.
    pub filter: String,
    pub options: SubscriptionOptions,
}

/// Subscription options; everything but `qos` is MQTT 5 only and false/default before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client accepts on this subscription.
    pub qos: QoS,
    /// Do not send the client its own publishes.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages instead of clearing it.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// When retained messages are sent for a new subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// At every subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Only if the subscription did not already exist.
    SendAtNewSubscribe = 1,
    /// Never.
    DoNotSend = 2,
}

impl SubscriptionOptions {
    fn decode(r: &Reader, byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(r.malformed("reserved subscription option bits are set"));
        }
        let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidQoS { packet: PACKET })?;
        let retain_handling = match (byte >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtNewSubscribe,
            2 => RetainHandling::DoNotSend,
            _ => return Err(r.protocol_error("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            byte |= (u8::from(self.no_local) << 2)
                | (u8::from(self.retain_as_published) << 3)
                | ((self.retain_handling as u8) << 4);
        }
        byte
    }
}

impl Subscribe {
    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Subscribe, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, Context::Subscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            let byte = r.u8()?;
            let options = SubscriptionOptions::decode(r, byte, version)?;
            if !topic::is_valid_topic_filter(&filter) {
                return Err(DecodeError::InvalidTopicFilter {
                    packet: PACKET,
                    filter,
                });
            }
            // [MQTT-3.8.3-4]: a client would receive its own shared messages anyway.
            if options.no_local && filter.starts_with(topic::SHARE_PREFIX) {
                return Err(r.protocol_error("no local on a shared subscription"));
            }
            filters.push(TopicSubscription { filter, options });
        }
        if filters.is_empty() {
            return Err(r.protocol_error("SUBSCRIBE without topic filters"));
        }
        Ok(Subscribe {
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
                .map(|f| field_len(f.filter.len()) + 1)
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
            put_string(buf, PACKET, &f.filter)?;
            buf.put_u8(f.options.to_byte(version));
        }
        Ok(())
    }
}

//! MQTT 5 properties: one struct for all of them, checked per packet on decode.
//!
//! ```text
//! property length   variable byte integer: bytes of properties that follow
//! property…         identifier (varint; every defined one fits in a byte) | value
//! ```
//!
//! Values are a byte, u16, u32, varint, UTF-8 string, binary data or a string pair,
//! depending on the identifier. Each identifier is allowed only in some packets (spec
//! table 2-4); using it elsewhere is malformed. All but User Property (0x26) and, in
//! PUBLISH only, Subscription Identifier (0x0B) may appear at most once.
//!
//! A single struct with optional fields keeps the packet types small and lets the broker
//! copy, say, a PUBLISH's properties into a stored record without a mapping per packet.
//! Encoding writes whatever is set; the caller chooses properties that fit the packet.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{MAX_VARINT, Reader, field_len, put_binary, put_string, put_varint, varint_len};
use crate::{DecodeError, EncodeError, PacketType, QoS, topic};

/// Every MQTT 5 property. `Default` is "no properties".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01, PUBLISH and will: 0 = unspecified bytes, 1 = UTF-8 text.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and will: seconds until the message expires.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and will: MIME type of the payload.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and will: topic name for a response (no wildcards).
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and will: opaque data echoed in the response.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, SUBSCRIBE (at most one) and PUBLISH (one per matching subscription):
    /// 1..=268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK and DISCONNECT: seconds the session outlives the connection.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK: the client id the server chose for an empty one.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK: keep alive the server imposes, in seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK and AUTH: name of the extended authentication method.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK and AUTH: method-specific data (needs a method).
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: whether the server may send reason strings and user properties on
    /// failures.
    pub request_problem_information: Option<bool>,
    /// 0x18, will: seconds to wait before publishing the will.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: whether the client wants response information in CONNACK.
    pub request_response_information: Option<bool>,
    /// 0x1A, CONNACK: basis for response topics.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK and DISCONNECT: another server to use.
    pub server_reference: Option<String>,
    /// 0x1F, acks, CONNACK, DISCONNECT and AUTH: human-readable diagnostics.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT and CONNACK: inflight QoS 1/2 limit, non-zero.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT and CONNACK: highest topic alias the sender accepts.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: topic alias, non-zero.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK: highest QoS the server supports (0 or 1; absent means 2).
    pub maximum_qos: Option<QoS>,
    /// 0x25, CONNACK: whether retained messages are supported.
    pub retain_available: Option<bool>,
    /// 0x26, every packet with properties: ordered name/value pairs, repeatable.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT and CONNACK: largest packet the sender accepts, non-zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK: whether wildcard subscriptions are supported.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29, CONNACK: whether subscription identifiers are supported.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A, CONNACK: whether shared subscriptions are supported.
    pub shared_subscription_available: Option<bool>,
}

/// Where a property list sits, which decides the identifiers it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Bit mask of the contexts that allow property `id`, `None` for unknown identifiers.
fn allowed_in(id: u32) -> Option<u16> {
    use Context::*;
    let mask = |cs: &[Context]| cs.iter().fold(0u16, |m, c| m | c.bit());
    Some(match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => mask(&[Publish, Will]),
        0x0B => mask(&[Publish, Subscribe]),
        0x11 => mask(&[Connect, ConnAck, Disconnect]),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => mask(&[ConnAck]),
        0x15 | 0x16 => mask(&[Connect, ConnAck, Auth]),
        0x17 | 0x19 => mask(&[Connect]),
        0x18 => mask(&[Will]),
        0x1C => mask(&[ConnAck, Disconnect]),
        0x1F => mask(&[ConnAck, Ack, SubAck, UnsubAck, Disconnect, Auth]),
        0x21 | 0x22 | 0x27 => mask(&[Connect, ConnAck]),
        0x23 => mask(&[Publish]),
        0x26 => u16::MAX,
        _ => return None,
    })
}

/// Stores `value` in `slot`, failing if the property was already present.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    packet: PacketType,
    id: u8,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { packet, id });
    }
    *slot = Some(value);
    Ok(())
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Reads a property length and the properties it covers.
    pub(crate) fn decode(r: &mut Reader, ctx: Context) -> Result<Properties, DecodeError> {
        let packet = r.packet();
        let len = r.varint()? as usize;
        let mut r = Reader::new(r.take(len)?, packet);
        let mut p = Properties::default();
        while !r.is_empty() {
            let id = r.varint()?;
            let allowed = allowed_in(id).ok_or(DecodeError::InvalidProperty { packet, id })?;
            if allowed & ctx.bit() == 0 {
                return Err(DecodeError::InvalidProperty { packet, id });
            }
            // Every defined identifier is below 0x80, checked by `allowed_in`.
            let id = id as u8;
            let bad_value = DecodeError::InvalidPropertyValue { packet, id };
            let flag = |r: &mut Reader| match r.u8()? {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(bad_value.clone()),
            };
            match id {
                0x01 => {
                    let v = r.u8()?;
                    if v > 1 {
                        return Err(bad_value);
                    }
                    set_once(&mut p.payload_format_indicator, v, packet, id)?
                }
                0x02 => set_once(&mut p.message_expiry_interval, r.u32()?, packet, id)?,
                0x03 => set_once(&mut p.content_type, r.string()?, packet, id)?,
                0x08 => {
                    let t = r.string()?;
                    if !topic::is_valid_topic_name(&t) {
                        return Err(bad_value);
                    }
                    set_once(&mut p.response_topic, t, packet, id)?
                }
                0x09 => set_once(&mut p.correlation_data, r.binary()?, packet, id)?,
                0x0B => {
                    let v = r.varint()?;
                    if v == 0 {
                        return Err(bad_value);
                    }
                    if ctx == Context::Subscribe && !p.subscription_identifiers.is_empty() {
                        return Err(DecodeError::DuplicateProperty { packet, id });
                    }
                    p.subscription_identifiers.push(v);
                }
                0x11 => set_once(&mut p.session_expiry_interval, r.u32()?, packet, id)?,
                0x12 => set_once(&mut p.assigned_client_identifier, r.string()?, packet, id)?,
                0x13 => set_once(&mut p.server_keep_alive, r.u16()?, packet, id)?,
                0x15 => set_once(&mut p.authentication_method, r.string()?, packet, id)?,
                0x16 => set_once(&mut p.authentication_data, r.binary()?, packet, id)?,
                0x17 => set_once(
                    &mut p.request_problem_information,
                    flag(&mut r)?,
                    packet,
                    id,
                )?,
                0x18 => set_once(&mut p.will_delay_interval, r.u32()?, packet, id)?,
                0x19 => set_once(
                    &mut p.request_response_information,
                    flag(&mut r)?,
                    packet,
                    id,
                )?,
                0x1A => set_once(&mut p.response_information, r.string()?, packet, id)?,
                0x1C => set_once(&mut p.server_reference, r.string()?, packet, id)?,
                0x1F => set_once(&mut p.reason_string, r.string()?, packet, id)?,
                0x21 | 0x23 => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(bad_value);
                    }
                    let slot = if id == 0x21 {
                        &mut p.receive_maximum
                    } else {
                        &mut p.topic_alias
                    };
                    set_once(slot, v, packet, id)?
                }
                0x22 => set_once(&mut p.topic_alias_maximum, r.u16()?, packet, id)?,
                0x24 => {
                    let qos = match r.u8()? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => return Err(bad_value),
                    };
                    set_once(&mut p.maximum_qos, qos, packet, id)?
                }
                0x25 => set_once(&mut p.retain_available, flag(&mut r)?, packet, id)?,
                0x26 => {
                    let name = r.string()?;
                    let value = r.string()?;
                    p.user_properties.push((name, value));
                }
                0x27 => {
                    let v = r.u32()?;
                    if v == 0 {
                        return Err(bad_value);
                    }
                    set_once(&mut p.maximum_packet_size, v, packet, id)?
                }
                0x28 => set_once(
                    &mut p.wildcard_subscription_available,
                    flag(&mut r)?,
                    packet,
                    id,
                )?,
                0x29 => set_once(
                    &mut p.subscription_identifier_available,
                    flag(&mut r)?,
                    packet,
                    id,
                )?,
                0x2A => set_once(
                    &mut p.shared_subscription_available,
                    flag(&mut r)?,
                    packet,
                    id,
                )?,
                _ => unreachable!("allowed_in only knows the identifiers matched above"),
            }
        }
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::ProtocolError {
                packet,
                reason: "authentication data without an authentication method",
            });
        }
        Ok(p)
    }

    /// Bytes of the properties themselves, without the length prefix.
    fn body_len(&self) -> usize {
        let byte = |o: Option<()>| o.map_or(0, |_| 2);
        let u16p = |o: Option<()>| o.map_or(0, |_| 3);
        let u32p = |o: Option<()>| o.map_or(0, |_| 5);
        let bin = |o: Option<usize>| o.map_or(0, |n| 1 + field_len(n));
        byte(self.payload_format_indicator.map(drop))
            + u32p(self.message_expiry_interval.map(drop))
            + bin(self.content_type.as_ref().map(String::len))
            + bin(self.response_topic.as_ref().map(String::len))
            + bin(self.correlation_data.as_ref().map(Bytes::len))
            + self
                .subscription_identifiers
                .iter()
                .map(|&v| 1 + varint_len(v as usize))
                .sum::<usize>()
            + u32p(self.session_expiry_interval.map(drop))
            + bin(self.assigned_client_identifier.as_ref().map(String::len))
            + u16p(self.server_keep_alive.map(drop))
            + bin(self.authentication_method.as_ref().map(String::len))
            + bin(self.authentication_data.as_ref().map(Bytes::len))
            + byte(self.request_problem_information.map(drop))
            + u32p(self.will_delay_interval.map(drop))
            + byte(self.request_response_information.map(drop))
            + bin(self.response_information.as_ref().map(String::len))
            + bin(self.server_reference.as_ref().map(String::len))
            + bin(self.reason_string.as_ref().map(String::len))
            + u16p(self.receive_maximum.map(drop))
            + u16p(self.topic_alias_maximum.map(drop))
            + u16p(self.topic_alias.map(drop))
            + byte(self.maximum_qos.map(drop))
            + byte(self.retain_available.map(drop))
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 1 + field_len(k.len()) + field_len(v.len()))
                .sum::<usize>()
            + u32p(self.maximum_packet_size.map(drop))
            + byte(self.wildcard_subscription_available.map(drop))
            + byte(self.subscription_identifier_available.map(drop))
            + byte(self.shared_subscription_available.map(drop))
    }

    /// Bytes on the wire, length prefix included.
    pub(crate) fn encoded_len(&self) -> usize {
        let n = self.body_len();
        varint_len(n) + n
    }

    /// Writes the length prefix and every set property, in identifier order (user
    /// properties keep their own order).
    pub(crate) fn encode(&self, buf: &mut BytesMut, packet: PacketType) -> Result<(), EncodeError> {
        let len = self.body_len();
        if len > MAX_VARINT {
            return Err(EncodeError::PacketTooLarge { packet, len });
        }
        put_varint(buf, len);
        let s = |buf: &mut BytesMut, id: u8, v: &Option<String>| -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(id);
                put_string(buf, packet, v)?;
            }
            Ok(())
        };
        let b = |buf: &mut BytesMut, id: u8, v: &Option<Bytes>| -> Result<(), EncodeError> {
            if let Some(v) = v {
                buf.put_u8(id);
                put_binary(buf, packet, v)?;
            }
            Ok(())
        };
        let byte = |buf: &mut BytesMut, id: u8, v: Option<u8>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u8(v);
            }
        };
        let u16p = |buf: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u16(v);
            }
        };
        let u32p = |buf: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                buf.put_u8(id);
                buf.put_u32(v);
            }
        };
        byte(buf, 0x01, self.payload_format_indicator);
        u32p(buf, 0x02, self.message_expiry_interval);
        s(buf, 0x03, &self.content_type)?;
        s(buf, 0x08, &self.response_topic)?;
        b(buf, 0x09, &self.correlation_data)?;
        for &id in &self.subscription_identifiers {
            if id == 0 || id as usize > MAX_VARINT {
                return Err(EncodeError::InvalidValue {
                    packet,
                    reason: "subscription identifier outside 1..=268435455",
                });
            }
            buf.put_u8(0x0B);
            put_varint(buf, id as usize);
        }
        u32p(buf, 0x11, self.session_expiry_interval);
        s(buf, 0x12, &self.assigned_client_identifier)?;
        u16p(buf, 0x13, self.server_keep_alive);
        s(buf, 0x15, &self.authentication_method)?;
        b(buf, 0x16, &self.authentication_data)?;
        byte(buf, 0x17, self.request_problem_information.map(u8::from));
        u32p(buf, 0x18, self.will_delay_interval);
        byte(buf, 0x19, self.request_response_information.map(u8::from));
        s(buf, 0x1A, &self.response_information)?;
        s(buf, 0x1C, &self.server_reference)?;
        s(buf, 0x1F, &self.reason_string)?;
        u16p(buf, 0x21, self.receive_maximum);
        u16p(buf, 0x22, self.topic_alias_maximum);
        u16p(buf, 0x23, self.topic_alias);
        byte(buf, 0x24, self.maximum_qos.map(|q| q as u8));
        byte(buf, 0x25, self.retain_available.map(u8::from));
        for (k, v) in &self.user_properties {
            buf.put_u8(0x26);
            put_string(buf, packet, k)?;
            put_string(buf, packet, v)?;
        }
        u32p(buf, 0x27, self.maximum_packet_size);
        byte(
            buf,
            0x28,
            self.wildcard_subscription_available.map(u8::from),
        );
        byte(
            buf,
            0x29,
            self.subscription_identifier_available.map(u8::from),
        );
        byte(buf, 0x2A, self.shared_subscription_available.map(u8::from));
        Ok(())
    }
}

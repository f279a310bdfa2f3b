//! CONNECT: the first packet a client sends; it fixes the protocol version.
//!
//! ```text
//! fixed header    0x10 | remaining length
//! protocol name   string "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1)
//! protocol level  u8: 3, 4 or 5
//! connect flags   bit 7 user name | 6 password | 5 will retain | 4-3 will QoS
//!                 | 2 will flag | 1 clean start (clean session) | 0 reserved, must be 0
//! keep alive      u16 seconds
//! [5.0] properties
//! payload         client id: string
//!                 [will flag]  [5.0] will properties | will topic: string
//!                              | will payload: binary
//!                 [user name]  string
//!                 [password]   binary
//! ```

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Context;
use crate::wire::{Reader, field_len, put_binary, put_string};
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, QoS, topic};

const PACKET: PacketType = PacketType::Connect;

/// The protocol version a CONNECT at the start of `buf` asks for, read without decoding
/// (or consuming) the packet; `None` if `buf` does not start with a CONNECT or is too
/// short to tell.
///
/// Peek before [`crate::decode`]ing the first packet: if the CONNECT then fails to
/// decode, this says whether to answer with a 3.x return code or a 5.0 reason code.
pub fn peek_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != PacketType::Connect as u8 {
        return None;
    }
    let mut pos = 1;
    while buf.get(pos)? & 0x80 != 0 {
        pos += 1;
        if pos > 4 {
            return None;
        }
    }
    let name_len = usize::from(u16::from_be_bytes([*buf.get(pos + 1)?, *buf.get(pos + 2)?]));
    let name = buf.get(pos + 3..pos + 3 + name_len)?;
    let level = *buf.get(pos + 3 + name_len)?;
    match (name, level) {
        (b"MQTT", 4) => Some(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Some(ProtocolVersion::V5),
        (b"MQIsdp", 3) => Some(ProtocolVersion::V3_1),
        _ => None,
    }
}

/// CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol_version: ProtocolVersion,
    /// "Clean Start" in 5.0, "Clean Session" in 3.x.
    pub clean_start: bool,
    /// Seconds; 0 disables keep alive.
    pub keep_alive: u16,
    /// Always empty before 5.0.
    pub properties: Properties,
    pub client_id: String,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (5.0 only): will delay, message expiry, content type, …
    pub properties: Properties,
}

impl Connect {
    /// A CONNECT with clean start, no will and no credentials.
    pub fn new(protocol_version: ProtocolVersion, client_id: impl Into<String>) -> Connect {
        Connect {
            protocol_version,
            clean_start: true,
            keep_alive: 60,
            properties: Properties::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<Connect, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol_version = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", _) => {
                return Err(DecodeError::UnsupportedProtocolVersion { level });
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let v5 = protocol_version.is_v5();

        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(r.malformed("reserved connect flag is set"));
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0b11;
        let will_retain = flags & 0x20 != 0;
        let has_password = flags & 0x40 != 0;
        let has_username = flags & 0x80 != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            return Err(r.malformed("will QoS or will retain set without a will"));
        }
        let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS { packet: PACKET })?;
        // 3.x forbids a password without a user name; 5.0 allows it for token schemes.
        if has_password && !has_username && !v5 {
            return Err(r.malformed("password flag set without user name flag"));
        }

        let keep_alive = r.u16()?;
        let properties = if v5 {
            Properties::decode(r, Context::Connect)?
        } else {
            Properties::default()
        };

        let client_id = r.string()?;
        let id_ok = match protocol_version {
            ProtocolVersion::V3_1 => !client_id.is_empty(),
            ProtocolVersion::V3_1_1 => !client_id.is_empty() || clean_start,
            ProtocolVersion::V5 => true,
        };
        if !id_ok {
            return Err(DecodeError::ClientIdentifierNotValid);
        }

        let will = if will_flag {
            let properties = if v5 {
                Properties::decode(r, Context::Will)?
            } else {
                Properties::default()
            };
            let topic = r.string()?;
            if !topic::is_valid_topic_name(&topic) {
                return Err(DecodeError::InvalidTopicName {
                    packet: PACKET,
                    topic,
                });
            }
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string()).transpose()?;
        let password = has_password.then(|| r.binary()).transpose()?;
        Ok(Connect {
            protocol_version,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | ((will.qos as u8) << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.clean_start {
            flags |= 0x02;
        }
        flags
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol_version.is_v5();
        let mut len = field_len(self.protocol_version.protocol_name().len()) + 1 + 1 + 2;
        if v5 {
            len += self.properties.encoded_len();
        }
        len += field_len(self.client_id.len());
        if let Some(will) = &self.will {
            if v5 {
                len += will.properties.encoded_len();
            }
            len += field_len(will.topic.len()) + field_len(will.payload.len());
        }
        len += self.username.as_ref().map_or(0, |u| field_len(u.len()));
        len += self.password.as_ref().map_or(0, |p| field_len(p.len()));
        len
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = self.protocol_version.is_v5();
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(EncodeError::InvalidValue {
                packet: PACKET,
                reason: "a password without a user name needs MQTT 5",
            });
        }
        put_string(buf, PACKET, self.protocol_version.protocol_name())?;
        buf.put_u8(self.protocol_version.level());
        buf.put_u8(self.flags());
        buf.put_u16(self.keep_alive);
        if v5 {
            self.properties.encode(buf, PACKET)?;
        }
        put_string(buf, PACKET, &self.client_id)?;
        if let Some(will) = &self.will {
            if v5 {
                will.properties.encode(buf, PACKET)?;
            }
            put_string(buf, PACKET, &will.topic)?;
            put_binary(buf, PACKET, &will.payload)?;
        }
        if let Some(username) = &self.username {
            put_string(buf, PACKET, username)?;
        }
        if let Some(password) = &self.password {
            put_binary(buf, PACKET, password)?;
        }
        Ok(())
    }
}

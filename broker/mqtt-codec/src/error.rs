//! Decode and encode errors.
//!
//! Decoding errors are the peer's fault and each maps to the MQTT 5 reason code the broker
//! sends before closing the connection ([`DecodeError::reason_code`]), or, for a 3.x
//! CONNECT, to a CONNACK return code ([`DecodeError::v3_connack_return_code`]). Encoding
//! errors are the caller's fault (a field that does not fit the wire format) and never
//! leave partial bytes in the output buffer.

use crate::{PacketType, ProtocolVersion, ReasonCode};

/// Why bytes from the peer are not a valid packet.
///
/// "Not enough bytes yet" is not an error: [`crate::decode`] returns `Ok(None)` for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The declared packet size exceeds the caller's maximum. Detected from the fixed
    /// header alone, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },

    /// The remaining-length varint has a fifth byte, or more bytes than its value needs.
    #[error("remaining length is longer than 4 bytes or not minimally encoded")]
    MalformedRemainingLength,

    /// Packet type 0, or 15 (AUTH) before MQTT 5.
    #[error("packet type {packet_type} is reserved in MQTT {version}")]
    InvalidPacketType {
        packet_type: u8,
        version: ProtocolVersion,
    },

    /// The low nibble of the first byte is not what the packet type requires.
    #[error("{packet}: reserved fixed header flags are {flags:#06b}")]
    InvalidFixedHeaderFlags { packet: PacketType, flags: u8 },

    /// A QoS field holds 3.
    #[error("{packet}: QoS 3 is not a valid QoS")]
    InvalidQoS { packet: PacketType },

    /// A string is not well-formed UTF-8 or contains U+0000.
    #[error("{packet}: string is not valid UTF-8 or contains U+0000")]
    InvalidString { packet: PacketType },

    /// A property identifier is unknown or not allowed in this packet.
    #[error("{packet}: property {id:#04x} is unknown or not allowed here")]
    InvalidProperty { packet: PacketType, id: u32 },

    /// A reason code (or 3.x return code) that this packet may not carry.
    #[error("{packet}: reason code {code:#04x} is not valid here")]
    InvalidReasonCode { packet: PacketType, code: u8 },

    /// Any other structural problem: a field runs past the end, trailing bytes, a reserved
    /// bit set.
    #[error("{packet}: malformed: {reason}")]
    Malformed {
        packet: PacketType,
        reason: &'static str,
    },

    /// A property that may appear at most once appears again.
    #[error("{packet}: property {id:#04x} appears more than once")]
    DuplicateProperty { packet: PacketType, id: u8 },

    /// A property value the specification forbids (0 where it must be non-zero, a boolean
    /// that is neither 0 nor 1, …).
    #[error("{packet}: property {id:#04x} has an invalid value")]
    InvalidPropertyValue { packet: PacketType, id: u8 },

    /// A packet identifier of 0 where a non-zero one is required.
    #[error("{packet}: packet identifier must not be 0")]
    ZeroPacketId { packet: PacketType },

    /// Well-formed bytes that break a rule of the specification.
    #[error("{packet}: protocol error: {reason}")]
    ProtocolError {
        packet: PacketType,
        reason: &'static str,
    },

    /// CONNECT names a protocol level this codec does not speak.
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion { level: u8 },

    /// CONNECT's protocol name is neither "MQTT" nor "MQIsdp".
    #[error("unknown protocol name")]
    InvalidProtocolName,

    /// CONNECT's client identifier is not acceptable for its version (empty in 3.1, or
    /// empty without a clean session in 3.1.1).
    #[error("client identifier is not valid")]
    ClientIdentifierNotValid,

    /// A topic name that is empty (without a topic alias) or contains a wildcard.
    #[error("{packet}: invalid topic name {topic:?}")]
    InvalidTopicName { packet: PacketType, topic: String },

    /// A topic filter that is empty or misuses `+`, `#` or `$share/`.
    #[error("{packet}: invalid topic filter {filter:?}")]
    InvalidTopicFilter { packet: PacketType, filter: String },
}

impl DecodeError {
    /// The MQTT 5 reason code to report this error with (CONNACK before a session
    /// exists, DISCONNECT after).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::MalformedRemainingLength
            | DecodeError::InvalidPacketType { .. }
            | DecodeError::InvalidFixedHeaderFlags { .. }
            | DecodeError::InvalidQoS { .. }
            | DecodeError::InvalidString { .. }
            | DecodeError::InvalidProperty { .. }
            | DecodeError::InvalidReasonCode { .. }
            | DecodeError::Malformed { .. } => ReasonCode::MALFORMED_PACKET,
            DecodeError::DuplicateProperty { .. }
            | DecodeError::InvalidPropertyValue { .. }
            | DecodeError::ZeroPacketId { .. }
            | DecodeError::ProtocolError { .. } => ReasonCode::PROTOCOL_ERROR,
            DecodeError::UnsupportedProtocolVersion { .. } | DecodeError::InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::ClientIdentifierNotValid => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            DecodeError::InvalidTopicName { .. } => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::InvalidTopicFilter { .. } => ReasonCode::TOPIC_FILTER_INVALID,
        }
    }

    /// The MQTT 3.x CONNACK return code a server sends for this error in reply to a
    /// CONNECT, if 3.x defines one; `None` means "close the connection without CONNACK".
    pub fn v3_connack_return_code(&self) -> Option<u8> {
        match self {
            DecodeError::UnsupportedProtocolVersion { .. } | DecodeError::InvalidProtocolName => {
                Some(1)
            }
            DecodeError::ClientIdentifierNotValid => Some(2),
            _ => None,
        }
    }
}

/// Why a packet cannot be written to the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or binary field is longer than the 65,535 bytes its u16 prefix allows.
    #[error("{packet}: field of {len} bytes exceeds 65535")]
    FieldTooLong { packet: PacketType, len: usize },

    /// The packet's remaining length exceeds 268,435,455, the largest varint.
    #[error("{packet}: remaining length {len} exceeds 268435455")]
    PacketTooLarge { packet: PacketType, len: usize },

    /// The packet does not exist in this version (AUTH before MQTT 5).
    #[error("{packet} does not exist in MQTT {version}")]
    NotInVersion {
        packet: PacketType,
        version: ProtocolVersion,
    },

    /// A field value that cannot be represented (packet id 0 with QoS > 0, a
    /// subscription identifier of 0 or above 268,435,455, …).
    #[error("{packet}: invalid value: {reason}")]
    InvalidValue {
        packet: PacketType,
        reason: &'static str,
    },
}

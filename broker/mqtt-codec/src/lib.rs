//! A pure MQTT codec for versions 3.1, 3.1.1 and 5.0: bytes in, typed packets out.
//!
//! No I/O, no async runtime, no broker logic. The broker's connection code, the fuzz
//! target, benchmarks and test clients all share this one copy.
//!
//! # Decoding
//!
//! [`decode`] works on the connection's own read buffer in two steps. First it reads the
//! fixed header ([`parse_fixed_header`]) and checks the declared size against the
//! caller's maximum *before* buffering the body; then, once every byte of the packet has
//! arrived, it consumes exactly that packet and decodes it. "Not enough bytes yet" is
//! `Ok(None)`, a normal result: read more and call again. Partial input stays in the
//! caller's buffer, so a cancelled read loses nothing.
//!
//! ```text
//! loop {
//!     match mqtt_codec::decode(&mut read_buf, version, max_packet_size)? {
//!         Some(packet) => handle(packet),
//!         None => read_more_into(&mut read_buf),
//!     }
//! }
//! ```
//!
//! The decoder needs the connection's protocol version: CONNECT carries it, and the
//! caller passes it in for every packet after that. CONNECT itself is always decoded
//! with the version it names, whatever the caller passes.
//!
//! Every [`DecodeError`] maps to the MQTT 5 reason code the broker reports before closing
//! the connection ([`DecodeError::reason_code`]), and errors in a 3.x CONNECT to a CONNACK
//! return code ([`DecodeError::v3_connack_return_code`]). To know which of the two to
//! send when the first CONNECT fails, peek at its version with [`peek_connect_version`]
//! before decoding it.
//!
//! ```
//! use bytes::BytesMut;
//! use mqtt_codec::{Packet, ProtocolVersion, Publish, decode};
//!
//! let mut wire = BytesMut::new();
//! Packet::from(Publish::new("sensors/1", "21.5")).encode(ProtocolVersion::V5, &mut wire)?;
//! let (first, rest) = wire.split_at(3);
//!
//! let mut read_buf = BytesMut::from(first);
//! assert_eq!(decode(&mut read_buf, ProtocolVersion::V5, 1024)?, None); // incomplete
//! read_buf.extend_from_slice(rest);
//! let packet = decode(&mut read_buf, ProtocolVersion::V5, 1024)?.expect("complete");
//! assert!(matches!(packet, Packet::Publish(p) if p.topic == "sensors/1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Encoding
//!
//! [`Packet::encode`] appends a packet in a given version; [`Packet::encoded_len`] gives
//! its size first so the broker can respect the client's Maximum Packet Size.
//!
//! # Topics
//!
//! [`topic`] validates topic names and filters, matches them, and parses
//! `$share/{group}/{filter}`.

mod error;
mod header;
mod packet;
mod properties;
mod protocol;
mod reason;
pub mod topic;
mod wire;

pub use error::{DecodeError, EncodeError};
pub use header::{FixedHeader, parse_fixed_header};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PubAck, PubComp, PubRec, PubRel, Publish,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, TopicSubscription, UnsubAck,
    Unsubscribe, peek_connect_version,
};
pub use properties::Properties;
pub use protocol::{PacketType, ProtocolVersion, QoS};
pub use reason::ReasonCode;

use bytes::{Buf, BytesMut};

/// The largest packet MQTT can describe: a 5-byte fixed header plus the largest
/// remaining length.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;

/// Most bytes [`decode`] reserves ahead for a packet that has not fully arrived.
const RESERVE_AHEAD: usize = 64 * 1024;

/// Decodes the next packet from the front of `buf`.
///
/// - `Ok(None)`: `buf` does not hold a whole packet yet; nothing was consumed.
///   Once the packet's size is known (and accepted), capacity for the rest of it (up to
///   64 KiB) is reserved so the next read can land in place.
/// - `Ok(Some(packet))`: exactly one packet was consumed from `buf`.
/// - `Err(_)`: the input is not valid MQTT for `version`, or the packet's total size
///   exceeds `max_packet_size` (checked from the fixed header alone, before the body is
///   buffered). The connection should be closed; what is left in `buf` is unspecified.
///
/// `version` is the connection's protocol version; it is ignored for CONNECT, which
/// carries its own. Before CONNECT, pass [`ProtocolVersion::V5`]: that accepts any
/// packet type, and the broker rejects anything but CONNECT as the first packet.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = parse_fixed_header(buf, version)? else {
        return Ok(None);
    };
    let size = header.packet_length();
    if size > max_packet_size as usize {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        // Reserve room for the rest, but not all of a large packet at once: a peer that
        // sends only a fixed header must not make us allocate its whole declared size.
        buf.reserve((size - buf.len()).min(RESERVE_AHEAD));
        return Ok(None);
    }
    let mut body = buf.split_to(size).freeze();
    body.advance(header.header_length);
    Packet::decode_body(&header, body, version).map(Some)
}

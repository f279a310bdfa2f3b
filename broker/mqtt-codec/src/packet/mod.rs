//! The fifteen packets, one module each (the four acknowledgements of PUBLISH share one
//! module because they share one layout), and [`Packet`], which dispatches on the type.
//!
//! Every packet module provides the same three functions: `decode` from the body of a
//! complete packet, `body_len` (the remaining length it will encode to) and `encode_body`.
//! The fixed header is handled here, once.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod suback;
mod subscribe;
mod unsuback;
mod unsubscribe;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill, peek_connect_version};
pub use disconnect::Disconnect;
pub use publish::Publish;
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscriptionOptions, TopicSubscription};
pub use unsuback::UnsubAck;
pub use unsubscribe::Unsubscribe;

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{MAX_VARINT, Reader, put_varint, varint_len};
use crate::{DecodeError, EncodeError, FixedHeader, PacketType, ProtocolVersion};

/// One MQTT control packet of any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: CONNECT is the largest packet and arrives once per connection, so it
    /// should not set the size of every `Packet`.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Decodes the body of a packet whose fixed header is `header` and whose
    /// `remaining_length` bytes are `body`.
    ///
    /// CONNECT is decoded with the version it names itself; every other packet with
    /// `version`.
    pub fn decode_body(
        header: &FixedHeader,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Packet, DecodeError> {
        let packet = header.packet_type;
        let mut r = Reader::new(body, packet);
        let decoded = match packet {
            PacketType::Connect => Packet::Connect(Box::new(Connect::decode(&mut r)?)),
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(&mut r, version)?),
            PacketType::Publish => Packet::Publish(Publish::decode(&mut r, header.flags, version)?),
            PacketType::PubAck => Packet::PubAck(PubAck::decode(&mut r, version)?),
            PacketType::PubRec => Packet::PubRec(PubRec::decode(&mut r, version)?),
            PacketType::PubRel => Packet::PubRel(PubRel::decode(&mut r, version)?),
            PacketType::PubComp => Packet::PubComp(PubComp::decode(&mut r, version)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, version)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, version)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, version)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, version)?),
            PacketType::PingReq => Packet::PingReq,
            PacketType::PingResp => Packet::PingResp,
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, version)?),
            PacketType::Auth => {
                if !version.is_v5() {
                    return Err(DecodeError::InvalidPacketType {
                        packet_type: PacketType::Auth as u8,
                        version,
                    });
                }
                Packet::Auth(Auth::decode(&mut r)?)
            }
        };
        r.finish()?;
        Ok(decoded)
    }

    /// The version the packet is written in: CONNECT always uses its own.
    fn effective_version(&self, version: ProtocolVersion) -> ProtocolVersion {
        match self {
            Packet::Connect(c) => c.protocol_version,
            _ => version,
        }
    }

    /// The remaining length this packet encodes to.
    fn body_len(&self, version: ProtocolVersion) -> usize {
        let version = self.effective_version(version);
        match self {
            Packet::Connect(p) => p.body_len(),
            Packet::ConnAck(p) => p.body_len(version),
            Packet::Publish(p) => p.body_len(version),
            Packet::PubAck(p) => p.body_len(version),
            Packet::PubRec(p) => p.body_len(version),
            Packet::PubRel(p) => p.body_len(version),
            Packet::PubComp(p) => p.body_len(version),
            Packet::Subscribe(p) => p.body_len(version),
            Packet::SubAck(p) => p.body_len(version),
            Packet::Unsubscribe(p) => p.body_len(version),
            Packet::UnsubAck(p) => p.body_len(version),
            Packet::PingReq | Packet::PingResp => 0,
            Packet::Disconnect(p) => p.body_len(version),
            Packet::Auth(p) => p.body_len(),
        }
    }

    /// Size of the whole packet on the wire in `version`, fixed header included: compare
    /// it with the peer's Maximum Packet Size before sending.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + varint_len(body) + body
    }

    /// Appends the packet to `buf` in `version` (CONNECT uses its own
    /// `protocol_version`). On error `buf` is left as it was.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let start = buf.len();
        let result = self.encode_unchecked(version, buf);
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }

    fn encode_unchecked(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let version = self.effective_version(version);
        let packet = self.packet_type();
        if packet == PacketType::Auth && !version.is_v5() {
            return Err(EncodeError::NotInVersion { packet, version });
        }
        let len = self.body_len(version);
        if len > MAX_VARINT {
            return Err(EncodeError::PacketTooLarge { packet, len });
        }
        let flags = match self {
            Packet::Publish(p) => p.fixed_flags(),
            _ => packet.fixed_flags().unwrap_or(0),
        };
        buf.reserve(1 + varint_len(len) + len);
        buf.put_u8(((packet as u8) << 4) | flags);
        put_varint(buf, len);
        let body_start = buf.len();
        match self {
            Packet::Connect(p) => p.encode_body(buf)?,
            Packet::ConnAck(p) => p.encode_body(version, buf)?,
            Packet::Publish(p) => p.encode_body(version, buf)?,
            Packet::PubAck(p) => p.encode_body(version, buf)?,
            Packet::PubRec(p) => p.encode_body(version, buf)?,
            Packet::PubRel(p) => p.encode_body(version, buf)?,
            Packet::PubComp(p) => p.encode_body(version, buf)?,
            Packet::Subscribe(p) => p.encode_body(version, buf)?,
            Packet::SubAck(p) => p.encode_body(version, buf)?,
            Packet::Unsubscribe(p) => p.encode_body(version, buf)?,
            Packet::UnsubAck(p) => p.encode_body(version, buf)?,
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.encode_body(version, buf)?,
            Packet::Auth(p) => p.encode_body(buf)?,
        }
        debug_assert_eq!(buf.len() - body_start, len, "{packet} body_len is wrong");
        Ok(())
    }
}

macro_rules! from_packet {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Packet {
                Packet::$ty(p)
            }
        }
    )*};
}
impl From<Connect> for Packet {
    fn from(p: Connect) -> Packet {
        Packet::Connect(Box::new(p))
    }
}

from_packet!(
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

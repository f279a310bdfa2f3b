//! Wire primitives shared by every packet: big-endian integers, variable byte integers,
//! length-prefixed strings and binary data.
//!
//! ```text
//! u16 / u32             big-endian
//! variable byte int     1..=4 bytes, 7 bits each, least significant group first,
//!                       bit 7 set = "another byte follows"; max 268,435,455
//! UTF-8 string          u16 length | bytes   (well-formed UTF-8, no U+0000)
//! binary data           u16 length | bytes
//! string pair           string | string      (user properties)
//! ```
//!
//! [`Reader`] reads from the body of one packet whose bytes are all present, so running
//! out of bytes here is a malformed packet, never "incomplete".

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{DecodeError, EncodeError, PacketType};

/// The largest value a variable byte integer can hold.
pub(crate) const MAX_VARINT: usize = 268_435_455;

/// A cursor over the body of one complete packet.
pub(crate) struct Reader {
    buf: Bytes,
    packet: PacketType,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Reader {
        Reader { buf, packet }
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> DecodeError {
        DecodeError::Malformed {
            packet: self.packet,
            reason,
        }
    }

    pub(crate) fn protocol_error(&self, reason: &'static str) -> DecodeError {
        DecodeError::ProtocolError {
            packet: self.packet,
            reason,
        }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(self.malformed("a field runs past the end of the packet"))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    /// A packet identifier, which must be non-zero wherever one is present.
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId {
                packet: self.packet,
            }),
            id => Ok(id),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                // [MQTT-1.5.5-1]: the minimum number of bytes; a trailing zero group
                // would let one value take several encodings.
                if byte == 0 && i > 0 {
                    return Err(self.malformed("variable byte integer is not minimally encoded"));
                }
                return Ok(value);
            }
        }
        Err(self.malformed("variable byte integer longer than 4 bytes"))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Everything left: the payload of PUBLISH, a reason-code list.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()? as usize;
        self.take(len)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::InvalidString {
            packet: self.packet,
        })?;
        // U+0000 is well-formed UTF-8 but forbidden by every MQTT version ([MQTT-1.5.4-2]).
        if text.contains('\0') {
            return Err(DecodeError::InvalidString {
                packet: self.packet,
            });
        }
        Ok(text.to_owned())
    }

    /// Fails if bytes remain: a packet must be consumed exactly.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("unexpected bytes after the last field"))
        }
    }
}

/// How many bytes `value` takes as a variable byte integer.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer; the caller has checked `value <= MAX_VARINT`.
pub(crate) fn put_varint(buf: &mut BytesMut, mut value: usize) {
    debug_assert!(value <= MAX_VARINT);
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Length of a string or binary field on the wire, prefix included.
pub(crate) fn field_len(len: usize) -> usize {
    2 + len
}

pub(crate) fn put_binary(
    buf: &mut BytesMut,
    packet: PacketType,
    data: &[u8],
) -> Result<(), EncodeError> {
    let len = u16::try_from(data.len()).map_err(|_| EncodeError::FieldTooLong {
        packet,
        len: data.len(),
    })?;
    buf.put_u16(len);
    buf.put_slice(data);
    Ok(())
}

pub(crate) fn put_string(
    buf: &mut BytesMut,
    packet: PacketType,
    s: &str,
) -> Result<(), EncodeError> {
    put_binary(buf, packet, s.as_bytes())
}

/// Rejects a zero packet identifier before it reaches the wire, where the peer would
/// treat it as a protocol error.
pub(crate) fn check_packet_id(packet: PacketType, id: u16) -> Result<(), EncodeError> {
    if id == 0 {
        Err(EncodeError::InvalidValue {
            packet,
            reason: "packet identifier 0",
        })
    } else {
        Ok(())
    }
}

//! The fixed header at the start of every packet, and the first of the two decode steps:
//! find out how long the next packet is without consuming anything.
//!
//! ```text
//!  bit    7  6  5  4 | 3  2  1  0
//! byte 1  packet type| flags (type specific; PUBLISH: DUP, QoS x2, RETAIN)
//! byte 2… remaining length: variable byte integer, 1..=4 bytes
//! ```

use crate::{DecodeError, PacketType, ProtocolVersion};

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes after the fixed header.
    pub remaining_length: usize,
    /// Bytes of the fixed header itself (2..=5).
    pub header_length: usize,
}

impl FixedHeader {
    /// Size of the whole packet on the wire: what MQTT 5's "Maximum Packet Size" limits.
    pub fn packet_length(&self) -> usize {
        self.header_length + self.remaining_length
    }
}

/// Parses the fixed header at the start of `buf` without consuming it.
///
/// Returns `Ok(None)` while the header itself is incomplete. Checks the packet type and
/// the reserved flags for `version` as soon as the first byte is present, so garbage is
/// rejected before the caller buffers a body for it.
pub fn parse_fixed_header(
    buf: &[u8],
    version: ProtocolVersion,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let nibble = first >> 4;
    let packet_type = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if !version.is_v5() => None,
        other => other,
    }
    .ok_or(DecodeError::InvalidPacketType {
        packet_type: nibble,
        version,
    })?;
    let flags = first & 0x0F;
    match packet_type.fixed_flags() {
        // MQTT 3.1 let a client set DUP when it retransmits PUBREL, SUBSCRIBE or
        // UNSUBSCRIBE (they were QoS 1 packets there); 3.1.1 made the flags fixed.
        Some(0b0010) if version == ProtocolVersion::V3_1 && flags == 0b1010 => {}
        Some(required) if required != flags => {
            return Err(DecodeError::InvalidFixedHeaderFlags {
                packet: packet_type,
                flags,
            });
        }
        // PUBLISH: QoS 3 is checked here too so that it fails with the header.
        None if (flags >> 1) & 0b11 == 3 => {
            return Err(DecodeError::InvalidQoS {
                packet: packet_type,
            });
        }
        _ => {}
    }

    let mut remaining_length = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining_length |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A final zero group after a continuation byte is a longer-than-needed
            // encoding, which [MQTT-1.5.5-1] forbids.
            if byte == 0 && i > 0 {
                return Err(DecodeError::MalformedRemainingLength);
            }
            return Ok(Some(FixedHeader {
                packet_type,
                flags,
                remaining_length,
                header_length: 2 + i,
            }));
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

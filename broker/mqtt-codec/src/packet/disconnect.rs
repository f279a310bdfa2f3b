//! DISCONNECT: the end of a connection; from the client only in 3.x, from either side
//! in 5.0.
//!
//! ```text
//! fixed header   0xE0 | remaining length (always 0 in 3.x)
//! [5.0, remaining length > 0]  reason code u8 (absent = 0x00 normal disconnection)
//! [5.0, remaining length > 1]  properties
//! ```

use bytes::{BufMut, BytesMut};

use crate::properties::Context;
use crate::wire::Reader;
use crate::{DecodeError, EncodeError, PacketType, Properties, ProtocolVersion, ReasonCode};

const PACKET: PacketType = PacketType::Disconnect;

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Always normal disconnection before 5.0.
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: ReasonCode) -> Disconnect {
        Disconnect {
            reason_code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        if !version.is_v5() || r.is_empty() {
            return Ok(Disconnect::default());
        }
        let code = r.u8()?;
        let reason_code = ReasonCode(code);
        if !reason_code.is_valid_for(PACKET) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PACKET,
                code,
            });
        }
        let properties = if r.is_empty() {
            Properties::default()
        } else {
            Properties::decode(r, Context::Disconnect)?
        };
        Ok(Disconnect {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() || (self.reason_code.0 == 0 && self.properties.is_empty()) {
            0
        } else if self.properties.is_empty() {
            1
        } else {
            1 + self.properties.encoded_len()
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        buf: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self.body_len(version) {
            0 => {}
            1 => buf.put_u8(self.reason_code.0),
            _ => {
                buf.put_u8(self.reason_code.0);
                self.properties.encode(buf, PACKET)?;
            }
        }
        Ok(())
    }
}

//! Fuzz target for `mqtt_codec::decode`.
//!
//! The first input byte chooses the protocol version (low bits) and whether a small
//! maximum packet size applies (high bit), so one corpus exercises every version and the
//! size check. The rest is a byte stream decoded packet after packet, as a connection
//! would. Beyond "never panics", every packet that decodes must re-encode to bytes that
//! decode to the same packet, and `encoded_len` must match what `encode` wrote.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{MAX_PACKET_SIZE, ProtocolVersion, decode};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let version = match selector % 3 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    };
    let max = if selector & 0x80 != 0 {
        u32::from(selector & 0x7F)
    } else {
        MAX_PACKET_SIZE
    };
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(packet)) = decode(&mut buf, version, max) {
        let mut out = BytesMut::new();
        packet
            .encode(version, &mut out)
            .expect("a decoded packet re-encodes");
        assert_eq!(out.len(), packet.encoded_len(version));
        let again = decode(&mut out, version, MAX_PACKET_SIZE)
            .expect("a re-encoded packet decodes")
            .expect("a re-encoded packet is complete");
        assert_eq!(again, packet);
        assert!(out.is_empty());
    }
});

//! Every strict prefix of a valid packet is "incomplete": `Ok(None)`, nothing consumed,
//! never an error and never a panic. A connection may receive any packet one byte at a
//! time.

mod common;

use bytes::BytesMut;
use common::{NO_LIMIT, VERSIONS, encode, sample_packets};
use mqtt_codec::{ProtocolVersion, decode};

#[test]
fn every_truncated_prefix_is_incomplete() {
    for version in VERSIONS {
        for packet in sample_packets(version) {
            let bytes = encode(&packet, version);
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                let result = decode(&mut buf, version, NO_LIMIT);
                assert_eq!(
                    result,
                    Ok(None),
                    "{cut} of {} bytes of {packet:?} in {version}",
                    bytes.len()
                );
                assert_eq!(buf.len(), cut, "an incomplete decode consumed bytes");
            }
        }
    }
}

#[test]
fn feeding_one_byte_at_a_time_yields_each_packet_once() {
    let version = ProtocolVersion::V5;
    let packets = sample_packets(version);
    let mut wire = BytesMut::new();
    for p in &packets {
        p.encode(version, &mut wire).unwrap();
    }
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        if let Some(p) = decode(&mut buf, version, NO_LIMIT).unwrap() {
            decoded.push(p);
        }
    }
    assert_eq!(decoded, packets);
    assert!(buf.is_empty());
}

//! Every packet type, in every version, decodes to what was encoded.

mod common;

use bytes::BytesMut;
use common::{NO_LIMIT, VERSIONS, decode_all, encode, sample_packets};
use mqtt_codec::{EncodeError, Packet, PacketType, ProtocolVersion, Publish, decode};

#[test]
fn every_packet_round_trips_in_every_version() {
    for version in VERSIONS {
        for packet in sample_packets(version) {
            let bytes = encode(&packet, version);
            assert_eq!(
                bytes.len(),
                packet.encoded_len(version),
                "encoded_len of {packet:?} in {version}"
            );
            let decoded = decode_all(&bytes, version)
                .unwrap_or_else(|e| panic!("decoding {packet:?} in {version}: {e}"));
            assert_eq!(decoded, packet, "round trip in {version}");
        }
    }
}

#[test]
fn all_fifteen_packet_types_are_covered() {
    let mut seen: Vec<PacketType> = sample_packets(ProtocolVersion::V5)
        .iter()
        .map(Packet::packet_type)
        .collect();
    seen.sort_by_key(|t| *t as u8);
    seen.dedup();
    assert_eq!(seen.len(), 15, "covered: {seen:?}");
}

#[test]
fn a_stream_of_packets_is_consumed_one_at_a_time() {
    for version in VERSIONS {
        let packets = sample_packets(version);
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(version, &mut stream).unwrap();
        }
        for expected in &packets {
            let got = decode(&mut stream, version, NO_LIMIT).unwrap().unwrap();
            assert_eq!(&got, expected);
        }
        assert!(stream.is_empty());
        assert_eq!(decode(&mut stream, version, NO_LIMIT), Ok(None));
    }
}

#[test]
fn connect_is_decoded_in_its_own_version_whatever_the_caller_passes() {
    for version in VERSIONS {
        let packet = &sample_packets(version)[0];
        let bytes = encode(packet, version);
        for passed in VERSIONS {
            assert_eq!(&decode_all(&bytes, passed).unwrap(), packet);
        }
    }
}

#[test]
fn v3_drops_v5_only_fields_when_encoding() {
    let v5 = sample_packets(ProtocolVersion::V5);
    for packet in v5
        .iter()
        .filter(|p| !matches!(p, Packet::Auth(_) | Packet::Connect(_)))
    {
        // Encoding a v5-shaped packet as 3.1.1 must still give a valid 3.1.1 packet.
        if let Packet::Publish(p) = packet
            && p.topic.is_empty()
        {
            continue;
        }
        let bytes = encode(packet, ProtocolVersion::V3_1_1);
        decode_all(&bytes, ProtocolVersion::V3_1_1)
            .unwrap_or_else(|e| panic!("{packet:?} as 3.1.1: {e}"));
    }
}

#[test]
fn auth_cannot_be_encoded_before_v5() {
    let mut buf = BytesMut::from(&b"keep"[..]);
    let err = Packet::Auth(Default::default())
        .encode(ProtocolVersion::V3_1_1, &mut buf)
        .unwrap_err();
    assert!(matches!(err, EncodeError::NotInVersion { .. }), "{err:?}");
    assert_eq!(
        &buf[..],
        b"keep",
        "a failed encode must not leave bytes behind"
    );
}

#[test]
fn encode_errors_leave_the_buffer_untouched() {
    let long = "x".repeat(70_000);
    let mut buf = BytesMut::from(&b"prefix"[..]);
    let err = Packet::Publish(Publish::new(long, "p"))
        .encode(ProtocolVersion::V5, &mut buf)
        .unwrap_err();
    assert!(
        matches!(err, EncodeError::FieldTooLong { len: 70_000, .. }),
        "{err:?}"
    );
    assert_eq!(&buf[..], b"prefix");

    let zero_id = Publish {
        qos: mqtt_codec::QoS::AtLeastOnce,
        ..Publish::new("t", "p")
    };
    assert!(
        Packet::Publish(zero_id)
            .encode(ProtocolVersion::V5, &mut buf)
            .is_err()
    );
    assert_eq!(&buf[..], b"prefix");
}

#[test]
fn large_payloads_use_multi_byte_remaining_lengths() {
    for size in [127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        let packet = Packet::Publish(Publish::new("t", vec![7u8; size]));
        let bytes = encode(&packet, ProtocolVersion::V5);
        assert_eq!(bytes.len(), packet.encoded_len(ProtocolVersion::V5));
        assert_eq!(
            decode_all(&bytes, ProtocolVersion::V5).unwrap(),
            packet,
            "size {size}"
        );
    }
}

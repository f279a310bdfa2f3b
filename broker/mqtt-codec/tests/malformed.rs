//! Invalid input is rejected with the reason code the broker must report.

mod common;

use bytes::BytesMut;
use common::NO_LIMIT;
use mqtt_codec::{DecodeError, ProtocolVersion, ReasonCode, decode};

const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn decode_err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, version, NO_LIMIT) {
        Err(e) => e,
        Ok(other) => panic!("{bytes:02x?} in {version} decoded as {other:?}"),
    }
}

fn assert_reason(bytes: &[u8], version: ProtocolVersion, expected: ReasonCode) {
    let err = decode_err(bytes, version);
    assert_eq!(
        err.reason_code(),
        expected,
        "{bytes:02x?} in {version}: {err}"
    );
}

/// A v5 PUBLISH QoS 0 on topic "t" with the given property bytes and no payload.
fn v5_publish_with_properties(props: &[u8]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01, b't', props.len() as u8];
    body.extend_from_slice(props);
    let mut bytes = vec![0x30, body.len() as u8];
    bytes.extend(body);
    bytes
}

#[test]
fn remaining_length_longer_than_four_bytes_is_malformed() {
    let err = decode_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], V3);
    assert_eq!(err, DecodeError::MalformedRemainingLength);
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn oversized_packet_is_rejected_from_its_header_alone() {
    // Only the fixed header has arrived: 0x30, remaining length 1000.
    let mut buf = BytesMut::from(&[0x30, 0xE8, 0x07][..]);
    let err = decode(&mut buf, V5, 100).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 1003,
            max: 100
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    // The limit is on the whole packet, header included.
    let mut exact = BytesMut::from(&[0xC0, 0x00][..]);
    assert!(decode(&mut exact, V5, 2).unwrap().is_some());
    let mut over = BytesMut::from(&[0xC0, 0x00][..]);
    assert!(matches!(
        decode(&mut over, V5, 1),
        Err(DecodeError::PacketTooLarge { size: 2, .. })
    ));
}

#[test]
fn reserved_packet_types_are_malformed() {
    assert_reason(&[0x00, 0x00], V5, ReasonCode::MALFORMED_PACKET);
    // AUTH does not exist before MQTT 5.
    assert_reason(&[0xF0, 0x00], V3, ReasonCode::MALFORMED_PACKET);
    assert_reason(
        &[0xF0, 0x00],
        ProtocolVersion::V3_1,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    for first in [0x80, 0x83, 0x60, 0xA0, 0x41, 0xC8, 0x11, 0xE1] {
        let err = decode_err(&[first, 0x00], V5);
        assert!(
            matches!(err, DecodeError::InvalidFixedHeaderFlags { .. }),
            "{first:#x}: {err:?}"
        );
        assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
    }
}

#[test]
fn qos_3_is_malformed() {
    assert_reason(
        &[0x36, 0x03, 0x00, 0x01, b't'],
        V3,
        ReasonCode::MALFORMED_PACKET,
    );
    // Will QoS 3 in CONNECT.
    let connect = [
        0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x1C, 0x00, 0x00, 0x00, 0x01, b'c',
    ];
    assert_reason(&connect, V3, ReasonCode::MALFORMED_PACKET);
    // Subscription QoS 3.
    assert_reason(
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03],
        V3,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn invalid_utf8_and_nul_in_strings_are_malformed() {
    assert_reason(
        &[0x30, 0x04, 0x00, 0x02, 0xC3, 0x28],
        V3,
        ReasonCode::MALFORMED_PACKET,
    );
    assert_reason(
        &[0x30, 0x04, 0x00, 0x02, b'a', 0x00],
        V3,
        ReasonCode::MALFORMED_PACKET,
    );
    // UTF-16 surrogate encoded in UTF-8 (ED A0 80) is not well-formed UTF-8.
    assert_reason(
        &[0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80],
        V5,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn topic_names_with_wildcards_are_invalid() {
    assert_reason(
        &[0x30, 0x05, 0x00, 0x03, b'a', b'/', b'+'],
        V3,
        ReasonCode::TOPIC_NAME_INVALID,
    );
    assert_reason(
        &[0x30, 0x03, 0x00, 0x01, b'#'],
        V5,
        ReasonCode::TOPIC_NAME_INVALID,
    );
    // Empty topic without a topic alias.
    assert_reason(
        &[0x30, 0x03, 0x00, 0x00, 0x00],
        V5,
        ReasonCode::TOPIC_NAME_INVALID,
    );
    assert_reason(
        &[0x30, 0x02, 0x00, 0x00],
        V3,
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn malformed_topic_filters_are_rejected() {
    for filter in [&b"a/#/b"[..], b"a+", b"#a", b"", b"$share/g", b"$share/+/a"] {
        let mut body = vec![0x00, 0x01, 0x00, filter.len() as u8];
        body.extend_from_slice(filter);
        body.push(0x00);
        let mut bytes = vec![0x82, body.len() as u8];
        bytes.extend(&body);
        assert_reason(&bytes, V3, ReasonCode::TOPIC_FILTER_INVALID);
        // UNSUBSCRIBE: same filter without the options byte.
        body.pop();
        let mut bytes = vec![0xA2, body.len() as u8];
        bytes.extend(body);
        assert_reason(&bytes, V3, ReasonCode::TOPIC_FILTER_INVALID);
    }
}

#[test]
fn subscribe_and_unsubscribe_without_filters_are_protocol_errors() {
    assert_reason(&[0x82, 0x02, 0x00, 0x01], V3, ReasonCode::PROTOCOL_ERROR);
    assert_reason(
        &[0x82, 0x03, 0x00, 0x01, 0x00],
        V5,
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_reason(&[0xA2, 0x02, 0x00, 0x01], V3, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn zero_packet_identifiers_are_protocol_errors() {
    assert_reason(&[0x40, 0x02, 0x00, 0x00], V3, ReasonCode::PROTOCOL_ERROR);
    assert_reason(
        &[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00],
        V3,
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_reason(
        &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00],
        V3,
        ReasonCode::PROTOCOL_ERROR,
    );
}

#[test]
fn unsupported_protocol_versions_map_to_0x84_and_return_code_1() {
    for (name, level) in [
        (&b"MQTT"[..], 6u8),
        (b"MQTT", 3),
        (b"MQIsdp", 4),
        (b"MQTX", 4),
    ] {
        let mut body = vec![0x00, name.len() as u8];
        body.extend_from_slice(name);
        body.extend([level, 0x02, 0x00, 0x3C, 0x00, 0x01, b'c']);
        let mut bytes = vec![0x10, body.len() as u8];
        bytes.extend(body);
        let err = decode_err(&bytes, V5);
        assert_eq!(
            err.reason_code(),
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            "{err}"
        );
        assert_eq!(err.v3_connack_return_code(), Some(1));
    }
}

#[test]
fn connect_flag_violations_are_malformed() {
    let connect = |flags: u8| {
        vec![
            0x10, 0x0D, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, flags, 0x00, 0x00, 0x00, 0x01,
            b'c',
        ]
    };
    assert_reason(&connect(0x03), V3, ReasonCode::MALFORMED_PACKET); // reserved bit
    assert_reason(&connect(0x0A), V3, ReasonCode::MALFORMED_PACKET); // will QoS without will
    assert_reason(&connect(0x22), V3, ReasonCode::MALFORMED_PACKET); // will retain without will
    assert_reason(&connect(0x42), V3, ReasonCode::MALFORMED_PACKET); // password without user
}

#[test]
fn empty_client_id_without_clean_session_is_rejected_in_3_1_1() {
    let bytes = [
        0x10, 0x0C, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x00, 0x00, 0x3C, 0x00, 0x00,
    ];
    let err = decode_err(&bytes, V3);
    assert_eq!(err.reason_code(), ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert_eq!(err.v3_connack_return_code(), Some(2));
}

#[test]
fn repeated_properties_are_protocol_errors() {
    let twice = [0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2];
    assert_reason(
        &v5_publish_with_properties(&twice),
        V5,
        ReasonCode::PROTOCOL_ERROR,
    );
    // User properties and PUBLISH subscription identifiers may repeat.
    let ok = [
        0x26, 0, 1, b'a', 0, 0, 0x26, 0, 1, b'a', 0, 0, 0x0B, 1, 0x0B, 2,
    ];
    let mut buf = BytesMut::from(&v5_publish_with_properties(&ok)[..]);
    assert!(decode(&mut buf, V5, NO_LIMIT).unwrap().is_some());
    // But a SUBSCRIBE has at most one subscription identifier.
    let sub = [
        0x82, 0x0A, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a',
    ];
    let sub = [&sub[..], &[0x00]].concat();
    let mut fixed = sub.clone();
    fixed[1] = (fixed.len() - 2) as u8;
    assert_reason(&fixed, V5, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn properties_outside_their_packets_or_unknown_are_malformed() {
    // Session expiry interval (0x11) is not a PUBLISH property.
    assert_reason(
        &v5_publish_with_properties(&[0x11, 0, 0, 0, 1]),
        V5,
        ReasonCode::MALFORMED_PACKET,
    );
    // 0x7F is not a property at all.
    assert_reason(
        &v5_publish_with_properties(&[0x7F, 0]),
        V5,
        ReasonCode::MALFORMED_PACKET,
    );
    // A property running past the property length.
    assert_reason(
        &v5_publish_with_properties(&[0x02, 0, 0]),
        V5,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn forbidden_property_values_are_protocol_errors() {
    for props in [
        &[0x0B, 0x00][..],               // subscription identifier 0
        &[0x23, 0x00, 0x00],             // topic alias 0
        &[0x01, 0x02],                   // payload format indicator 2
        &[0x08, 0, 3, b'a', b'/', b'#'], // response topic with a wildcard
    ] {
        assert_reason(
            &v5_publish_with_properties(props),
            V5,
            ReasonCode::PROTOCOL_ERROR,
        );
    }
}

#[test]
fn acks_with_unknown_reason_codes_or_trailing_bytes_are_malformed() {
    assert_reason(
        &[0x40, 0x03, 0x00, 0x01, 0x05],
        V5,
        ReasonCode::MALFORMED_PACKET,
    );
    assert_reason(
        &[0x40, 0x03, 0x00, 0x01, 0x00],
        V3,
        ReasonCode::MALFORMED_PACKET,
    );
    assert_reason(&[0xC0, 0x01, 0x00], V5, ReasonCode::MALFORMED_PACKET);
    assert_reason(&[0xE0, 0x01, 0x00], V3, ReasonCode::MALFORMED_PACKET);
    assert_reason(&[0xE0, 0x01, 0x03], V5, ReasonCode::MALFORMED_PACKET);
}

#[test]
fn subscription_option_violations() {
    let sub = |options: u8, filter: &[u8]| {
        let mut body = vec![0x00, 0x01, 0x00, 0x00, filter.len() as u8];
        body.extend_from_slice(filter);
        body.push(options);
        let mut bytes = vec![0x82, body.len() as u8];
        bytes.extend(body);
        bytes
    };
    assert_reason(&sub(0x40, b"a"), V5, ReasonCode::MALFORMED_PACKET); // reserved bit
    assert_reason(&sub(0x30, b"a"), V5, ReasonCode::PROTOCOL_ERROR); // retain handling 3
    assert_reason(&sub(0x04, b"$share/g/a"), V5, ReasonCode::PROTOCOL_ERROR); // no local + share
}

#[test]
fn dup_on_qos_0_is_malformed() {
    assert_reason(
        &[0x38, 0x03, 0x00, 0x01, b't'],
        V3,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn authentication_data_without_a_method_is_a_protocol_error() {
    let bytes = [0xF0, 0x05, 0x18, 0x03, 0x16, 0x00, 0x00];
    assert_reason(&bytes, V5, ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn the_version_of_a_broken_connect_can_be_peeked_before_decoding() {
    // A v5 CONNECT whose reserved flag is set: decoding fails, peeking still tells v5.
    let bytes = [
        0x10, 0x0E, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01,
        b'c',
    ];
    assert_eq!(mqtt_codec::peek_connect_version(&bytes), Some(V5));
    assert_eq!(
        decode_err(&bytes, V5).reason_code(),
        ReasonCode::MALFORMED_PACKET
    );
    assert_eq!(mqtt_codec::peek_connect_version(&bytes[..8]), None);
    assert_eq!(mqtt_codec::peek_connect_version(&[0x30, 0x00]), None);
    for version in common::VERSIONS {
        let bytes = common::encode(&mqtt_codec::Connect::new(version, "c").into(), version);
        assert_eq!(mqtt_codec::peek_connect_version(&bytes), Some(version));
    }
}

#[test]
fn non_minimal_variable_byte_integers_are_malformed() {
    // PINGREQ with remaining length 0 written in two bytes.
    assert_reason(&[0xC0, 0x80, 0x00], V5, ReasonCode::MALFORMED_PACKET);
    // Subscription identifier 1 written as 0x81 0x00.
    assert_reason(
        &v5_publish_with_properties(&[0x0B, 0x81, 0x00]),
        V5,
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn a_bare_header_does_not_reserve_its_whole_declared_size() {
    // PUBLISH declaring 200 MB, with a limit that allows it: incomplete, and the buffer
    // must not have grown to 200 MB.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x60][..]);
    assert_eq!(decode(&mut buf, V5, NO_LIMIT), Ok(None));
    assert!(buf.capacity() < 1 << 20, "capacity {}", buf.capacity());
}

#[test]
fn dup_on_subscribe_is_tolerated_only_in_3_1() {
    let bytes = [0x8A, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00];
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(
        decode(&mut buf, ProtocolVersion::V3_1, NO_LIMIT)
            .unwrap()
            .is_some()
    );
    assert_reason(&bytes, V3, ReasonCode::MALFORMED_PACKET);
}

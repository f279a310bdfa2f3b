//! Bytes written by hand from the MQTT specifications, decoded and re-encoded.
//! Each expected byte string is annotated field by field.

mod common;

use bytes::Bytes;
use common::{decode_all, encode};
use mqtt_codec::{
    ConnAck, Connect, Disconnect, LastWill, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, TopicSubscription,
};

/// Decodes `bytes` into `packet` and encodes `packet` back into `bytes`.
fn assert_golden(version: ProtocolVersion, bytes: &[u8], packet: Packet) {
    assert_eq!(
        decode_all(bytes, version).unwrap(),
        packet,
        "decoding {bytes:02x?}"
    );
    assert_eq!(&encode(&packet, version)[..], bytes, "encoding {packet:?}");
}

#[test]
fn v3_1_1_connect_with_will_and_credentials() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x20,                         // CONNECT, remaining length 32
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04,                               // protocol level 4 = 3.1.1
        0xCE,                               // user name, password, will QoS 1, will, clean session
        0x00, 0x0A,                         // keep alive 10 s
        0x00, 0x03, b'a', b'b', b'c',       // client id
        0x00, 0x03, b'w', b'/', b't',       // will topic
        0x00, 0x03, b'b', b'y', b'e',       // will payload
        0x00, 0x01, b'u',                   // user name
        0x00, 0x02, b'p', b'w',             // password
    ];
    let packet = Connect {
        protocol_version: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive: 10,
        properties: Properties::default(),
        client_id: "abc".into(),
        will: Some(LastWill {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"pw")),
    };
    assert_golden(ProtocolVersion::V3_1_1, &bytes, packet.into());
}

#[test]
fn v3_1_connect_uses_mqisdp() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x0F,
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p',
        0x03,                               // protocol level 3 = 3.1
        0x02,                               // clean session
        0x00, 0x3C,                         // keep alive 60 s
        0x00, 0x01, b'x',
    ];
    let packet = Connect {
        keep_alive: 60,
        ..Connect::new(ProtocolVersion::V3_1, "x")
    };
    assert_golden(ProtocolVersion::V3_1, &bytes, packet.into());
}

#[test]
fn v5_publish_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x32, 0x1E,                         // PUBLISH QoS 1, remaining length 30
        0x00, 0x03, b'a', b'/', b'b',       // topic name
        0x00, 0x0A,                         // packet id 10
        0x14,                               // property length 20
        0x01, 0x01,                         // payload format indicator: UTF-8
        0x02, 0x00, 0x00, 0x00, 0x3C,       // message expiry 60 s
        0x0B, 0x80, 0x01,                   // subscription identifier 128 (2-byte varint)
        0x23, 0x00, 0x05,                   // topic alias 5
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        b'h', b'i',                         // payload
    ];
    let packet = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "a/b".into(),
        packet_id: 10,
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            subscription_identifiers: vec![128],
            topic_alias: Some(5),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        },
        payload: Bytes::from_static(b"hi"),
    };
    assert_golden(ProtocolVersion::V5, &bytes, packet.into());
}

#[test]
fn v3_1_1_subscribe_from_the_spec_example() {
    // MQTT 3.1.1 section 3.8.3, figure 3.22: packet id 10, "a/b" QoS 1, "c/d" QoS 2.
    #[rustfmt::skip]
    let bytes = [
        0x82, 0x0E,
        0x00, 0x0A,
        0x00, 0x03, b'a', b'/', b'b', 0x01,
        0x00, 0x03, b'c', b'/', b'd', 0x02,
    ];
    let sub = |filter: &str, qos| TopicSubscription {
        filter: filter.into(),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    };
    let packet = Subscribe {
        packet_id: 10,
        properties: Properties::default(),
        filters: vec![sub("a/b", QoS::AtLeastOnce), sub("c/d", QoS::ExactlyOnce)],
    };
    assert_golden(ProtocolVersion::V3_1_1, &bytes, packet.into());
}

#[test]
fn v3_1_1_suback_with_a_failure() {
    let bytes = [0x90, 0x04, 0x00, 0x0A, 0x01, 0x80];
    let packet = SubAck {
        packet_id: 10,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR],
    };
    assert_golden(ProtocolVersion::V3_1_1, &bytes, packet.into());
}

#[test]
fn v3_1_1_connack_return_codes_map_to_reason_codes() {
    // Return code 5 "not authorized" is reason code 0x87 for the broker.
    let bytes = [0x20, 0x02, 0x00, 0x05];
    let packet = ConnAck {
        session_present: false,
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::default(),
    };
    assert_golden(ProtocolVersion::V3_1_1, &bytes, packet.into());
}

#[test]
fn v5_connack_and_disconnect_in_short_forms() {
    assert_golden(
        ProtocolVersion::V5,
        &[0x20, 0x03, 0x01, 0x00, 0x00],
        ConnAck {
            session_present: true,
            ..ConnAck::default()
        }
        .into(),
    );
    assert_golden(
        ProtocolVersion::V5,
        &[0xE0, 0x00],
        Disconnect::default().into(),
    );
    assert_golden(
        ProtocolVersion::V5,
        &[0xE0, 0x01, 0x8E],
        Disconnect::new(ReasonCode::SESSION_TAKEN_OVER).into(),
    );
    assert_golden(ProtocolVersion::V5, &[0xC0, 0x00], Packet::PingReq);
    assert_golden(ProtocolVersion::V5, &[0xD0, 0x00], Packet::PingResp);
}

#[test]
fn v5_puback_long_forms_decode_to_the_same_ack() {
    // A success PUBACK may arrive with an explicit reason code and an empty property
    // list; it means the same as the two-byte form the encoder writes.
    for bytes in [
        &[0x40, 0x02, 0x00, 0x07][..],
        &[0x40, 0x03, 0x00, 0x07, 0x00],
        &[0x40, 0x04, 0x00, 0x07, 0x00, 0x00],
    ] {
        assert_eq!(
            decode_all(bytes, ProtocolVersion::V5).unwrap(),
            mqtt_codec::PubAck::new(7).into()
        );
    }
}

#[test]
fn remaining_length_321_is_two_bytes() {
    // MQTT 3.1.1 section 2.2.3: 321 = 0xC1 0x02.
    let topic = "t".repeat(321 - 2);
    let bytes = encode(&Publish::new(topic, "").into(), ProtocolVersion::V3_1_1);
    assert_eq!(&bytes[..3], &[0x30, 0xC1, 0x02]);
}

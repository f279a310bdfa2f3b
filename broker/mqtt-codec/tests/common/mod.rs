//! Sample packets shared by the integration tests: every packet type, and in MQTT 5
//! every property, in a form that survives a round trip in the given version.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, Properties, ProtocolVersion, PubAck,
    PubComp, PubRec, PubRel, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, TopicSubscription, UnsubAck, Unsubscribe,
};

pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

pub const NO_LIMIT: u32 = mqtt_codec::MAX_PACKET_SIZE;

fn user_properties() -> Vec<(String, String)> {
    vec![
        ("region".into(), "eu-west".into()),
        ("region".into(), "eu-north".into()),
        ("trace".into(), "".into()),
    ]
}

fn ack_properties() -> Properties {
    Properties {
        reason_string: Some("because".into()),
        user_properties: user_properties(),
        ..Properties::default()
    }
}

/// One or more of every packet type that exists in `version`.
pub fn sample_packets(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let props = |p: Properties| if v5 { p } else { Properties::default() };
    let code = |rc: ReasonCode| if v5 { rc } else { ReasonCode::SUCCESS };

    let connect = Connect {
        protocol_version: version,
        clean_start: false,
        keep_alive: 30,
        properties: props(Properties {
            session_expiry_interval: Some(3600),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
            request_problem_information: Some(false),
            request_response_information: Some(true),
            receive_maximum: Some(20),
            topic_alias_maximum: Some(10),
            user_properties: user_properties(),
            maximum_packet_size: Some(1 << 20),
            ..Properties::default()
        }),
        client_id: "device-42".into(),
        will: Some(LastWill {
            topic: "devices/42/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: props(Properties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(120),
                content_type: Some("text/plain".into()),
                response_topic: Some("devices/42/reply".into()),
                correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xFF])),
                will_delay_interval: Some(5),
                user_properties: user_properties(),
                ..Properties::default()
            }),
        }),
        username: Some("alice".into()),
        password: Some(Bytes::from_static(b"s3cret\0bytes")),
    };
    let minimal_connect = Connect::new(version, "c");

    let connack = ConnAck {
        session_present: version != ProtocolVersion::V3_1,
        reason_code: ReasonCode::SUCCESS,
        properties: props(Properties {
            session_expiry_interval: Some(60),
            assigned_client_identifier: Some("auto-7f3a".into()),
            server_keep_alive: Some(45),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"server-final")),
            response_information: Some("responses/".into()),
            server_reference: Some("broker-2:1883".into()),
            reason_string: Some("welcome".into()),
            receive_maximum: Some(100),
            topic_alias_maximum: Some(16),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(true),
            user_properties: user_properties(),
            maximum_packet_size: Some(65536),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
            ..Properties::default()
        }),
    };
    let refused = ConnAck {
        session_present: false,
        reason_code: ReasonCode::NOT_AUTHORIZED,
        properties: Properties::default(),
    };

    let publish = Publish {
        dup: true,
        qos: QoS::ExactlyOnce,
        retain: true,
        topic: "sensors/room-1/temp".into(),
        packet_id: 65535,
        properties: props(Properties {
            payload_format_indicator: Some(0),
            message_expiry_interval: Some(30),
            content_type: Some("application/json".into()),
            response_topic: Some("sensors/reply".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            subscription_identifiers: vec![1, 268_435_455, 300],
            topic_alias: Some(3),
            user_properties: user_properties(),
            ..Properties::default()
        }),
        payload: Bytes::from(vec![0xAB; 300]),
    };
    let qos0 = Publish::new("a/b", Bytes::new());
    let qos1 = Publish {
        qos: QoS::AtLeastOnce,
        packet_id: 1,
        ..Publish::new("a", "x")
    };

    let mut packets = vec![
        connect.into(),
        minimal_connect.into(),
        Packet::ConnAck(connack),
        Packet::ConnAck(refused),
        Packet::Publish(publish),
        Packet::Publish(qos0),
        Packet::Publish(qos1),
        Packet::PubAck(PubAck::new(7)),
        Packet::PubAck(PubAck {
            packet_id: 8,
            reason_code: code(ReasonCode::NO_MATCHING_SUBSCRIBERS),
            properties: Properties::default(),
        }),
        Packet::PubAck(PubAck {
            packet_id: 9,
            reason_code: code(ReasonCode::NOT_AUTHORIZED),
            properties: props(ack_properties()),
        }),
        Packet::PubRec(PubRec {
            packet_id: 10,
            reason_code: code(ReasonCode::QUOTA_EXCEEDED),
            properties: props(ack_properties()),
        }),
        Packet::PubRel(PubRel {
            packet_id: 11,
            reason_code: code(ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
            properties: props(ack_properties()),
        }),
        Packet::PubRel(PubRel::new(12)),
        Packet::PubComp(PubComp {
            packet_id: 13,
            reason_code: ReasonCode::SUCCESS,
            properties: props(ack_properties()),
        }),
        Packet::Subscribe(Subscribe {
            packet_id: 14,
            properties: props(Properties {
                subscription_identifiers: vec![99],
                user_properties: user_properties(),
                ..Properties::default()
            }),
            filters: vec![
                TopicSubscription {
                    filter: "sensors/+/temp".into(),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: if v5 {
                            RetainHandling::DoNotSend
                        } else {
                            RetainHandling::SendAtSubscribe
                        },
                    },
                },
                TopicSubscription {
                    filter: "$share/group-1/alerts/#".into(),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        retain_handling: if v5 {
                            RetainHandling::SendAtNewSubscribe
                        } else {
                            RetainHandling::SendAtSubscribe
                        },
                        ..SubscriptionOptions::default()
                    },
                },
                TopicSubscription {
                    filter: "#".into(),
                    options: SubscriptionOptions::default(),
                },
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: 14,
            properties: props(ack_properties()),
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::UNSPECIFIED_ERROR,
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 15,
            properties: props(Properties {
                user_properties: user_properties(),
                ..Properties::default()
            }),
            filters: vec!["sensors/+/temp".into(), "$share/g/a".into()],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 15,
            properties: props(ack_properties()),
            reason_codes: if v5 {
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            } else {
                vec![]
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if v5 {
        packets.extend([
            Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)),
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::USE_ANOTHER_SERVER,
                properties: Properties {
                    session_expiry_interval: Some(0),
                    server_reference: Some("broker-3".into()),
                    reason_string: Some("draining".into()),
                    user_properties: user_properties(),
                    ..Properties::default()
                },
            }),
            Packet::Auth(Auth::default()),
            Packet::Auth(Auth {
                reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
                properties: Properties {
                    authentication_method: Some("SCRAM-SHA-256".into()),
                    authentication_data: Some(Bytes::from_static(b"server-first")),
                    reason_string: Some("continue".into()),
                    user_properties: user_properties(),
                    ..Properties::default()
                },
            }),
            Packet::Publish(Publish {
                topic: String::new(),
                properties: Properties {
                    topic_alias: Some(3),
                    ..Properties::default()
                },
                ..Publish::new("", "aliased")
            }),
        ]);
    }
    packets
}

pub fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .unwrap_or_else(|e| panic!("encoding {packet:?} in {version}: {e}"));
    buf
}

/// Decodes `bytes` as one whole packet, requiring that it consumes everything.
pub fn decode_all(
    bytes: &[u8],
    version: ProtocolVersion,
) -> Result<Packet, mqtt_codec::DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = mqtt_codec::decode(&mut buf, version, NO_LIMIT)?
        .unwrap_or_else(|| panic!("{bytes:02x?} decoded as incomplete"));
    assert!(buf.is_empty(), "{} bytes left after one packet", buf.len());
    Ok(packet)
}

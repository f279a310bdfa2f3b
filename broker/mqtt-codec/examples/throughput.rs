//! Rough encode/decode throughput of PUBLISH and PUBACK, without a benchmark framework
//! (criterion is not among the workspace's pinned dependencies yet).
//!
//! ```text
//! cargo run --release -p mqtt-codec --example throughput
//! ```

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mqtt_codec::{Packet, Properties, ProtocolVersion, PubAck, Publish, QoS, decode};

const ROUNDS: usize = 1_000_000;

fn run(name: &str, packet: &Packet, version: ProtocolVersion) {
    let len = packet.encoded_len(version);
    let mut buf = BytesMut::with_capacity(len * 1024);

    let start = Instant::now();
    for _ in 0..ROUNDS {
        packet.encode(version, &mut buf).expect("encodes");
        if buf.len() > len * 1000 {
            buf.clear();
        }
    }
    let encode = start.elapsed();

    let mut wire = BytesMut::new();
    packet.encode(version, &mut wire).expect("encodes");
    let wire = wire.freeze();
    let start = Instant::now();
    let mut read_buf = BytesMut::with_capacity(len * 1024);
    for _ in 0..ROUNDS {
        read_buf.extend_from_slice(&wire);
        black_box(decode(&mut read_buf, version, u32::MAX).expect("decodes"));
    }
    let decode = start.elapsed();

    let per = |d: std::time::Duration| d.as_nanos() as f64 / ROUNDS as f64;
    println!(
        "{name:<28} {len:>5} B   encode {:>7.1} ns  decode {:>7.1} ns  ({:.0} MB/s decoded)",
        per(encode),
        per(decode),
        (len * ROUNDS) as f64 / decode.as_secs_f64() / 1e6,
    );
}

fn main() {
    let v5 = ProtocolVersion::V5;
    for size in [64, 1024] {
        let publish = Publish {
            qos: QoS::AtLeastOnce,
            packet_id: 42,
            properties: Properties {
                message_expiry_interval: Some(60),
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            },
            ..Publish::new("sensors/room-1/temperature", Bytes::from(vec![0x5A; size]))
        };
        run(&format!("v5 PUBLISH QoS1 {size} B"), &publish.into(), v5);
        let plain = Publish::new("sensors/room-1/temperature", Bytes::from(vec![0x5A; size]));
        run(
            &format!("3.1.1 PUBLISH QoS0 {size} B"),
            &plain.into(),
            ProtocolVersion::V3_1_1,
        );
    }
    run("v5 PUBACK", &PubAck::new(42).into(), v5);
}

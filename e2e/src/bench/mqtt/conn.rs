//! The few MQTT 3.1.1 client steps the load generator needs, on `mqtt-codec`: connect,
//! subscribe, read packets, and a pre-encoded PUBLISH that is patched per message.
//!
//! 3.1.1 because every peer speaks it (rumqttd's v5 listener is the less complete one).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use mqtt_codec::{
    Connect, Packet, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
    TopicSubscription,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Larger than any packet a peer sends us (1 KiB payloads plus headers).
const MAX_PACKET: u32 = 1 << 20;
/// Seconds. Long enough for any scenario without PINGREQs (rumqttd refuses 0).
const KEEP_ALIVE: u16 = 600;

/// One client connection and its read buffer.
pub struct Conn {
    pub stream: TcpStream,
    pub buf: BytesMut,
}

impl Conn {
    /// TCP connect, CONNECT with clean session, wait for a successful CONNACK.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Conn> {
        tokio::time::timeout(timeout, async {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            let mut conn = Conn {
                stream,
                buf: BytesMut::with_capacity(64 * 1024),
            };
            let mut c = Connect::new(VERSION, client_id);
            c.keep_alive = KEEP_ALIVE;
            conn.send(&Packet::from(c)).await?;
            match conn.next_packet().await? {
                Packet::ConnAck(a) if !a.reason_code.is_error() => Ok(conn),
                Packet::ConnAck(a) => bail!("{client_id}: CONNACK {:?}", a.reason_code),
                p => bail!("{client_id}: expected CONNACK, got {:?}", p.packet_type()),
            }
        })
        .await
        .with_context(|| format!("{client_id}: no CONNACK within {timeout:?}"))?
    }

    pub async fn send(&mut self, p: &Packet) -> Result<()> {
        let mut out = BytesMut::new();
        p.encode(VERSION, &mut out)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads until one whole packet is buffered and returns it.
    pub async fn next_packet(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = mqtt_codec::decode(&mut self.buf, VERSION, MAX_PACKET)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    /// SUBSCRIBE to one filter and wait for a SUBACK that grants it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![TopicSubscription {
                filter: filter.to_string(),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            ..Default::default()
        };
        self.send(&Packet::from(sub)).await?;
        match self.next_packet().await? {
            Packet::SubAck(a) if a.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
            Packet::SubAck(a) => bail!("SUBACK for {filter}: {:?}", a.reason_codes),
            p => bail!("expected SUBACK, got {:?}", p.packet_type()),
        }
    }
}

/// A PUBLISH encoded once; each message copies it and patches the packet id and the
/// payload header in place, which keeps the generator's cost per message to a memcpy.
pub struct PublishTemplate {
    bytes: Vec<u8>,
    payload_at: usize,
    packet_id_at: Option<usize>,
}

impl PublishTemplate {
    pub fn new(topic: &str, qos: QoS, payload: Vec<u8>) -> Result<PublishTemplate> {
        let payload_len = payload.len();
        let mut p = Publish::new(topic, payload);
        p.qos = qos;
        if qos != QoS::AtMostOnce {
            p.packet_id = 1;
        }
        let mut out = BytesMut::new();
        Packet::from(p).encode(VERSION, &mut out)?;
        let payload_at = out.len() - payload_len;
        Ok(PublishTemplate {
            bytes: out.to_vec(),
            payload_at,
            // In 3.1.1 the packet id sits right before the payload (no properties).
            packet_id_at: (qos != QoS::AtMostOnce).then(|| payload_at - 2),
        })
    }

    /// Appends one message to `out`; `patch` fills the payload (in place).
    pub fn append(&self, out: &mut BytesMut, packet_id: u16, patch: impl FnOnce(&mut [u8])) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let msg = &mut out[start..];
        if let Some(at) = self.packet_id_at {
            msg[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
        patch(&mut msg[self.payload_at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::mqtt::payload::{Header, new_payload, read_header, write_header};

    #[test]
    fn patched_template_decodes_as_the_intended_publish() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let h = Header {
                run: 1,
                publisher: 5,
                seq: 0,
                sent_ns: 0,
            };
            let t = PublishTemplate::new("bench/1/p/5", qos, new_payload(64, h)).expect("encode");
            let mut out = BytesMut::new();
            for seq in 0..3u64 {
                t.append(&mut out, seq as u16 + 10, |p| {
                    write_header(
                        p,
                        Header {
                            seq,
                            sent_ns: 1000 + seq,
                            ..h
                        },
                    )
                });
            }
            for seq in 0..3u64 {
                let Some(Packet::Publish(p)) =
                    mqtt_codec::decode(&mut out, VERSION, MAX_PACKET).expect("valid")
                else {
                    panic!("expected a PUBLISH");
                };
                assert_eq!(p.topic, "bench/1/p/5");
                assert_eq!(p.qos, qos);
                let want_pid = if qos == QoS::AtMostOnce {
                    0
                } else {
                    seq as u16 + 10
                };
                assert_eq!(p.packet_id, want_pid);
                assert_eq!(p.payload.len(), 64);
                let got = read_header(&p.payload).expect("our header");
                assert_eq!((got.seq, got.sent_ns, got.publisher), (seq, 1000 + seq, 5));
            }
            assert!(out.is_empty());
        }
    }
}

//! Random and mutated input never panics; whatever decodes re-encodes to the same packet.
//! Bounded in iterations and seeded so a failure reproduces.

mod common;

use bytes::BytesMut;
use common::{VERSIONS, encode, sample_packets};
use mqtt_codec::{Packet, ProtocolVersion, decode};

/// xorshift64*: a few lines instead of a dependency; quality is plenty for fuzzing.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Decodes packets from `bytes` until incomplete or an error, checking that every
/// decoded packet survives encode → decode unchanged.
fn decode_stream(bytes: &[u8], version: ProtocolVersion, max: u32) {
    let mut buf = BytesMut::from(bytes);
    while let Ok(Some(packet)) = decode(&mut buf, version, max) {
        check_reencodes(&packet, version);
    }
}

fn check_reencodes(packet: &Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    packet
        .encode(version, &mut out)
        .unwrap_or_else(|e| panic!("decoded {packet:?} does not re-encode: {e}"));
    assert_eq!(out.len(), packet.encoded_len(version));
    let again = decode(&mut out, version, mqtt_codec::MAX_PACKET_SIZE)
        .unwrap_or_else(|e| panic!("re-encoded {packet:?} does not decode: {e}"))
        .expect("re-encoded packet is complete");
    assert_eq!(&again, packet);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..200_000 {
        let len = rng.below(48);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Keep the remaining length plausible half the time so bodies get parsed.
        if len >= 2 && i % 2 == 0 {
            bytes[1] = (len - 2) as u8 & 0x7F;
        }
        let version = VERSIONS[rng.below(3)];
        decode_stream(&bytes, version, 1 + rng.below(64) as u32);
        decode_stream(&bytes, version, mqtt_codec::MAX_PACKET_SIZE);
    }
}

#[test]
fn mutated_valid_packets_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for version in VERSIONS {
        for packet in sample_packets(version) {
            let original = encode(&packet, version).to_vec();
            for _ in 0..2_000 {
                let mut bytes = original.clone();
                for _ in 0..1 + rng.below(4) {
                    let pos = rng.below(bytes.len());
                    match rng.below(4) {
                        0 => bytes[pos] = rng.byte(),
                        1 => bytes[pos] ^= 1 << rng.below(8),
                        2 => {
                            bytes.remove(pos);
                            if bytes.is_empty() {
                                break;
                            }
                        }
                        _ => bytes.insert(pos, rng.byte()),
                    }
                }
                decode_stream(&bytes, version, mqtt_codec::MAX_PACKET_SIZE);
            }
        }
    }
}

//! The benchmark's message payload: who sent it, its sequence number and when, so the
//! subscriber can measure end-to-end latency and count loss and duplicates.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "RMQB"
//! 4       4     run id, u32 big-endian (a scenario's own number: stale messages of an
//!               earlier scenario are ignored)
//! 8       4     publisher id, u32 big-endian
//! 12      8     sequence number, u64 big-endian, from 0 per publisher
//! 20      8     send time, ns since the Unix epoch, u64 big-endian
//! 28      ...   filler up to the payload size
//! ```
//!
//! Wall-clock time (not a process-local `Instant`) so that publishers and subscribers may
//! live in different processes on the same machine.

use std::time::{SystemTime, UNIX_EPOCH};

pub const MAGIC: [u8; 4] = *b"RMQB";
/// The smallest payload that holds the header.
pub const HEADER_LEN: usize = 28;
const FILLER: u8 = b'.';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run: u32,
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

/// Now, in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A payload of `size` bytes (at least [`HEADER_LEN`]) with `h` in front.
pub fn new_payload(size: usize, h: Header) -> Vec<u8> {
    let mut p = vec![FILLER; size.max(HEADER_LEN)];
    p[..4].copy_from_slice(&MAGIC);
    write_header(&mut p, h);
    p
}

/// Overwrites the header of a payload made by [`new_payload`], in place: the publisher
/// patches one pre-encoded packet per message instead of encoding a new one.
pub fn write_header(p: &mut [u8], h: Header) {
    p[4..8].copy_from_slice(&h.run.to_be_bytes());
    p[8..12].copy_from_slice(&h.publisher.to_be_bytes());
    p[12..20].copy_from_slice(&h.seq.to_be_bytes());
    p[20..28].copy_from_slice(&h.sent_ns.to_be_bytes());
}

/// The header of a received payload; `None` if it is not one of ours.
pub fn read_header(p: &[u8]) -> Option<Header> {
    if p.len() < HEADER_LEN || p[..4] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes(p[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_be_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    Some(Header {
        run: u32_at(4),
        publisher: u32_at(8),
        seq: u64_at(12),
        sent_ns: u64_at(20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_at_every_size_and_patching_keeps_the_filler() {
        for size in [HEADER_LEN, 64, 1024] {
            let h = Header {
                run: 7,
                publisher: 999,
                seq: u64::MAX - 1,
                sent_ns: now_ns(),
            };
            let mut p = new_payload(size, h);
            assert_eq!(p.len(), size);
            assert_eq!(read_header(&p), Some(h));
            let h2 = Header {
                seq: 3,
                sent_ns: 42,
                ..h
            };
            write_header(&mut p, h2);
            assert_eq!(read_header(&p), Some(h2));
            assert!(p[HEADER_LEN..].iter().all(|&b| b == FILLER));
        }
        assert_eq!(
            new_payload(
                10,
                Header {
                    run: 1,
                    publisher: 0,
                    seq: 0,
                    sent_ns: 0
                }
            )
            .len(),
            HEADER_LEN
        );
    }

    #[test]
    fn foreign_or_short_payloads_are_not_read() {
        assert_eq!(read_header(b"hello"), None);
        let mut p = new_payload(
            64,
            Header {
                run: 1,
                publisher: 2,
                seq: 3,
                sent_ns: 4,
            },
        );
        p[0] = b'X';
        assert_eq!(read_header(&p), None);
        assert_eq!(read_header(&p[..HEADER_LEN - 1]), None);
    }
}

//! The unit of storage: a Kafka RecordBatch v2, validated on append and stored as received.
//!
//! Only the fixed 61-byte header is parsed, by hand: the journal never needs the records
//! inside, must not re-encode them (Fetch serves stored bytes), and reads every header on
//! the hot path, so a typed decode (as `kafka-protocol`'s `RecordBatchDecoder` does,
//! decompressing and allocating each record) would cost for nothing. The tests encode real
//! batches with `kafka-protocol`'s `RecordBatchEncoder`.
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            <- assigned by the journal; not covered by the CRC
//!      8     4  batchLength           bytes that follow this field (total = 12 + batchLength)
//!     12     4  partitionLeaderEpoch
//!     16     1  magic                 must be 2
//!     17     4  crc                   CRC-32C (Castagnoli) of bytes 21..end
//!     21     2  attributes
//!     23     4  lastOffsetDelta       the batch covers baseOffset ..= baseOffset + delta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61     …  records
//! ```

use crate::error::BatchError;

/// Size of the fixed RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes needed to learn a batch's base offset and total length.
pub const LOG_OVERHEAD: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORDS_COUNT_AT: usize = 57;

/// The header fields the journal uses, read from a batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total size of the batch in bytes (12 + batchLength).
    pub total_len: usize,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    pub records_count: i32,
}

impl BatchHeader {
    /// Number of offsets the batch occupies.
    pub fn offset_count(&self) -> u64 {
        self.last_offset_delta as u64 + 1
    }

    /// The last offset inside the batch, given the base offset it was stored with.
    pub fn last_offset(&self) -> u64 {
        self.base_offset as u64 + self.last_offset_delta as u64
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

/// Reads the first 12 bytes: `(baseOffset, total length)`. `None` if fewer than 12 bytes
/// or the declared length is negative.
pub fn peek_offset_and_len(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(b, 8);
    if len < 0 {
        return None;
    }
    Some((be_i64(b, 0), LOG_OVERHEAD + len as usize))
}

/// Parses the fixed header without checking the CRC. `b` must hold at least the header;
/// the declared length is checked against `b.len()` only if `exact` is set.
pub fn parse_header(b: &[u8], exact: bool) -> Result<BatchHeader, BatchError> {
    if b.len() < HEADER_LEN {
        return Err(BatchError::TooShort { len: b.len() });
    }
    let declared = be_i32(b, 8) as i64;
    if declared < (HEADER_LEN - LOG_OVERHEAD) as i64
        || (exact && declared as usize + LOG_OVERHEAD != b.len())
    {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: b.len() - LOG_OVERHEAD,
        });
    }
    let magic = b[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic { magic });
    }
    let last_offset_delta = be_i32(b, LAST_OFFSET_DELTA_AT);
    let records_count = be_i32(b, RECORDS_COUNT_AT);
    if last_offset_delta < 0 || records_count < 0 {
        return Err(BatchError::BadOffsetDelta {
            delta: last_offset_delta,
            count: records_count,
        });
    }
    Ok(BatchHeader {
        base_offset: be_i64(b, 0),
        total_len: declared as usize + LOG_OVERHEAD,
        last_offset_delta,
        max_timestamp: be_i64(b, MAX_TIMESTAMP_AT),
        records_count,
    })
}

/// Checks the CRC-32C of a complete batch (`b` is exactly one batch).
pub fn check_crc(b: &[u8]) -> Result<(), BatchError> {
    let expected = u32::from_be_bytes([b[CRC_AT], b[CRC_AT + 1], b[CRC_AT + 2], b[CRC_AT + 3]]);
    let actual = crc32c::crc32c(&b[CRC_FROM..]);
    if expected != actual {
        return Err(BatchError::BadCrc { expected, actual });
    }
    Ok(())
}

/// Full validation of one complete batch: header, exact length, magic and CRC.
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = parse_header(b, true)?;
    check_crc(b)?;
    Ok(h)
}

/// Rewrites the baseOffset field in place. The CRC does not cover it, so the batch stays
/// valid.
pub fn set_base_offset(b: &mut [u8], offset: u64) {
    b[0..8].copy_from_slice(&(offset as i64).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid v2 batch with one empty-ish record area, built by hand so the
    /// module tests do not depend on the encoder.
    fn batch(records: &[u8], delta: i32, max_ts: i64) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b.extend_from_slice(records);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&delta.to_be_bytes());
        b[35..43].copy_from_slice(&max_ts.to_be_bytes());
        b[57..61].copy_from_slice(&(delta + 1).to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn valid_batch_parses_and_survives_base_offset_rewrite() {
        let mut b = batch(b"hello", 4, 1234);
        let h = validate(&b).expect("valid");
        assert_eq!(h.offset_count(), 5);
        assert_eq!(h.max_timestamp, 1234);
        set_base_offset(&mut b, 77);
        let h = validate(&b).expect("still valid after rewrite");
        assert_eq!(h.base_offset, 77);
        assert_eq!(h.last_offset(), 81);
    }

    #[test]
    fn flipped_record_byte_fails_crc() {
        let mut b = batch(b"hello", 0, 0);
        b[HEADER_LEN + 1] ^= 0x40;
        assert!(matches!(validate(&b), Err(BatchError::BadCrc { .. })));
    }

    #[test]
    fn wrong_magic_and_lengths_are_rejected() {
        let mut b = batch(b"x", 0, 0);
        b[16] = 1;
        assert_eq!(validate(&b), Err(BatchError::BadMagic { magic: 1 }));
        let b = batch(b"xyz", 0, 0);
        assert!(matches!(
            validate(&b[..b.len() - 1]),
            Err(BatchError::LengthMismatch { .. })
        ));
        assert_eq!(validate(&b[..10]), Err(BatchError::TooShort { len: 10 }));
        let mut neg = batch(b"x", 0, 0);
        neg[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(validate(&neg).is_err());
    }

    #[test]
    fn every_truncated_prefix_is_an_error_not_a_panic() {
        let b = batch(b"some record bytes", 2, 5);
        for n in 0..b.len() {
            assert!(validate(&b[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }
}

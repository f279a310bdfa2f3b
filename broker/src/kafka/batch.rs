//! The few RecordBatch v2 header fields the Kafka server reads from a produced batch
//! without decoding its records: where a batch ends, its magic, producer id/epoch/sequence
//! and record count. Layout (big-endian): baseOffset i64 · batchLength i32 ·
//! partitionLeaderEpoch i32 · magic i8 · crc u32 · attributes i16 · lastOffsetDelta i32 ·
//! baseTimestamp i64 · maxTimestamp i64 · producerId i64 · producerEpoch i16 ·
//! baseSequence i32 · recordsCount i32 (61 bytes), then the records.

use bytes::{Buf, Bytes};

pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength themselves.
const LOG_OVERHEAD: usize = 12;

/// What the server needs from a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: i8,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl Header {
    /// The sequence of the batch's last record (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        let n = self.records_count.max(1) as i64;
        ((self.base_sequence as i64 + n - 1) % (i32::MAX as i64 + 1)) as i32
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("record set ends inside a batch header ({0} bytes left)")]
    Truncated(usize),
    #[error("batch length {0} is out of range")]
    BadLength(i32),
    #[error("record batch magic {0} is not supported (only v2)")]
    Magic(i8),
}

fn header(b: &[u8]) -> Header {
    Header {
        magic: b[16] as i8,
        attributes: (&b[21..23]).get_i16(),
        last_offset_delta: (&b[23..27]).get_i32(),
        producer_id: (&b[43..51]).get_i64(),
        producer_epoch: (&b[51..53]).get_i16(),
        base_sequence: (&b[53..57]).get_i32(),
        records_count: (&b[57..61]).get_i32(),
    }
}

/// Splits a produced record set into its batches (zero-copy) with their headers. CRCs
/// are checked where the batches are stored.
pub fn split(records: &Bytes) -> Result<Vec<(Bytes, Header)>, SplitError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        if rest.len() < HEADER_LEN {
            return Err(SplitError::Truncated(rest.len()));
        }
        let len = (&rest[8..12]).get_i32();
        if len < (HEADER_LEN - LOG_OVERHEAD) as i32 || LOG_OVERHEAD + len as usize > rest.len() {
            return Err(SplitError::BadLength(len));
        }
        let h = header(rest);
        if h.magic != 2 {
            return Err(SplitError::Magic(h.magic));
        }
        let total = LOG_OVERHEAD + len as usize;
        out.push((records.slice(at..at + total), h));
        at += total;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub(crate) fn batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: seq + i as i32,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(vec![b'x'; 10])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn splits_batches_and_reads_producer_fields() {
        let mut all = BytesMut::new();
        all.extend_from_slice(&batch(7, 1, 10, 3));
        all.extend_from_slice(&batch(-1, -1, -1, 2));
        let parts = split(&all.freeze()).unwrap();
        assert_eq!(parts.len(), 2);
        let h = parts[0].1;
        assert_eq!((h.producer_id, h.producer_epoch), (7, 1));
        assert_eq!(
            (h.base_sequence, h.last_sequence(), h.records_count),
            (10, 12, 3)
        );
        assert_eq!(parts[1].1.producer_id, -1);
    }

    #[test]
    fn refuses_truncated_and_old_magic() {
        let b = batch(1, 0, 0, 1);
        assert!(matches!(
            split(&b.slice(..b.len() - 1)),
            Err(SplitError::BadLength(_))
        ));
        assert!(matches!(
            split(&b.slice(..20)),
            Err(SplitError::Truncated(20))
        ));
        let mut old = b.to_vec();
        old[16] = 1;
        assert_eq!(split(&old.into()), Err(SplitError::Magic(1)));
        let wrap = Header {
            magic: 2,
            attributes: 0,
            last_offset_delta: 1,
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX,
            records_count: 2,
        };
        assert_eq!(wrap.last_sequence(), 0);
    }
}

//! Helpers shared by the journal's integration tests: real RecordBatch v2 batches encoded
//! with `kafka-protocol`, and a splitter for concatenated batches.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A batch of `records` records, each with a `value_len`-byte value derived from `seed`
/// (so that every batch of a test is distinguishable), all stamped `ts`.
pub fn kafka_batch(records: usize, value_len: usize, ts: i64, seed: u64) -> Bytes {
    let recs: Vec<Record> = (0..records)
        .map(|i| {
            let mut value = Vec::with_capacity(value_len);
            let mut x = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i as u64 + 1);
            while value.len() < value_len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                value.push(x as u8);
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch unless offset - sequence stays constant.
                sequence: i as i32,
                timestamp: ts,
                key: Some(Bytes::from(format!("key-{seed}-{i}"))),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &recs,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encoding a test batch");
    buf.freeze()
}

/// The bytes the journal must serve for `batch` stored at `offset`: identical except for
/// the 8-byte baseOffset field.
pub fn at_offset(batch: &Bytes, offset: u64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[0..8].copy_from_slice(&(offset as i64).to_be_bytes());
    b.freeze()
}

/// Splits concatenated batches by their length fields.
pub fn split_batches(mut b: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    while b.len() >= 12 {
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize + 12;
        assert!(
            len <= b.len(),
            "a served batch is cut short: {len} > {}",
            b.len()
        );
        out.push(Bytes::copy_from_slice(&b[..len]));
        b = &b[len..];
    }
    assert!(b.is_empty(), "{} stray bytes after the last batch", b.len());
    out
}

/// Decodes a served batch with `kafka-protocol` and returns its record offsets and values.
pub fn decode(batch: &Bytes) -> Vec<(i64, Option<Bytes>)> {
    let mut b = batch.clone();
    let set = RecordBatchDecoder::decode(&mut b).expect("served batch decodes");
    set.records
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

//! How an MQTT PUBLISH is stored: one record of a Kafka RecordBatch v2, so that Kafka
//! consumers of the same topic read it and MQTT subscribers read what Kafka producers
//! wrote. Key = MQTT topic name, value = payload, headers = the MQTT 5 properties.
//!
//! ```text
//! header key        value
//! mqtt.qos          1 byte, the publish QoS
//! mqtt.retain       1 byte, 1 when the PUBLISH had RETAIN set
//! mqtt.from         publishing client id (for the No Local subscription option)
//! mqtt.pfi          1 byte, payload format indicator
//! mqtt.expiry_at    8 bytes BE, absolute expiry in ms since the epoch
//! mqtt.ct           content type        mqtt.rt  response topic
//! mqtt.cd           correlation data
//! anything else     an MQTT 5 user property (name = header key)
//! ```
//!
//! Records written by Kafka producers have none of the `mqtt.*` headers: they are
//! delivered at QoS 0 .. the subscription's QoS as if published at QoS 1.
//!
//! Batches are uncompressed, with producer id -1 (no idempotence): MQTT has no producer
//! sequence. Compressed batches (from Kafka producers) are decompressed when decoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{BrokerError, Result};

/// One stored MQTT message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MqttRecord {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    /// The PUBLISH had the RETAIN flag (for Retain As Published).
    pub retain: bool,
    pub from_client: String,
    pub payload_format: Option<u8>,
    /// Absolute expiry, ms since the epoch.
    pub expires_at_ms: Option<u64>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub timestamp_ms: i64,
}

/// A record read back from a shard, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    pub record: MqttRecord,
}

const HEADER_LEN: usize = 61;
const ATTR_COMPRESSION_MASK: i16 = 0x07;

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            buf.put_u8(z as u8);
            return;
        }
        buf.put_u8((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    put_varint(buf, b.len() as i64);
    buf.put_slice(b);
}

/// Bytes [`put_varint`] writes for `v`.
fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes [`put_bytes`] writes for a field of `len` bytes.
fn bytes_len(len: usize) -> usize {
    varint_len(len as i64) + len
}

impl MqttRecord {
    /// Calls `f` with each header the record is stored with (no allocation: encoding runs
    /// once per message).
    fn for_each_header(&self, mut f: impl FnMut(&str, &[u8])) {
        f("mqtt.qos", &[self.qos]);
        if self.retain {
            f("mqtt.retain", &[1]);
        }
        if !self.from_client.is_empty() {
            f("mqtt.from", self.from_client.as_bytes());
        }
        if let Some(p) = self.payload_format {
            f("mqtt.pfi", &[p]);
        }
        if let Some(e) = self.expires_at_ms {
            f("mqtt.expiry_at", &e.to_be_bytes());
        }
        if let Some(c) = &self.content_type {
            f("mqtt.ct", c.as_bytes());
        }
        if let Some(r) = &self.response_topic {
            f("mqtt.rt", r.as_bytes());
        }
        if let Some(c) = &self.correlation_data {
            f("mqtt.cd", c);
        }
        for (k, v) in &self.user_properties {
            f(k, v.as_bytes());
        }
    }

    /// The length of this record's encoding at `ts_delta` and `offset_delta` (without
    /// its length prefix), and its number of headers.
    fn encoded_len(&self, ts_delta: i64, offset_delta: i64) -> (usize, i64) {
        let mut headers = 0i64;
        let mut len = 1 // attributes
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + bytes_len(self.topic.len())
            + bytes_len(self.payload.len());
        self.for_each_header(|k, v| {
            headers += 1;
            len += bytes_len(k.len()) + bytes_len(v.len());
        });
        (len + varint_len(headers), headers)
    }

    fn apply_header(&mut self, key: &str, value: &[u8]) {
        let text = || String::from_utf8_lossy(value).into_owned();
        match key {
            "mqtt.qos" => self.qos = value.first().copied().unwrap_or(0).min(2),
            "mqtt.retain" => self.retain = value.first() == Some(&1),
            "mqtt.from" => self.from_client = text(),
            "mqtt.pfi" => self.payload_format = value.first().copied(),
            "mqtt.expiry_at" if value.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(value);
                self.expires_at_ms = Some(u64::from_be_bytes(a));
            }
            "mqtt.ct" => self.content_type = Some(text()),
            "mqtt.rt" => self.response_topic = Some(text()),
            "mqtt.cd" => self.correlation_data = Some(Bytes::copy_from_slice(value)),
            _ => self.user_properties.push((key.to_string(), text())),
        }
    }
}

/// Encodes records as one RecordBatch v2 (base offset 0: the journal assigns it).
///
/// Each record's length is worked out before it is written (a record's length prefix
/// comes first), so records go straight into the batch, which is allocated once at its
/// exact size.
pub fn encode_batch(records: &[MqttRecord]) -> Bytes {
    let base_ts = records.first().map(|r| r.timestamp_ms).unwrap_or(0);
    let max_ts = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(base_ts);
    let sized = |i: usize, r: &MqttRecord| r.encoded_len(r.timestamp_ms - base_ts, i as i64);
    let body: usize = records
        .iter()
        .enumerate()
        .map(|(i, r)| sized(i, r).0)
        .map(|len| varint_len(len as i64) + len)
        .sum();
    let mut out = BytesMut::with_capacity(HEADER_LEN + body);
    out.put_i64(0); // baseOffset
    out.put_i32(0); // batchLength, filled below
    out.put_i32(-1); // partitionLeaderEpoch
    out.put_i8(2); // magic
    out.put_u32(0); // crc, filled below
    out.put_i16(0); // attributes: no compression, CreateTime
    out.put_i32(records.len().saturating_sub(1) as i32); // lastOffsetDelta
    out.put_i64(base_ts);
    out.put_i64(max_ts);
    out.put_i64(-1); // producerId
    out.put_i16(-1); // producerEpoch
    out.put_i32(-1); // baseSequence
    out.put_i32(records.len() as i32);
    for (i, r) in records.iter().enumerate() {
        let (len, headers) = sized(i, r);
        put_varint(&mut out, len as i64);
        out.put_i8(0); // attributes
        put_varint(&mut out, r.timestamp_ms - base_ts);
        put_varint(&mut out, i as i64);
        put_bytes(&mut out, r.topic.as_bytes());
        put_bytes(&mut out, &r.payload);
        put_varint(&mut out, headers);
        r.for_each_header(|k, v| {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v);
        });
    }
    debug_assert_eq!(
        out.len(),
        HEADER_LEN + body,
        "record sizes worked out wrong"
    );
    let batch_len = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&batch_len.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// A cursor over the bytes of one batch's records.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bad(&self, what: &str) -> BrokerError {
        BrokerError::BadRecord(format!("{what} at byte {}", self.pos))
    }

    fn varint(&mut self) -> Result<i64> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.b.get(self.pos) else {
                return Err(self.bad("truncated varint"));
            };
            self.pos += 1;
            z |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(self.bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<Option<&'a [u8]>> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let end = self.pos + len as usize;
        if end > self.b.len() {
            return Err(self.bad("truncated field"));
        }
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(Some(s))
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

/// Decodes a compressed batch (gzip, snappy, lz4, zstd) written by a Kafka producer.
fn decode_compressed(batch: &[u8], from_offset: u64, out: &mut Vec<StoredRecord>) -> Result<()> {
    let mut buf = Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BrokerError::BadRecord(format!("compressed batch: {e:#}")))?;
    for r in set.records {
        if r.offset < 0 || (r.offset as u64) < from_offset || r.control {
            continue;
        }
        let mut rec = MqttRecord {
            topic: r
                .key
                .as_deref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            payload: r.value.unwrap_or_default(),
            qos: 1,
            timestamp_ms: r.timestamp,
            ..Default::default()
        };
        for (k, v) in &r.headers {
            rec.apply_header(k.as_str(), v.as_deref().unwrap_or_default());
        }
        out.push(StoredRecord {
            offset: r.offset as u64,
            record: rec,
        });
    }
    Ok(())
}

/// Decodes every record of the concatenated batches in `buf` (as a journal read returns
/// them), with their offsets. Records below `from_offset` (the first batch may start
/// before the requested offset) are left out.
pub fn decode_batches(buf: &[u8], from_offset: u64) -> Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + HEADER_LEN <= buf.len() {
        let b = &buf[pos..];
        let base = be_i64(b, 0);
        let total = 12 + be_i32(b, 8).max(0) as usize;
        if total < HEADER_LEN || total > b.len() {
            return Err(BrokerError::BadRecord(format!(
                "batch at offset {base} declares {total} bytes"
            )));
        }
        let batch = &b[..total];
        pos += total;
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        if attributes & ATTR_COMPRESSION_MASK != 0 {
            // Kafka producers compress; MQTT never does, so this path is cross-protocol
            // only and can afford the general decoder.
            decode_compressed(batch, from_offset, &mut out)?;
            continue;
        }
        let base_ts = be_i64(batch, 27);
        let count = be_i32(batch, 57).max(0);
        let mut c = Cursor {
            b: batch,
            pos: HEADER_LEN,
        };
        for _ in 0..count {
            let len = c.varint()?;
            let end = c.pos + len.max(0) as usize;
            if end > batch.len() {
                return Err(c.bad("record past the batch end"));
            }
            c.pos += 1; // attributes
            let ts_delta = c.varint()?;
            let offset_delta = c.varint()?;
            let key = c.bytes()?.unwrap_or_default();
            let value = c.bytes()?.unwrap_or_default();
            let mut rec = MqttRecord {
                topic: String::from_utf8_lossy(key).into_owned(),
                payload: Bytes::copy_from_slice(value),
                // Records from Kafka producers: deliver as QoS 1 (capped by the subscription).
                qos: 1,
                timestamp_ms: base_ts + ts_delta,
                ..Default::default()
            };
            let headers = c.varint()?;
            for _ in 0..headers.max(0) {
                let k = c.bytes()?.unwrap_or_default();
                let v = c.bytes()?.unwrap_or_default();
                rec.apply_header(&String::from_utf8_lossy(k), v);
            }
            c.pos = end;
            let offset = (base + offset_delta) as u64;
            if offset >= from_offset {
                out.push(StoredRecord {
                    offset,
                    record: rec,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> MqttRecord {
        MqttRecord {
            topic: format!("sensors/{i}"),
            payload: Bytes::from(vec![i as u8; i * 3]),
            qos: (i % 3) as u8,
            retain: i.is_multiple_of(2),
            from_client: "c1".into(),
            payload_format: Some(1),
            expires_at_ms: Some(1_700_000_000_000 + i as u64),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/1".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            timestamp_ms: 1_700_000_000_000 + i as i64 * 7,
        }
    }

    #[test]
    fn batch_round_trips_with_offsets_and_valid_crc() {
        let recs: Vec<_> = (0..5).map(sample).collect();
        let mut batch = encode_batch(&recs).to_vec();
        journal::batch::validate(&batch).expect("the journal accepts the batch");
        // The journal assigns the base offset; decoding must honour it.
        journal::batch::set_base_offset(&mut batch, 40);
        let got = decode_batches(&batch, 42).unwrap();
        assert_eq!(
            got.len(),
            3,
            "records below the requested offset are skipped"
        );
        assert_eq!(got[0].offset, 42);
        assert_eq!(got[0].record, recs[2]);
        assert_eq!(got[2].record, recs[4]);
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i32::MAX as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(varint_len(v), buf.len(), "{v}");
        }
    }

    #[test]
    fn truncated_batches_are_errors_not_panics() {
        let batch = encode_batch(&[sample(4), sample(5)]);
        for cut in 0..batch.len() {
            let _ = decode_batches(&batch[..cut], 0);
        }
        let mut bad = batch.to_vec();
        bad[8..12].copy_from_slice(&(10_000i32).to_be_bytes());
        assert!(decode_batches(&bad, 0).is_err());
    }

    #[test]
    fn compressed_kafka_batches_reach_mqtt() {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let mut headers = kafka_protocol::indexmap::IndexMap::new();
        headers.insert(
            kafka_protocol::protocol::StrBytes::from_static_str("unit"),
            Some(Bytes::from_static(b"C")),
        );
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records: Vec<Record> = (0..3)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: 10 + i,
                    sequence: -1,
                    timestamp: 1000 + i,
                    key: Some(Bytes::from(format!("sensors/{i}"))),
                    value: Some(Bytes::from(format!("v{i}"))),
                    headers: headers.clone(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let got = decode_batches(&buf, 11).unwrap();
            assert_eq!(got.len(), 2, "{compression:?}");
            assert_eq!(got[0].offset, 11);
            assert_eq!(got[0].record.topic, "sensors/1");
            assert_eq!(got[0].record.payload, Bytes::from_static(b"v1"));
            assert_eq!(
                got[0].record.user_properties,
                vec![("unit".to_string(), "C".to_string())]
            );
        }
    }
}

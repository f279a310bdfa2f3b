//! ListOffsets: earliest (-2, and -4 "earliest local", the same here), latest (-1), max
//! timestamp (-3) and the first offset at or after a timestamp, with that record's own
//! timestamp (clients such as the Java consumer require it).

use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use super::Conn;
use crate::storage::StorageAdapter;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// `(offset, timestamp)` answered for one partition.
async fn lookup(
    storage: &dyn StorageAdapter,
    topic: &str,
    shard: u32,
    spec: i64,
) -> Result<(i64, i64), ResponseError> {
    let fail = |e: crate::BrokerError| {
        tracing::warn!(topic, shard, error = %e, "ListOffsets");
        ResponseError::KafkaStorageError
    };
    let offsets = storage.offsets(topic, shard).await.map_err(fail)?;
    match spec {
        LATEST => Ok((offsets.high_watermark as i64, -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((offsets.log_start as i64, -1)),
        MAX_TIMESTAMP => {
            // The last record is the one with the largest timestamp for a log written in
            // time order, which is what producers with CreateTime normally give.
            if offsets.high_watermark == offsets.log_start {
                return Ok((-1, -1));
            }
            let last = offsets.high_watermark - 1;
            let ts = record_timestamp(storage, topic, shard, last)
                .await
                .map_err(fail)?;
            Ok((last as i64, ts.unwrap_or(-1)))
        }
        ts if ts >= 0 => match storage
            .offset_for_timestamp(topic, shard, ts)
            .await
            .map_err(fail)?
        {
            None => Ok((-1, -1)),
            Some(batch_offset) => {
                // The index points at a batch; the answer is its first record at or
                // after `ts`.
                let found = first_record_at_or_after(storage, topic, shard, batch_offset, ts)
                    .await
                    .map_err(fail)?;
                Ok(found.unwrap_or((-1, -1)))
            }
        },
        _ => Err(ResponseError::InvalidRequest),
    }
}

/// Decoded records of the batch holding `offset` (decompressing as needed).
async fn records_at(
    storage: &dyn StorageAdapter,
    topic: &str,
    shard: u32,
    offset: u64,
) -> crate::Result<Vec<kafka_protocol::records::Record>> {
    let r = storage
        .read(topic, shard, offset, 1, std::time::Duration::ZERO)
        .await?;
    let mut buf = r.records;
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| crate::BrokerError::BadRecord(format!("{e:#}")))?;
    Ok(set.records)
}

async fn record_timestamp(
    storage: &dyn StorageAdapter,
    topic: &str,
    shard: u32,
    offset: u64,
) -> crate::Result<Option<i64>> {
    Ok(records_at(storage, topic, shard, offset)
        .await?
        .into_iter()
        .find(|r| r.offset == offset as i64)
        .map(|r| r.timestamp))
}

async fn first_record_at_or_after(
    storage: &dyn StorageAdapter,
    topic: &str,
    shard: u32,
    offset: u64,
    ts: i64,
) -> crate::Result<Option<(i64, i64)>> {
    Ok(records_at(storage, topic, shard, offset)
        .await?
        .into_iter()
        .find(|r| r.offset >= offset as i64 && r.timestamp >= ts)
        .map(|r| (r.offset, r.timestamp)))
}

pub async fn list_offsets(
    conn: &Conn,
    req: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let ctx = &conn.ctx;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let topic = ctx.topics.get(t.name.0.as_str()).await;
        let partitions = join_all(t.partitions.into_iter().map(|p| {
            let topic = topic.clone();
            async move {
                let mut out = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1);
                let Some(topic) = topic.filter(|t| {
                    p.partition_index >= 0 && (p.partition_index as u32) < t.partitions
                }) else {
                    return out.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                match lookup(
                    ctx.storage.as_ref(),
                    &topic.name,
                    p.partition_index as u32,
                    p.timestamp,
                )
                .await
                {
                    Ok((offset, ts)) => {
                        out.offset = offset;
                        out.timestamp = ts;
                    }
                    Err(e) => out.error_code = e.code(),
                }
                if version >= 4 {
                    out.leader_epoch = -1;
                }
                out
            }
        }))
        .await;
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

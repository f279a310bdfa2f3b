//! Produce: batches are stored as received (the journal assigns offsets), idempotent
//! producers are deduplicated by producer id, epoch and sequence, acks 0/1/all.
//!
//! Acks 1 and all are the same here: the broker is stateless and the journal acknowledges
//! an append only once the shard's storage policy has it (fsync and, with replication, the
//! quorum), so there is no weaker point at which a leader could answer early.

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::Conn;
use crate::kafka::batch::{self, SplitError};
use crate::kafka::idempotence::{self, Verdict};
use crate::kafka::topics::KafkaTopic;

/// The outcome of one partition: offset or error, and a message for v8+.
struct Outcome {
    error: ResponseError,
    base_offset: i64,
    message: Option<String>,
}

impl Outcome {
    fn ok(base_offset: i64) -> Self {
        Outcome {
            error: ResponseError::Unknown(0),
            base_offset,
            message: None,
        }
    }

    fn err(error: ResponseError, message: impl Into<String>) -> Self {
        Outcome {
            error,
            base_offset: -1,
            message: Some(message.into()),
        }
    }

    fn code(&self) -> i16 {
        match self.error {
            ResponseError::Unknown(0) => 0,
            e => e.code(),
        }
    }
}

/// Answers a Produce request; `None` for acks=0 unless a partition failed, in which case
/// the caller closes the connection (as Kafka does) so the client notices and refreshes.
pub async fn produce(conn: &Conn, req: ProduceRequest, version: i16) -> (ProduceResponse, bool) {
    let acks = req.acks;
    let transactional = req.transactional_id.is_some();
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 300_000) as u64);
    let mut jobs = Vec::new();
    for t in &req.topic_data {
        let name = t.name.0.to_string();
        let topic = conn.ctx.topics.get(&name).await;
        for p in &t.partition_data {
            let topic = topic.clone();
            let records = p.records.clone();
            let bytes = records.as_ref().map_or(0, |r| r.len());
            let index = p.index;
            let name = name.clone();
            jobs.push(async move {
                let out = if !matches!(acks, -1..=1) {
                    Outcome::err(ResponseError::InvalidRequiredAcks, format!("acks={acks}"))
                } else if transactional {
                    Outcome::err(
                        ResponseError::TransactionalIdAuthorizationFailed,
                        "transactions are not supported",
                    )
                } else {
                    match tokio::time::timeout(timeout, partition(conn, topic, index, records))
                        .await
                    {
                        Ok(o) => o,
                        Err(_) => Outcome::err(
                            ResponseError::RequestTimedOut,
                            "storage did not answer in time",
                        ),
                    }
                };
                if out.code() == 0 {
                    conn.ctx.stats.produced(bytes);
                }
                (name, index, out)
            });
        }
    }
    let results = join_all(jobs).await;
    let failed = results.iter().any(|(_, _, o)| o.code() != 0);
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for (name, index, out) in results {
        let mut p = PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(out.code())
            .with_base_offset(out.base_offset)
            .with_log_append_time_ms(-1);
        if version >= 8 {
            p.error_message = out.message.map(StrBytes::from_string);
        }
        match topics.iter_mut().find(|t| t.name.0.as_str() == name) {
            Some(t) => t.partition_responses.push(p),
            None => topics.push(
                TopicProduceResponse::default()
                    .with_name(StrBytes::from_string(name).into())
                    .with_partition_responses(vec![p]),
            ),
        }
    }
    (ProduceResponse::default().with_responses(topics), failed)
}

async fn partition(
    conn: &Conn,
    topic: Option<KafkaTopic>,
    index: i32,
    records: Option<Bytes>,
) -> Outcome {
    let ctx = &conn.ctx;
    let Some(topic) = topic.filter(|t| index >= 0 && (index as u32) < t.partitions) else {
        return Outcome::err(ResponseError::UnknownTopicOrPartition, "no such partition");
    };
    if ctx.cluster.partition_leader(&topic.name, index) != ctx.cluster.my_id() {
        return Outcome::err(ResponseError::NotLeaderOrFollower, "partition moved");
    }
    let records = records.unwrap_or_default();
    if records.is_empty() {
        return Outcome::err(ResponseError::InvalidRecord, "no records");
    }
    if records.len() > ctx.settings.max_message_bytes {
        return Outcome::err(
            ResponseError::MessageTooLarge,
            format!(
                "{} bytes exceed the limit of {}",
                records.len(),
                ctx.settings.max_message_bytes
            ),
        );
    }
    let batches = match batch::split(&records) {
        Ok(b) => b,
        Err(e @ SplitError::Magic(_)) => {
            return Outcome::err(ResponseError::UnsupportedForMessageFormat, e.to_string());
        }
        Err(e) => return Outcome::err(ResponseError::CorruptMessage, e.to_string()),
    };
    for (b, h) in &batches {
        if journal::batch::check_crc(b).is_err() {
            return Outcome::err(ResponseError::CorruptMessage, "record batch CRC mismatch");
        }
        if h.is_transactional() || h.is_control() {
            return Outcome::err(
                ResponseError::InvalidRecord,
                "transactional batches are not supported",
            );
        }
    }
    let shard = index as u32;
    let idempotent = batches.iter().any(|(_, h)| h.producer_id >= 0);
    if !idempotent {
        return append(
            conn,
            &topic,
            shard,
            batches.into_iter().map(|(b, _)| b).collect(),
        )
        .await;
    }
    // Kafka sends one batch per partition from an idempotent producer; more would make a
    // retry ambiguous.
    if batches.len() != 1 {
        return Outcome::err(
            ResponseError::InvalidRecord,
            "an idempotent produce carries exactly one batch per partition",
        );
    }
    let Some((b, h)) = batches.into_iter().next() else {
        return Outcome::err(ResponseError::InvalidRecord, "no records");
    };
    let state = ctx.producers.partition(&topic.name, shard);
    let mut state = state.lock().await;
    let generation = ctx.cluster.generation();
    if state.loaded_at != Some(generation) {
        if let Err(e) =
            idempotence::rebuild(ctx.storage.as_ref(), &topic.name, shard, &mut state).await
        {
            tracing::warn!(topic = %topic.name, shard, error = %e, "rebuilding producer state");
            return Outcome::err(ResponseError::KafkaStorageError, e.to_string());
        }
        state.loaded_at = Some(generation);
    }
    match state.check(&h) {
        Verdict::Duplicate { base_offset } => Outcome::ok(base_offset),
        Verdict::Reject(e) => Outcome::err(
            e,
            format!(
                "producer {} epoch {} sequence {}",
                h.producer_id, h.producer_epoch, h.base_sequence
            ),
        ),
        Verdict::Append => {
            let out = append(conn, &topic, shard, vec![b]).await;
            if out.code() == 0 {
                state.record(&h, out.base_offset);
            }
            out
        }
    }
}

async fn append(conn: &Conn, topic: &KafkaTopic, shard: u32, batches: Vec<Bytes>) -> Outcome {
    match conn.ctx.storage.append(&topic.name, shard, batches).await {
        Ok(a) => Outcome::ok(a.base_offset as i64),
        Err(e) => {
            tracing::warn!(topic = %topic.name, shard, error = %e, "produce append failed");
            // Retriable, and makes the client refresh metadata and try again.
            Outcome::err(ResponseError::KafkaStorageError, e.to_string())
        }
    }
}

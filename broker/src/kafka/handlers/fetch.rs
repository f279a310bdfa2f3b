//! Fetch: stored batches are returned as they are on disk (no re-encoding), long-polling
//! up to `max_wait_ms` until `min_bytes` arrived, within `max_bytes` per response and
//! `partition_max_bytes` per partition (always at least one batch, as KIP-74 requires).
//!
//! Any broker serves any partition: reads need no leader (the journal is the single
//! source), so a consumer with stale metadata keeps reading instead of bouncing.
//! Fetch sessions (KIP-227) are not kept: every response is a full one (session id 0),
//! which clients accept.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::Conn;
use crate::storage::ReadResult;

/// One requested partition and what we found for it.
struct Slot {
    topic: String,
    /// Meta's name of the topic (the storage name), if the topic exists.
    storage: Option<String>,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    error: i16,
    hw: i64,
    log_start: i64,
    records: Bytes,
}

impl Slot {
    fn readable(&self) -> bool {
        self.error == 0 && self.storage.is_some()
    }

    /// Takes a read's result, turning an offset outside the log into OFFSET_OUT_OF_RANGE.
    fn fill(&mut self, r: crate::Result<ReadResult>) {
        match r {
            Ok(r) => {
                self.hw = r.high_watermark as i64;
                self.log_start = r.log_start as i64;
                if self.offset < self.log_start || self.offset > self.hw {
                    self.error = ResponseError::OffsetOutOfRange.code();
                    self.records = Bytes::new();
                } else {
                    self.records = r.records;
                }
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "fetch read failed");
                self.error = ResponseError::KafkaStorageError.code();
            }
        }
    }
}

pub async fn fetch(conn: &Conn, req: FetchRequest, version: i16) -> FetchResponse {
    let ctx = &conn.ctx;
    if req.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    if req.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::InvalidFetchSessionEpoch.code());
    }
    let mut slots = Vec::new();
    for t in &req.topics {
        let name = t.topic.0.to_string();
        let topic = ctx.topics.get(&name).await;
        for p in &t.partitions {
            let exists = topic
                .as_ref()
                .is_some_and(|t| p.partition >= 0 && (p.partition as u32) < t.partitions);
            slots.push(Slot {
                topic: name.clone(),
                storage: topic.as_ref().filter(|_| exists).map(|t| t.name.clone()),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                error: if exists {
                    0
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                },
                hw: -1,
                log_start: -1,
                records: Bytes::new(),
            });
        }
    }
    let read = |slot: &Slot, wait: Duration| {
        let storage = ctx.storage.clone();
        let topic = slot.storage.clone().unwrap_or_default();
        let (shard, offset, max) = (
            slot.partition as u32,
            slot.offset.max(0) as u64,
            slot.max_bytes,
        );
        async move { storage.read(&topic, shard, offset, max.max(1), wait).await }
    };

    // Whatever is there now, every partition at once.
    let now: Vec<_> = slots
        .iter()
        .map(|s| {
            let f = s.readable().then(|| read(s, Duration::ZERO));
            async move {
                match f {
                    Some(f) => Some(f.await),
                    None => None,
                }
            }
        })
        .collect();
    for (slot, r) in slots.iter_mut().zip(futures::future::join_all(now).await) {
        if let Some(r) = r {
            slot.fill(r);
        }
    }

    // Not enough yet: wait for the first partitions to get data, until min_bytes or
    // max_wait. The reads left pending are dropped, which cancels them.
    let min_bytes = req.min_bytes.max(0) as usize;
    let mut total: usize = slots.iter().map(|s| s.records.len()).sum();
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, 300_000) as u64);
    if total < min_bytes.max(1) && !max_wait.is_zero() {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut waiting: FuturesUnordered<_> = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.readable() && s.records.is_empty())
            .map(|(i, s)| {
                let f = read(s, max_wait);
                async move { (i, f.await) }
            })
            .collect();
        loop {
            let next = tokio::select! {
                n = waiting.next() => n,
                _ = tokio::time::sleep_until(deadline) => None,
                _ = ctx.cancel.cancelled() => None,
            };
            let Some((i, r)) = next else { break };
            slots[i].fill(r);
            total += slots[i].records.len();
            if total >= min_bytes.max(1) {
                break;
            }
        }
    }

    // Trim to the response limit; the first data is always kept so a large batch cannot
    // stall the consumer.
    let max_total = req.max_bytes.max(0) as usize;
    let mut sent = 0usize;
    for s in slots.iter_mut() {
        if s.records.is_empty() {
            continue;
        }
        if sent > 0 && sent + s.records.len() > max_total {
            s.records = Bytes::new();
            continue;
        }
        sent += s.records.len();
    }
    ctx.stats.fetched(sent);

    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for s in slots {
        let mut p = PartitionData::default()
            .with_partition_index(s.partition)
            .with_error_code(s.error)
            .with_high_watermark(s.hw)
            .with_last_stable_offset(s.hw)
            .with_log_start_offset(s.log_start)
            .with_records(Some(s.records));
        // Null unless read_committed, as Kafka answers.
        p.aborted_transactions = (req.isolation_level == 1).then(Vec::new);
        if version < 5 {
            p.log_start_offset = -1;
        }
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == s.topic => t.partitions.push(p),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(kafka_protocol::protocol::StrBytes::from_string(s.topic).into())
                    .with_partitions(vec![p]),
            ),
        }
    }
    FetchResponse::default().with_responses(topics)
}

//! The broker's only view of storage: [`StorageAdapter`] (append, read/tail, offsets) over
//! shards named `(topic, index)`, holding Kafka RecordBatch v2 batches.
//!
//! - [`local`]: the journal's engines in this process (standalone mode and tests).
//! - [`grpc`]: the journal tier over gRPC, routed to each shard's leader through meta.
//! - [`record`]: how an MQTT publish becomes a record, and back.
//! - [`appender`]: coalesces concurrent publishes to one shard into one append.

pub mod appender;
pub mod grpc;
pub mod local;
pub mod record;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub log_end: u64,
}

/// One read: whole batches from the requested offset, and where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    pub records: Bytes,
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start: u64,
}

/// A shard's readable range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub log_start: u64,
    pub high_watermark: u64,
}

/// Storage as the broker sees it. Implementations route to wherever the shard lives.
#[async_trait]
pub trait StorageAdapter: Send + Sync + 'static {
    /// Appends whole batches, atomically and in order.
    async fn append(&self, topic: &str, shard: u32, batches: Vec<Bytes>) -> Result<Appended>;
    /// Reads committed batches from `offset`, waiting up to `max_wait` at the tail; an
    /// empty result means nothing arrived in time. An offset below the log start reads
    /// from the log start.
    async fn read(
        &self,
        topic: &str,
        shard: u32,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<ReadResult>;
    /// The shard's log start and high watermark.
    async fn offsets(&self, topic: &str, shard: u32) -> Result<Offsets>;
    /// The first offset whose batch has a timestamp at or after `timestamp_ms`, if any.
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        shard: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>>;
    /// Follows the shard's high watermark where storage can tell without a read (shards in
    /// this process), so that a reader at the tail can wait without polling; `None` where
    /// it cannot, and readers long-poll with [`StorageAdapter::read`].
    async fn watch_high_watermark(
        &self,
        _topic: &str,
        _shard: u32,
    ) -> Result<Option<tokio::sync::watch::Receiver<u64>>> {
        Ok(None)
    }
}

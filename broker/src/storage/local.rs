//! [`LocalStorage`]: the journal's engines in this process, through its
//! [`ShardManager`]. Shards are created on first use with the configured spec, because in
//! standalone mode no journal node follows meta's placements.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use journal::JournalError;
use journal::registry::{Origin, ShardHandle, ShardManager};
use journal::{ShardId, ShardSpec};

use super::{Appended, Offsets, ReadResult, StorageAdapter};
use crate::error::{BrokerError, Result};

pub struct LocalStorage {
    shards: Arc<ShardManager>,
    spec: ShardSpec,
}

impl LocalStorage {
    pub fn new(shards: Arc<ShardManager>, spec: ShardSpec) -> Self {
        LocalStorage { shards, spec }
    }

    async fn shard(&self, topic: &str, shard: u32) -> Result<Arc<ShardHandle>> {
        let id = ShardId::new(topic, shard);
        if let Ok(h) = self.shards.get(&id) {
            return Ok(h);
        }
        self.shards
            .create(id, self.spec.clone(), 0, 0, Origin::Local)
            .await
            .map_err(|e| BrokerError::storage(topic, shard, e))
    }
}

#[async_trait]
impl StorageAdapter for LocalStorage {
    async fn append(&self, topic: &str, shard: u32, batches: Vec<Bytes>) -> Result<Appended> {
        let h = self.shard(topic, shard).await?;
        let out = h
            .log
            .append(batches)
            .await
            .map_err(|e| BrokerError::storage(topic, shard, e))?;
        Ok(Appended {
            base_offset: out.base_offset,
            log_end: out.log_end,
        })
    }

    async fn read(
        &self,
        topic: &str,
        shard: u32,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<ReadResult> {
        let h = self.shard(topic, shard).await?;
        let mut offset = offset;
        for _ in 0..2 {
            match journal::engine::read_wait(h.log.as_ref(), offset, max_bytes, max_wait).await {
                Ok(c) => {
                    return Ok(ReadResult {
                        records: c.records,
                        next_offset: c.next_offset,
                        high_watermark: c.high_watermark,
                        log_start: c.log_start,
                    });
                }
                // Retention moved the start past us: continue from the new start.
                Err(JournalError::OffsetOutOfRange { .. }) => {
                    let stats = h.stats();
                    if offset < stats.log_start {
                        offset = stats.log_start;
                        continue;
                    }
                    // Past the end: nothing to read yet (the reader is ahead after a
                    // truncation); report the tail so the caller resets.
                    return Ok(ReadResult {
                        records: Bytes::new(),
                        next_offset: stats.high_watermark,
                        high_watermark: stats.high_watermark,
                        log_start: stats.log_start,
                    });
                }
                Err(e) => return Err(BrokerError::storage(topic, shard, e)),
            }
        }
        Err(BrokerError::storage(topic, shard, "log start kept moving"))
    }

    async fn offsets(&self, topic: &str, shard: u32) -> Result<Offsets> {
        let s = self.shard(topic, shard).await?.stats();
        Ok(Offsets {
            log_start: s.log_start,
            high_watermark: s.high_watermark,
        })
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        shard: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>> {
        self.shard(topic, shard)
            .await?
            .log
            .offset_for_timestamp(timestamp_ms)
            .await
            .map_err(|e| BrokerError::storage(topic, shard, e))
    }

    async fn watch_high_watermark(
        &self,
        topic: &str,
        shard: u32,
    ) -> Result<Option<tokio::sync::watch::Receiver<u64>>> {
        Ok(Some(
            self.shard(topic, shard).await?.log.watch_high_watermark(),
        ))
    }
}

/// An in-memory [`LocalStorage`] for unit tests (memory engine, files under `dir`).
#[cfg(test)]
pub fn memory_for_tests(dir: &std::path::Path) -> LocalStorage {
    let spec = ShardSpec {
        engine: journal::EngineKind::Memory,
        ..ShardSpec::default()
    };
    let shards = Arc::new(ShardManager::new(
        1,
        dir.to_path_buf(),
        spec.clone(),
        journal::engine::EngineHooks::default(),
    ));
    LocalStorage::new(shards, spec)
}

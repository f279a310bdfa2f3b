//! The memory engine: a shard log bounded in bytes, held in RAM and lost on restart.
//! When an append would exceed the bound, the oldest batches are evicted and the log start
//! advances; time retention evicts the same way. Offsets keep counting across evictions.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::{AppendOutcome, LogStats, ReadChunk, ShardLog, validate_batches};
use crate::batch;
use crate::error::{JournalError, Result};
use crate::shard::{EngineKind, ShardId, ShardSpec};

struct Stored {
    base: u64,
    last: u64,
    max_timestamp: i64,
    bytes: Bytes,
}

struct State {
    batches: VecDeque<Stored>,
    log_start: u64,
    log_end: u64,
    size: u64,
    closed: bool,
}

/// A bounded in-memory shard log.
pub struct MemoryLog {
    shard: ShardId,
    max_bytes: u64,
    retention_ms: u64,
    state: Mutex<State>,
    hw_tx: watch::Sender<u64>,
}

impl MemoryLog {
    /// The bound is `memory_max_bytes`, or `retention_bytes` when that is smaller.
    pub fn new(shard: ShardId, spec: &ShardSpec) -> Self {
        let mut max_bytes = spec.memory_max_bytes.max(1);
        if spec.retention_bytes > 0 {
            max_bytes = max_bytes.min(spec.retention_bytes);
        }
        MemoryLog {
            shard,
            max_bytes,
            retention_ms: spec.retention_ms,
            state: Mutex::new(State {
                batches: VecDeque::new(),
                log_start: 0,
                log_end: 0,
                size: 0,
                closed: false,
            }),
            hw_tx: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that
        // breaks offsets (every mutation is completed before any call that could panic), so
        // a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn evict_front(st: &mut State) {
        if let Some(b) = st.batches.pop_front() {
            st.size -= b.bytes.len() as u64;
            st.log_start = st.batches.front().map_or(st.log_end, |f| f.base);
        }
    }

    fn out_of_range(&self, st: &State, offset: u64) -> JournalError {
        JournalError::OffsetOutOfRange {
            shard: self.shard.clone(),
            offset,
            log_start: st.log_start,
            log_end: st.log_end,
        }
    }
}

#[async_trait]
impl ShardLog for MemoryLog {
    fn shard(&self) -> &ShardId {
        &self.shard
    }

    fn engine(&self) -> EngineKind {
        EngineKind::Memory
    }

    async fn append(&self, batches: Vec<Bytes>) -> Result<AppendOutcome> {
        let headers = validate_batches(&self.shard, &batches)?;
        let total: usize = batches.iter().map(Bytes::len).sum();
        if total as u64 > self.max_bytes {
            return Err(JournalError::TooLarge {
                shard: self.shard.clone(),
                size: total,
                limit: self.max_bytes as usize,
            });
        }
        let mut st = self.lock();
        if st.closed {
            return Err(JournalError::Closed {
                shard: self.shard.clone(),
            });
        }
        let base_offset = st.log_end;
        for (b, h) in batches.iter().zip(&headers) {
            let offset = st.log_end;
            let mut owned = BytesMut::from(&b[..]);
            batch::set_base_offset(&mut owned, offset);
            let end = offset + h.offset_count();
            st.log_end = end;
            st.size += owned.len() as u64;
            st.batches.push_back(Stored {
                base: offset,
                last: end - 1,
                max_timestamp: h.max_timestamp,
                bytes: owned.freeze(),
            });
        }
        while st.size > self.max_bytes {
            Self::evict_front(&mut st);
        }
        let log_end = st.log_end;
        drop(st);
        self.hw_tx.send_replace(log_end);
        Ok(AppendOutcome {
            base_offset,
            log_end,
        })
    }

    async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadChunk> {
        let st = self.lock();
        if offset < st.log_start || offset > st.log_end {
            return Err(self.out_of_range(&st, offset));
        }
        let first = st.batches.partition_point(|b| b.last < offset);
        // Count first, so that one batch is served without a copy and several with one
        // exact allocation.
        let (mut count, mut total) = (0usize, 0usize);
        for b in st.batches.range(first..) {
            if count > 0 && total + b.bytes.len() > max_bytes {
                break;
            }
            total += b.bytes.len();
            count += 1;
        }
        let served = st.batches.range(first..first + count);
        let next = served.clone().next_back().map_or(offset, |b| b.last + 1);
        let records = if count == 1 {
            st.batches[first].bytes.clone()
        } else {
            let mut out = BytesMut::with_capacity(total);
            for b in served {
                out.extend_from_slice(&b.bytes);
            }
            out.freeze()
        };
        Ok(ReadChunk {
            records,
            next_offset: next,
            high_watermark: st.log_end,
            log_start: st.log_start,
        })
    }

    async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let st = self.lock();
        Ok(st
            .batches
            .iter()
            .find(|b| b.max_timestamp >= ts)
            .map(|b| b.base))
    }

    async fn truncate(&self, offset: u64) -> Result<()> {
        let mut st = self.lock();
        if offset < st.log_start || offset > st.log_end {
            return Err(JournalError::BadTruncate {
                shard: self.shard.clone(),
                offset,
                reason: format!("outside the log [{}, {}]", st.log_start, st.log_end),
            });
        }
        while st.batches.back().is_some_and(|b| b.last >= offset) {
            if let Some(b) = st.batches.pop_back() {
                st.size -= b.bytes.len() as u64;
                st.log_end = b.base;
            }
        }
        if st.batches.is_empty() {
            st.log_start = st.log_end;
        }
        let end = st.log_end;
        drop(st);
        self.hw_tx.send_replace(end);
        Ok(())
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<u64> {
        let mut st = self.lock();
        if self.retention_ms > 0 {
            let cutoff = now_ms.saturating_sub(self.retention_ms as i64);
            while st.batches.front().is_some_and(|b| b.max_timestamp < cutoff) {
                Self::evict_front(&mut st);
            }
        }
        while st.size > self.max_bytes {
            Self::evict_front(&mut st);
        }
        Ok(st.log_start)
    }

    fn stats(&self) -> LogStats {
        let st = self.lock();
        LogStats {
            log_start: st.log_start,
            high_watermark: st.log_end,
            log_end: st.log_end,
            size_bytes: st.size,
            segments: 0,
        }
    }

    fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.hw_tx.subscribe()
    }

    async fn close(&self) -> Result<()> {
        self.lock().closed = true;
        Ok(())
    }
}

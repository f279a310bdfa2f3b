//! Storage engines behind one trait, [`ShardLog`]: the contract every engine passes in the
//! conformance suite (`tests/conformance.rs`).
//!
//! Invariants shared by all engines:
//! - offsets are dense per shard and never reused; an append assigns
//!   `log_end .. log_end + n` and only rewrites each batch's baseOffset field;
//! - readers see only offsets below the high watermark (with fsync=always: durable bytes);
//! - a read returns whole batches exactly as stored, starting with the batch that contains
//!   the requested offset, and at least one batch even if it exceeds `max_bytes`;
//! - a read below the log start (or past the high watermark) fails with
//!   [`JournalError::OffsetOutOfRange`] carrying the current start and end.

mod group_commit;
pub mod memory;
pub mod segment;
mod tail_cache;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;

use crate::batch::{self, BatchHeader};
use crate::error::{JournalError, Result};
use crate::shard::{EngineKind, ShardId};

/// What an append was given: the assigned first offset and the log end after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: u64,
    pub log_end: u64,
}

/// One read's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunk {
    /// Whole batches, concatenated, exactly as stored. Empty at the tail.
    pub records: Bytes,
    /// Where the next read continues.
    pub next_offset: u64,
    pub high_watermark: u64,
    pub log_start: u64,
}

/// A snapshot of a shard log's offsets and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    pub size_bytes: u64,
    pub segments: u32,
}

/// Observers an engine reports to (metrics). Cheap to clone.
#[derive(Clone, Default)]
pub struct EngineHooks {
    /// Seconds per fdatasync.
    pub fsync_seconds: Option<Histogram>,
}

impl std::fmt::Debug for EngineHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHooks").finish_non_exhaustive()
    }
}

/// A shard's log, whatever stores it.
#[async_trait]
pub trait ShardLog: Send + Sync + 'static {
    fn shard(&self) -> &ShardId;
    fn engine(&self) -> EngineKind;
    /// Validates and appends batches atomically (all or none), in order.
    async fn append(&self, batches: Vec<Bytes>) -> Result<AppendOutcome>;
    /// Reads committed batches from `offset` on; empty at the high watermark.
    async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadChunk>;
    /// The base offset of the first committed batch whose max timestamp is >= `ts`.
    async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>>;
    /// Removes every batch holding an offset >= `offset` (a new leader cutting a divergent
    /// tail). The log end becomes the base of the batch that contained `offset`.
    async fn truncate(&self, offset: u64) -> Result<()>;
    /// Applies retention by time and bytes; returns the new log start.
    async fn enforce_retention(&self, now_ms: i64) -> Result<u64>;
    fn stats(&self) -> LogStats;
    /// Follows the high watermark; used by readers waiting at the tail.
    fn watch_high_watermark(&self) -> watch::Receiver<u64>;
    /// Flushes what the policy requires and stops background work. Appends fail afterwards.
    async fn close(&self) -> Result<()>;
}

/// Validates every batch of an append without copying; returns the headers.
pub(crate) fn validate_batches(shard: &ShardId, batches: &[Bytes]) -> Result<Vec<BatchHeader>> {
    if batches.is_empty() {
        return Err(JournalError::EmptyAppend {
            shard: shard.clone(),
        });
    }
    batches
        .iter()
        .enumerate()
        .map(|(index, b)| {
            batch::validate(b).map_err(|source| JournalError::InvalidBatch {
                shard: shard.clone(),
                index,
                source,
            })
        })
        .collect()
}

/// Reads at `offset`, waiting up to `max_wait` for data when the reader is at the high
/// watermark. Returns an empty chunk when the wait ends without data.
pub async fn read_wait(
    log: &dyn ShardLog,
    offset: u64,
    max_bytes: usize,
    max_wait: Duration,
) -> Result<ReadChunk> {
    let mut hw = log.watch_high_watermark();
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        // Mark the current value seen before reading so that an append landing between
        // the read and the wait still wakes us.
        hw.borrow_and_update();
        let chunk = log.read(offset, max_bytes).await?;
        if !chunk.records.is_empty() {
            return Ok(chunk);
        }
        match tokio::time::timeout_at(deadline, hw.changed()).await {
            Err(_) => return Ok(chunk),
            Ok(Err(_)) => {
                return Err(JournalError::Closed {
                    shard: log.shard().clone(),
                });
            }
            Ok(Ok(())) => {}
        }
    }
}

/// Splits `buf` (bytes read from storage, starting at a batch boundary whose base offset
/// must be `expected_base`) into the whole batches a read may serve: those below `hw`,
/// within `max_bytes` (at least one when `min_one`), each with the expected base offset
/// (the CRC does not cover it) and, when `verify_crc`, a valid CRC. Returns the byte length
/// to serve and the next offset; a bad batch is reported as `Err((position in buf, offset,
/// reason))` so that the engine can name the file.
pub(crate) fn cut_batches(
    buf: &[u8],
    expected_base: u64,
    hw: u64,
    max_bytes: usize,
    min_one: bool,
    verify_crc: bool,
) -> std::result::Result<(usize, u64), (usize, u64, String)> {
    let mut pos = 0usize;
    let mut next = expected_base;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < batch::HEADER_LEN {
            break;
        }
        let h = batch::parse_header(rest, false).map_err(|e| (pos, next, e.to_string()))?;
        if h.total_len > rest.len() {
            break;
        }
        if h.base_offset != next as i64 {
            return Err((
                pos,
                next,
                format!(
                    "batch has base offset {} where {next} was expected",
                    h.base_offset
                ),
            ));
        }
        if h.last_offset() >= hw {
            break;
        }
        if (pos > 0 || !min_one) && pos + h.total_len > max_bytes {
            break;
        }
        if verify_crc {
            batch::check_crc(&rest[..h.total_len]).map_err(|e| (pos, next, e.to_string()))?;
        }
        pos += h.total_len;
        next = h.last_offset() + 1;
    }
    Ok((pos, next))
}

//! Shard identity and the per-shard storage spec (engine, fsync policy, retention,
//! segment sizing). A shard is one Kafka partition of a topic: `(topic, index)`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A shard: `(topic, index)`. Displayed as `topic/000003`, like meta's `shards/` keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardId {
    pub topic: String,
    pub index: u32,
}

impl ShardId {
    pub fn new(topic: impl Into<String>, index: u32) -> Self {
        ShardId {
            topic: topic.into(),
            index,
        }
    }

    /// A file-system-safe directory name: the topic percent-encoded (anything outside
    /// `[A-Za-z0-9._-]`, so `/` can never escape the data dir), then `@` and the index.
    /// `shard.yaml` inside the directory names the shard too, so this is never parsed back.
    pub fn dir_name(&self) -> String {
        let mut out = String::with_capacity(self.topic.len() + 8);
        for b in self.topic.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty())
            {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        format!("{out}@{:06}", self.index)
    }

    /// Checks a topic name is usable: non-empty and at most 249 bytes (Kafka's limit).
    pub fn validate(&self) -> Result<(), String> {
        if self.topic.is_empty() {
            return Err("topic name is empty".into());
        }
        if self.topic.len() > 249 {
            return Err(format!(
                "topic name is {} bytes (limit 249)",
                self.topic.len()
            ));
        }
        Ok(())
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:06}", self.topic, self.index)
    }
}

/// Which engine holds a shard's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Bounded in memory, lost on restart.
    Memory,
    /// Segment files on the local data dir.
    Segment,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Memory => "memory",
            EngineKind::Segment => "segment",
        }
    }
}

/// When appended bytes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Group commit: an append is acknowledged only once an fdatasync covers it;
    /// concurrent appends share one fdatasync.
    Always,
    /// A background fdatasync every `ms` milliseconds; appends are acknowledged at once.
    Interval { ms: u64 },
    /// Left to the OS page cache: the journal never calls fdatasync for this shard.
    Never,
}

impl FsyncPolicy {
    pub fn interval(&self) -> Option<Duration> {
        match self {
            FsyncPolicy::Interval { ms } => Some(Duration::from_millis((*ms).max(1))),
            _ => None,
        }
    }
}

/// How a shard stores its data. Persisted in `shard.yaml` for segment shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSpec {
    pub engine: EngineKind,
    pub fsync: FsyncPolicy,
    /// Delete segments whose newest batch timestamp is older than this; 0 = forever.
    pub retention_ms: u64,
    /// Delete the oldest segments while the shard is larger than this; 0 = unbounded.
    pub retention_bytes: u64,
    /// Roll the active segment once it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment once it is this old; 0 = never by age.
    pub segment_ms: u64,
    /// Bound of a memory shard; the oldest batches are evicted past it.
    pub memory_max_bytes: u64,
    /// Bytes between two sparse offset-index entries (and time-index entries).
    pub index_interval_bytes: u64,
    /// Segment engine: bytes of the newest batches kept in memory to serve readers at the
    /// tail without touching the disk; 0 turns the cache off. (Absent from older
    /// `shard.yaml` files: they get the default.)
    #[serde(default = "default_tail_cache_bytes")]
    pub tail_cache_bytes: u64,
}

/// Seconds of a busy shard's tail (4 MiB is 200 ms at 20 MB/s, 4 s at 1 MB/s): readers
/// that keep up never read the disk. Memory per shard: this plus at most one 256 KiB
/// buffer the newest batches are carved from.
pub const DEFAULT_TAIL_CACHE_BYTES: u64 = 4 << 20;

fn default_tail_cache_bytes() -> u64 {
    DEFAULT_TAIL_CACHE_BYTES
}

impl Default for ShardSpec {
    fn default() -> Self {
        ShardSpec {
            engine: EngineKind::Segment,
            fsync: FsyncPolicy::Always,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: 0,
            segment_bytes: 256 * 1024 * 1024,
            segment_ms: 24 * 3600 * 1000,
            memory_max_bytes: 64 * 1024 * 1024,
            index_interval_bytes: 4096,
            tail_cache_bytes: DEFAULT_TAIL_CACHE_BYTES,
        }
    }
}

impl ShardSpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < 1024 {
            return Err(format!(
                "segment_bytes is {} (minimum 1024)",
                self.segment_bytes
            ));
        }
        if self.segment_bytes > u32::MAX as u64 {
            return Err(format!(
                "segment_bytes is {} (maximum {}: index positions are 32-bit)",
                self.segment_bytes,
                u32::MAX
            ));
        }
        if self.engine == EngineKind::Memory && self.memory_max_bytes == 0 {
            return Err("memory_max_bytes must be > 0 for the memory engine".into());
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be > 0".into());
        }
        if self.tail_cache_bytes > u32::MAX as u64 {
            return Err(format!(
                "tail_cache_bytes is {} (maximum {}: cached positions are 32-bit)",
                self.tail_cache_bytes,
                u32::MAX
            ));
        }
        if let FsyncPolicy::Interval { ms: 0 } = self.fsync {
            return Err("fsync interval must be > 0 ms".into());
        }
        Ok(())
    }
}

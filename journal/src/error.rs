//! The journal library's error type. Every variant carries the context a caller needs to
//! act (the shard, the offset, the file) and maps to one gRPC status in `grpc::status`.

use std::path::PathBuf;

use crate::shard::ShardId;

/// Why a byte string was refused as a RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {len} bytes, shorter than the 61-byte RecordBatch v2 header")]
    TooShort { len: usize },
    #[error("batch length field says {declared} bytes follow, but {actual} do")]
    LengthMismatch { declared: i64, actual: usize },
    #[error("unsupported magic {magic} (only RecordBatch v2, magic 2, is accepted)")]
    BadMagic { magic: i8 },
    #[error("CRC-32C mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    BadCrc { expected: u32, actual: u32 },
    #[error("invalid lastOffsetDelta {delta} (records count {count})")]
    BadOffsetDelta { delta: i32, count: i32 },
}

/// Errors of the journal library.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("shard {shard}: invalid batch #{index} in append: {source}")]
    InvalidBatch {
        shard: ShardId,
        index: usize,
        #[source]
        source: BatchError,
    },
    #[error("shard {shard}: append of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        shard: ShardId,
        size: usize,
        limit: usize,
    },
    #[error("shard {shard}: empty append (no batches)")]
    EmptyAppend { shard: ShardId },
    #[error(
        "shard {shard}: offset {offset} is out of range (log start {log_start}, log end {log_end})"
    )]
    OffsetOutOfRange {
        shard: ShardId,
        offset: u64,
        log_start: u64,
        log_end: u64,
    },
    #[error(
        "shard {shard}: corrupt data in {path} at byte {position} (near offset {offset}): {reason}"
    )]
    Corrupt {
        shard: ShardId,
        path: PathBuf,
        position: u64,
        offset: u64,
        reason: String,
    },
    #[error("shard {shard}: I/O error while {context}: {source}")]
    Io {
        shard: ShardId,
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {shard} not found on this node")]
    ShardNotFound { shard: ShardId },
    #[error("shard {shard} already exists with a different spec")]
    ShardExists { shard: ShardId },
    #[error("shard {shard}: leader epoch {requested} is fenced (current epoch {current})")]
    FencedEpoch {
        shard: ShardId,
        requested: u64,
        current: u64,
    },
    #[error("shard {shard}: this node is not the leader (leader {leader_id} at {leader_addr:?})")]
    NotLeader {
        shard: ShardId,
        leader_id: u64,
        leader_addr: Option<String>,
    },
    #[error("shard {shard}: cannot truncate to {offset}: {reason}")]
    BadTruncate {
        shard: ShardId,
        offset: u64,
        reason: String,
    },
    #[error("shard {shard} is closed")]
    Closed { shard: ShardId },
    #[error("invalid shard spec for {shard}: {reason}")]
    InvalidSpec { shard: ShardId, reason: String },
}

impl JournalError {
    pub(crate) fn io(shard: &ShardId, context: impl Into<String>, source: std::io::Error) -> Self {
        JournalError::Io {
            shard: shard.clone(),
            context: context.into(),
            source,
        }
    }

    /// A short stable name, used as a metric label and the `x-journal-error` header.
    pub fn kind(&self) -> &'static str {
        match self {
            JournalError::InvalidBatch { .. } | JournalError::EmptyAppend { .. } => "invalid_batch",
            JournalError::TooLarge { .. } => "too_large",
            JournalError::OffsetOutOfRange { .. } => "offset_out_of_range",
            JournalError::Corrupt { .. } => "corrupt",
            JournalError::Io { .. } => "io",
            JournalError::ShardNotFound { .. } => "shard_not_found",
            JournalError::ShardExists { .. } => "shard_exists",
            JournalError::FencedEpoch { .. } => "fenced_epoch",
            JournalError::NotLeader { .. } => "not_leader",
            JournalError::BadTruncate { .. } => "bad_truncate",
            JournalError::Closed { .. } => "closed",
            JournalError::InvalidSpec { .. } => "invalid_spec",
        }
    }
}

pub type Result<T, E = JournalError> = std::result::Result<T, E>;

/// Errors while opening the node's shards at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid shard file: {reason}")]
    BadShardFile { path: PathBuf, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl StartupError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        StartupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

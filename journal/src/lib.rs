//! RobustMQ journal: the storage tier. Every message lands in a shard log here.
//!
//! - [`batch`]: the unit of storage, a Kafka RecordBatch v2, validated on append.
//! - [`log`]: segment files, sparse indexes, start-up recovery.
//! - [`engine`]: the [`engine::ShardLog`] trait with the memory and segment engines.

pub mod batch;
pub mod engine;
pub mod error;
pub mod log;
pub mod shard;

pub use error::{BatchError, JournalError, Result};
pub use shard::{EngineKind, FsyncPolicy, ShardId, ShardSpec};

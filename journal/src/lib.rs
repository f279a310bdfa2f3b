//! RobustMQ journal: the storage tier. Every message lands in a shard log here.
//!
//! - [`batch`]: the unit of storage, a Kafka RecordBatch v2, validated on append.
//! - [`log`]: segment files, sparse indexes, start-up recovery.
//! - [`engine`]: the [`engine::ShardLog`] trait with the memory and segment engines.
//! - [`registry`]: the shards a node holds, their leadership (fencing) and retention.
//! - [`grpc`]: `JournalService` over tonic; [`admin`]: health, metrics, shard list.
//! - [`meta`]: registration, lease heartbeats and shard placement from the meta-service.
//! - [`config`]: the node's YAML + flag + env configuration.

pub mod admin;
pub mod batch;
pub mod config;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod log;
pub mod meta;
pub mod metrics;
pub mod registry;
pub mod shard;

pub use error::{BatchError, JournalError, Result, StartupError};
pub use shard::{DEFAULT_TAIL_CACHE_BYTES, EngineKind, FsyncPolicy, ShardId, ShardSpec};

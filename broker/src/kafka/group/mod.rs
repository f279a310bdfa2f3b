//! The Kafka consumer-group coordinator (classic protocol), as Apache Kafka's
//! GroupCoordinator behaves for JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups and DeleteGroups.
//!
//! - [`state`]: the group state machine (members, generations, rebalances, timers); no
//!   I/O, tested with paused tokio time.
//! - [`coordinator`]: [`GroupCoordinator`], which holds the state behind a mutex (never
//!   across an await), parks delayed JoinGroup/SyncGroup answers on oneshot channels, and
//!   runs the timer and ownership task.
//! - `api/`: one file per API turning a decoded request into state-machine calls and
//!   store calls, and the outcome into a response valid at the request's version.
//! - [`store`]: [`OffsetStore`] implementations: meta (production) and memory (tests).
//!
//! Group membership lives only in the memory of the broker that coordinates the group
//! (`owns(group)`, rendezvous hashing over live brokers); offsets live in meta. When a
//! group moves, this broker drops its state and answers NOT_COORDINATOR; the members find
//! the new coordinator and rejoin there, and nothing is lost because offsets are in meta.

mod api;
pub mod config;
pub mod coordinator;
pub mod state;
pub mod store;

#[cfg(test)]
mod tests;

use kafka_protocol::messages::ApiKey;
use robustmq_proto::meta::{PartitionOffset, TopicPartition};

pub use config::GroupConfig;
pub use coordinator::{ClientInfo, GroupCoordinator};
pub use store::{MemoryOffsetStore, MetaOffsetStore};

/// `(api key, min version, max version)` implemented here, for ApiVersions.
///
/// Ranges are what the clients in use send: the Java client 4.x (JoinGroup 9, SyncGroup 5,
/// OffsetCommit 9, OffsetFetch 9 with `groups`, DescribeGroups 6), librdkafka 2.x, franz-go
/// and kafka-python 2.x (down to JoinGroup 0..2, OffsetCommit 2, OffsetFetch 1). The
/// minimums are the oldest versions `kafka-protocol` decodes. OffsetCommit v9 carries a
/// member epoch only for the consumer protocol (KIP-848); for a classic group it is the
/// generation, as Kafka treats it.
pub const SUPPORTED: &[(i16, i16, i16)] = &[
    (ApiKey::OffsetCommit as i16, 2, 9),
    (ApiKey::OffsetFetch as i16, 1, 9),
    (ApiKey::JoinGroup as i16, 0, 9),
    (ApiKey::Heartbeat as i16, 0, 4),
    (ApiKey::LeaveGroup as i16, 0, 5),
    (ApiKey::SyncGroup as i16, 0, 5),
    (ApiKey::DescribeGroups as i16, 0, 6),
    (ApiKey::ListGroups as i16, 0, 5),
    (ApiKey::DeleteGroups as i16, 0, 2),
];

/// Why the offset store failed.
#[derive(Debug, thiserror::Error)]
pub enum OffsetStoreError {
    /// An unknown topic or partition in a commit; a group without offsets on delete.
    #[error("group {group:?}: not found: {detail}")]
    NotFound { group: String, detail: String },
    /// A request the store refuses as malformed (for meta: an empty or oversized group).
    #[error("group {group:?}: invalid: {detail}")]
    Invalid { group: String, detail: String },
    /// The store could not be reached or failed; worth retrying.
    #[error("offset store call {call} failed: {detail}")]
    Unavailable { call: &'static str, detail: String },
}

/// Where committed offsets live (meta in production; an in-memory map in unit tests).
#[async_trait::async_trait]
pub trait OffsetStore: Send + Sync + 'static {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), OffsetStoreError>;
    /// `partitions` empty = every partition the group has committed.
    async fn fetch(
        &self,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<PartitionOffset>, OffsetStoreError>;
    async fn list_groups(&self) -> Result<Vec<String>, OffsetStoreError>;
    async fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError>;
}

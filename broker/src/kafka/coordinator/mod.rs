//! The Kafka consumer-group coordinator (classic group protocol), as Apache Kafka's
//! GroupCoordinator behaves: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups and DeleteGroups.
//!
//! ```text
//!  connection ──> GroupCoordinator (service: groups in memory, one lock, never held
//!                  │                across an await; bounded waits; `run` for deadlines)
//!                  ├─ membership / offsets / admin   request ↔ state machine ↔ response
//!                  ├─ state (+ messages)             one group's pure state machine
//!                  └─ OffsetStore ── store           offsets in meta, shared by brokers
//! ```
//!
//! Group state lives only in the memory of the broker that coordinates the group (chosen by
//! the caller's `owns`); offsets live in meta. When `owns` turns false the group is dropped
//! and its members get NOT_COORDINATOR, find the new coordinator and rejoin there: nothing
//! is lost because the offsets are in meta.

mod admin;
mod membership;
mod messages;
mod offsets;
mod service;
mod state;
mod store;
#[cfg(test)]
mod tests;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use robustmq_proto::meta::{PartitionOffset, TopicPartition};
use serde::{Deserialize, Serialize};

pub use messages::GroupState;
pub use service::{GroupCoordinator, Owns};
pub use store::{MemoryOffsetStore, MetaOffsetStore};

/// The coordinator's APIs and versions, `(api key, min, max)`, for ApiVersions and the
/// decoder. OffsetCommit stops at v8: v9 exists for the new consumer protocol (member
/// epochs), which this coordinator does not run; classic clients negotiate v8. The minimums
/// are the codec's (Kafka 4 dropped OffsetCommit v0-1 and OffsetFetch v0); older JoinGroup,
/// SyncGroup and friends stay for kafka-python and librdkafka.
pub const SUPPORTED: &[(i16, i16, i16)] = &[
    (ApiKey::OffsetCommit as i16, 2, 8),
    (ApiKey::OffsetFetch as i16, 1, 9),
    (ApiKey::JoinGroup as i16, 0, 9),
    (ApiKey::Heartbeat as i16, 0, 4),
    (ApiKey::LeaveGroup as i16, 0, 5),
    (ApiKey::SyncGroup as i16, 0, 5),
    (ApiKey::DescribeGroups as i16, 0, 5),
    (ApiKey::ListGroups as i16, 0, 5),
    (ApiKey::DeleteGroups as i16, 0, 2),
];

/// Why the offset store failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OffsetStoreError {
    /// A commit named a topic or partition that does not exist (the whole commit is refused).
    #[error("group {group:?}: unknown topic or partition: {detail}")]
    UnknownPartition { group: String, detail: String },
    /// DeleteGroup of a group without committed offsets.
    #[error("group {group:?} has no committed offsets")]
    GroupNotFound { group: String },
    /// The store refused the group id.
    #[error("group {group:?} refused by the offset store: {detail}")]
    Invalid { group: String, detail: String },
    #[error("offset store {call} for group {group:?} failed: {detail}")]
    Unavailable {
        call: &'static str,
        group: String,
        detail: String,
    },
}

/// Where committed offsets live (meta in production; in memory in unit tests).
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

/// Group settings, named after Kafka's broker settings where Kafka has one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms`: shorter session timeouts are refused.
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`: longer session timeouts are refused.
    pub max_session_timeout_ms: u64,
    /// `group.initial.rebalance.delay.ms`: how long a group leaving Empty waits for more
    /// members before its first generation (0 = none).
    pub initial_rebalance_delay_ms: u64,
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub max_metadata_bytes: usize,
    /// How long a group without members stays in memory (its offsets stay in meta).
    pub empty_group_retention_ms: u64,
    /// How often session and rebalance deadlines are checked.
    pub tick_ms: u64,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 300_000,
            initial_rebalance_delay_ms: 3_000,
            max_metadata_bytes: 4096,
            empty_group_retention_ms: 600_000,
            tick_ms: 100,
        }
    }
}

/// Who sent a JoinGroup, from the request header and the connection.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: String,
    /// As Kafka shows it: `/` and the peer's IP address.
    pub client_host: String,
}

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

/// The Kafka error a store failure becomes; COORDINATOR_NOT_AVAILABLE is retriable, so
/// clients retry a meta hiccup instead of failing.
fn store_error(e: &OffsetStoreError) -> ResponseError {
    match e {
        OffsetStoreError::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        OffsetStoreError::GroupNotFound { .. } => ResponseError::GroupIdNotFound,
        OffsetStoreError::Invalid { .. } => ResponseError::InvalidGroupId,
        OffsetStoreError::Unavailable { .. } => ResponseError::CoordinatorNotAvailable,
    }
}

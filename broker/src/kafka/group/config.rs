//! Limits and timers of the group coordinator, with Apache Kafka's broker defaults.

use std::time::Duration;

/// Coordinator settings. `Default` gives Kafka's defaults, except the session timeout
/// ceiling (300 s here, 30 min in Kafka 4) which keeps a dead consumer's partitions from
/// being stuck for half an hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: JoinGroup below it gets INVALID_SESSION_TIMEOUT.
    pub min_session_timeout: Duration,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout: Duration,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members before answering (extended while members keep arriving).
    pub initial_rebalance_delay: Duration,
    /// How long a member that joined but never got a JoinGroup answer may stay parked.
    pub new_member_join_timeout: Duration,
    /// `offset.metadata.max.bytes`: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub max_metadata_bytes: usize,
    /// How long an empty group's in-memory state (generation, protocol type) outlives its
    /// last member. Its offsets stay in meta regardless.
    pub empty_group_retention: Duration,
    /// How often the background task asks whether this broker still coordinates each
    /// group it holds.
    pub ownership_check_interval: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(300),
            initial_rebalance_delay: Duration::from_secs(3),
            new_member_join_timeout: Duration::from_secs(300),
            max_metadata_bytes: 4096,
            empty_group_retention: Duration::from_secs(600),
            ownership_check_interval: Duration::from_secs(1),
        }
    }
}

//! One file per group API: request → state machine and offset store → response that is
//! valid at the request's version (fields a version lacks keep their defaults, which
//! `kafka-protocol` insists on when encoding).

mod delete_groups;
mod describe_groups;
mod heartbeat;
mod join_group;
mod leave_group;
mod list_groups;
mod offset_commit;
mod offset_fetch;
mod sync_group;

use kafka_protocol::ResponseError;
use kafka_protocol::protocol::StrBytes;

use super::OffsetStoreError;

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The single mapping from store failures to Kafka error codes. An unknown topic or
/// partition is the only NotFound a commit can hit; a store that cannot be reached is
/// COORDINATOR_NOT_AVAILABLE, which clients retry after looking the coordinator up again.
fn store_error(e: &OffsetStoreError) -> ResponseError {
    match e {
        OffsetStoreError::NotFound { .. } => ResponseError::UnknownTopicOrPartition,
        OffsetStoreError::Invalid { .. } => ResponseError::InvalidGroupId,
        OffsetStoreError::Unavailable { .. } => ResponseError::CoordinatorNotAvailable,
    }
}

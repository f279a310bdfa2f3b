//! The openraft integration: type config, the segment-file log store, the sled-backed
//! state machine, the tonic network client and the internal Raft service.

// openraft's storage traits fix `StorageError` (over 200 bytes) as the error type, so the
// helpers around them return it as well.
#![allow(clippy::result_large_err)]

mod checksum;
pub mod log_store;
pub mod network;
pub mod segments;
pub mod service;
pub mod state_machine;

use std::io::Cursor;

use openraft::{AnyError, StorageError, StorageIOError};

use crate::store::{Request, Response};

openraft::declare_raft_types!(
    /// Raft types of the meta-service: batches of commands in, one result per command out.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e)).into()
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e)).into()
}

/// Encoding of everything Raft persists or sends: compact and deterministic.
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(v)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(b)
}

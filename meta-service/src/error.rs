//! The meta-service's domain error, carried through Raft responses and forwarded requests,
//! and converted to a gRPC status in exactly one place ([`MetaError::into_status`]).

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// Metadata header carrying the leader's address when a node cannot serve a write.
pub const LEADER_HEADER: &str = "robustmq-leader";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MetaError {
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: String, name: String },
    #[error("{kind} '{name}' not found")]
    NotFound { kind: String, name: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("this node is not the leader (leader: {leader_addr:?})")]
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type MetaResult<T> = Result<T, MetaError>;

impl MetaError {
    pub fn already_exists(kind: &str, name: impl Into<String>) -> Self {
        Self::AlreadyExists {
            kind: kind.into(),
            name: name.into(),
        }
    }

    pub fn not_found(kind: &str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind: kind.into(),
            name: name.into(),
        }
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn precondition(msg: impl Into<String>) -> Self {
        Self::FailedPrecondition(msg.into())
    }

    /// The single conversion from domain errors to gRPC statuses.
    pub fn into_status(self) -> Status {
        let code = match &self {
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::NotFound { .. } => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::NotLeader { .. } | Self::Unavailable(_) => Code::Unavailable,
            Self::Internal(_) => Code::Internal,
        };
        let mut status = Status::new(code, self.to_string());
        if let Self::NotLeader {
            leader_addr: Some(addr),
            ..
        } = &self
            && let Ok(v) = addr.parse()
        {
            status.metadata_mut().insert(LEADER_HEADER, v);
        }
        status
    }
}

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Self {
        e.into_status()
    }
}

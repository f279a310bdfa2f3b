//! The one place where [`JournalError`] becomes a gRPC status. The code follows gRPC
//! conventions; the details a client acts on travel in `x-journal-*` metadata (see
//! `journal.proto`).

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::error::JournalError;

fn put(status: &mut Status, key: &'static str, value: impl ToString) {
    if let Ok(v) = MetadataValue::try_from(value.to_string()) {
        status.metadata_mut().insert(key, v);
    }
}

pub fn to_status(e: &JournalError) -> Status {
    let code = match e {
        JournalError::InvalidBatch { .. }
        | JournalError::EmptyAppend { .. }
        | JournalError::InvalidSpec { .. }
        | JournalError::BadTruncate { .. } => Code::InvalidArgument,
        JournalError::TooLarge { .. } => Code::ResourceExhausted,
        JournalError::OffsetOutOfRange { .. } => Code::OutOfRange,
        JournalError::Corrupt { .. } => Code::DataLoss,
        JournalError::Io { .. } => Code::Internal,
        JournalError::ShardNotFound { .. } => Code::NotFound,
        JournalError::ShardExists { .. } => Code::AlreadyExists,
        JournalError::FencedEpoch { .. } | JournalError::NotLeader { .. } => {
            Code::FailedPrecondition
        }
        JournalError::Closed { .. } => Code::Unavailable,
    };
    let mut status = Status::new(code, e.to_string());
    put(&mut status, "x-journal-error", e.kind());
    match e {
        JournalError::NotLeader {
            leader_id,
            leader_addr,
            ..
        } => {
            put(&mut status, "x-journal-leader-id", leader_id);
            if let Some(a) = leader_addr {
                put(&mut status, "x-journal-leader-addr", a);
            }
        }
        JournalError::FencedEpoch { current, .. } => put(&mut status, "x-journal-epoch", current),
        JournalError::OffsetOutOfRange {
            log_start, log_end, ..
        } => {
            put(&mut status, "x-journal-log-start", log_start);
            put(&mut status, "x-journal-log-end", log_end);
        }
        _ => {}
    }
    status
}

//! Apply logic, one module per domain. Each handler validates everything before its first
//! write, so that a failed command leaves the state untouched.

mod auth;
mod clients;
mod kv;
mod nodes;
mod placement;
mod topics;

pub use topics::{DEFAULT_POLICY, normalize_policy, normalize_topic};

use super::{Command, Output, State};
use crate::error::MetaResult;

pub(super) fn apply(s: &mut State, cmd: &Command, now_ms: u64) -> MetaResult<Output> {
    match cmd {
        Command::RegisterNode { node, lease_ttl_ms } => {
            nodes::register(s, &node.0, *lease_ttl_ms, now_ms)
        }
        Command::Heartbeat {
            role,
            id,
            lease_ttl_ms,
        } => nodes::heartbeat(s, *role, *id, *lease_ttl_ms, now_ms),
        Command::UnregisterNode { role, id } => nodes::unregister(s, *role, *id),
        Command::DrainNode { role, id } => nodes::drain(s, *role, *id),
        Command::Sweep => {
            nodes::expire_leases(s, now_ms);
            clients::expire_sessions(s, now_ms);
            clients::expire_retained(s, now_ms);
            Ok(Output::None)
        }
        Command::PutPolicy { policy, create } => topics::put_policy(s, &policy.0, *create),
        Command::DeletePolicy { name } => topics::delete_policy(s, name),
        Command::CreateTopic { topic } => topics::create_topic(s, &topic.0, now_ms),
        Command::DeleteTopic { name } => topics::delete_topic(s, name),
        Command::AddPartitions { name, shards } => topics::add_partitions(s, name, *shards),
        Command::CommitOffsets { group, offsets } => {
            clients::commit_offsets(s, group, offsets, now_ms)
        }
        Command::DeleteGroup { group } => clients::delete_group(s, group),
        Command::PutSession { session } => clients::put_session(s, &session.0),
        Command::ClaimSession { claim } => clients::claim_session(s, &claim.0, now_ms),
        Command::DeleteSession { client_id } => clients::delete_session(s, client_id),
        Command::SetRetained { message } => clients::set_retained(s, &message.0, now_ms),
        Command::CreateUser { user } => auth::create_user(s, &user.0, now_ms),
        Command::DeleteUser { name } => auth::delete_user(s, name),
        Command::AddAcl { rule } => auth::add_acl(s, &rule.0),
        Command::DeleteAcl { id } => auth::delete_acl(s, *id),
        Command::AllocateProducerIds { count } => kv::allocate_producer_ids(s, *count),
        Command::KvPut {
            key,
            value,
            expected_revision,
        } => kv::put(s, key, value, *expected_revision),
        Command::KvDelete { key } => kv::delete(s, key),
        Command::UpdateSession {
            session,
            expected_owner,
            expected_epoch,
        } => clients::update_session(s, &session.0, *expected_owner, *expected_epoch),
        Command::UpdateSessionWill {
            session,
            holder,
            holder_epoch,
        } => clients::update_session_will(s, &session.0, *holder, *holder_epoch),
    }
}

/// Whether a [`Command::Sweep`] would change anything at `now_ms`.
pub(super) fn needs_sweep(s: &State, now_ms: u64) -> bool {
    nodes::has_lapsed_lease(s, now_ms) || clients::has_expired(s, now_ms)
}

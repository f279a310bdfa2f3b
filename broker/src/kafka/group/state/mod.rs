//! The coordinator's state machine: every group this broker coordinates, driven by
//! requests and by [`Groups::tick`]. Pure in the sense that matters for testing: no I/O,
//! no locks, no sleeping; time comes in as an argument (tokio's `Instant`, so tests pause
//! and advance it), and delayed answers leave through oneshot channels.
//!
//! Ownership (`owns(group)`) and offsets (meta) are the caller's business; this module
//! only answers "is this member allowed to do that now".

mod group;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use tokio::time::Instant;

use group::Group;
pub use group::{
    GroupDescription, GroupState, JoinParams, JoinResult, JoinedMember, LeavingMember,
    MemberDescription, Protocol, Reply, SyncParams, SyncResult,
};

use super::config::GroupConfig;

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// Every group held in memory on this broker.
#[derive(Debug)]
pub struct Groups {
    cfg: GroupConfig,
    groups: HashMap<String, Group>,
}

impl Groups {
    pub fn new(cfg: GroupConfig) -> Self {
        Groups {
            cfg,
            groups: HashMap::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.cfg
    }

    pub fn join(&mut self, now: Instant, p: JoinParams) -> Reply<JoinResult> {
        if p.group_id.is_empty() {
            return Reply::Now(JoinResult::error(
                p.member_id,
                ResponseError::InvalidGroupId,
            ));
        }
        if p.session_timeout < self.cfg.min_session_timeout
            || p.session_timeout > self.cfg.max_session_timeout
        {
            return Reply::Now(JoinResult::error(
                p.member_id,
                ResponseError::InvalidSessionTimeout,
            ));
        }
        let unknown = p.member_id.is_empty();
        let created = !self.groups.contains_key(&p.group_id);
        if created && !unknown {
            // A member of a group this broker does not hold (it moved here, or expired):
            // the client drops its id and joins afresh.
            return Reply::Now(JoinResult::error(
                p.member_id,
                ResponseError::UnknownMemberId,
            ));
        }
        let id = p.group_id.clone();
        let group = self
            .groups
            .entry(id.clone())
            .or_insert_with(|| Group::new(id.clone(), now));
        let reply = if unknown {
            group.join_new_member(now, &self.cfg, p)
        } else {
            group.join_existing_member(now, &self.cfg, p)
        };
        // A join refused on a group it would have created leaves nothing behind.
        if created && group.member_count() == 0 && group.idle_since().is_some() {
            self.groups.remove(&id);
        }
        reply
    }

    pub fn sync(&mut self, now: Instant, p: SyncParams) -> Reply<SyncResult> {
        if p.group_id.is_empty() {
            return Reply::Now(SyncResult::error(ResponseError::InvalidGroupId));
        }
        let Some(group) = self.groups.get_mut(&p.group_id) else {
            return Reply::Now(SyncResult::error(ResponseError::UnknownMemberId));
        };
        group.sync(now, p)
    }

    pub fn heartbeat(
        &mut self,
        now: Instant,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        if group_id.is_empty() {
            return Some(ResponseError::InvalidGroupId);
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(now, member_id, instance_id, generation),
            None => Some(ResponseError::UnknownMemberId),
        }
    }

    /// Per-member results, or a group-level error.
    pub fn leave(
        &mut self,
        now: Instant,
        group_id: &str,
        leaving: &[LeavingMember],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.leave(now, &self.cfg, leaving),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Whether an OffsetCommit may write. A group held nowhere accepts only simple commits
    /// (generation < 0); from v9 a member commit to it gets GROUP_ID_NOT_FOUND, before that
    /// ILLEGAL_GENERATION (as Kafka answers).
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        version: i16,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.groups.get(group_id) {
            Some(g) => g.validate_commit(member_id, instance_id, generation),
            None if generation < 0 => Ok(()),
            None if version >= 9 => Err(ResponseError::GroupIdNotFound),
            None => Err(ResponseError::IllegalGeneration),
        }
    }

    /// Fires every timer due at `now` and forgets groups that have been empty for the
    /// retention time. Returns the next deadline, if any.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        let retention = self.cfg.empty_group_retention;
        for g in self.groups.values_mut() {
            g.tick(now, &self.cfg);
        }
        self.groups.retain(|_, g| {
            g.idle_since()
                .is_none_or(|since| now.saturating_duration_since(since) < retention)
        });
        self.groups
            .values()
            .filter_map(|g| {
                let retire = g.idle_since().map(|since| since + retention);
                [g.next_deadline(), retire].into_iter().flatten().min()
            })
            .min()
    }

    /// The longest rebalance timeout among the group's members (zero if not held): the
    /// bound on how long its join and sync phases can park a request.
    pub fn rebalance_timeout(&self, group_id: &str) -> std::time::Duration {
        self.groups
            .get(group_id)
            .map(|g| g.rebalance_timeout())
            .unwrap_or_default()
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Forgets a group, answering its parked requests with `error` (NOT_COORDINATOR when
    /// the group moved to another broker).
    pub fn drop_group(&mut self, group_id: &str, error: ResponseError) {
        if let Some(mut g) = self.groups.remove(group_id) {
            g.fail_all(error);
            tracing::info!(
                group = group_id,
                generation = g.generation(),
                ?error,
                "dropped group state"
            );
        }
    }

    /// Groups held here and not being deleted.
    pub fn list(&self) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .map(|g| ListedGroup {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state(),
            })
            .collect()
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        self.groups
            .get(group_id)
            .filter(|g| g.state() != GroupState::Dead)
            .map(|g| g.describe())
    }

    /// First half of DeleteGroups: refuses a group with members, else marks it Dead (a
    /// placeholder if it is not held) so that joins and commits racing the deletion of
    /// its offsets are told to retry. Returns whether the group was held in memory.
    pub fn begin_delete(&mut self, now: Instant, group_id: &str) -> Result<bool, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        match self.groups.get_mut(group_id) {
            Some(g) => match g.state() {
                GroupState::Empty => {
                    g.mark_dead(now);
                    Ok(true)
                }
                GroupState::Dead => Err(ResponseError::GroupIdNotFound),
                _ => Err(ResponseError::NonEmptyGroup),
            },
            None => {
                let mut g = Group::new(group_id.to_string(), now);
                g.mark_dead(now);
                self.groups.insert(group_id.to_string(), g);
                Ok(false)
            }
        }
    }

    /// Second half of DeleteGroups: the offsets are gone (or could not be deleted); the
    /// in-memory state goes either way, as an empty group's state is worth nothing.
    pub fn end_delete(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.state() == GroupState::Dead)
        {
            self.groups.remove(group_id);
        }
    }
}

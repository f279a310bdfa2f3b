//! Requests of members already in a generation: SyncGroup, Heartbeat, LeaveGroup, and the
//! check an OffsetCommit must pass.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;
use crate::kafka::group::config::GroupConfig;

impl Group {
    pub fn sync(&mut self, now: Instant, p: SyncParams) -> Reply<SyncResult> {
        let member_id = p.member_id.as_str();
        let fail = |e| Reply::Now(SyncResult::error(e));
        if self.state == GroupState::Empty {
            return fail(ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(e) = self.validate_member(member_id, p.instance_id.as_deref()) {
            return fail(e);
        }
        if p.generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if inconsistent(p.protocol_type.as_deref(), self.protocol_type.as_deref())
            || inconsistent(p.protocol_name.as_deref(), self.protocol_name.as_deref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                // A repeated SyncGroup supersedes the parked one, which still gets an answer.
                if let Some(old) = self
                    .member_mut(member_id)
                    .and_then(|m| m.sync_waiter.replace(tx))
                {
                    let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
                self.pending_sync.remove(member_id);
                if self.pending_sync.is_empty() {
                    self.sync_timer = None;
                }
                if self.is_leader(member_id) {
                    let mut by_member: HashMap<String, Bytes> = p.assignments.into_iter().collect();
                    for m in &mut self.members {
                        m.assignment = by_member.remove(&m.id).unwrap_or_default();
                    }
                    self.propagate_assignment(now, None);
                    self.transition(GroupState::Stable, now);
                }
                Reply::Wait(rx)
            }
            _ => {
                self.pending_sync.remove(member_id);
                if self.pending_sync.is_empty() {
                    self.sync_timer = None;
                }
                let assignment = self
                    .member(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Reply::Now(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                })
            }
        }
    }

    pub(super) fn propagate_assignment(&mut self, now: Instant, error: Option<ResponseError>) {
        let (protocol_type, protocol_name) = match error {
            None => (self.protocol_type.clone(), self.protocol_name.clone()),
            Some(_) => (None, None),
        };
        for m in &mut self.members {
            let result = SyncResult {
                error,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment: m.assignment.clone(),
            };
            if complete_sync(m, result) {
                // The member could not heartbeat while parked; its session restarts now.
                m.session_deadline = Some(now + m.session_timeout);
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        now: Instant,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(e) = self.validate_member(member_id, instance_id) {
            return Some(e);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        let reply = match self.state {
            GroupState::Empty => return Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            _ => None,
        };
        if let Some(m) = self.member_mut(member_id) {
            m.session_deadline = Some(now + m.session_timeout);
        }
        reply
    }

    pub fn leave(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        leaving: &[LeavingMember],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for (member_id, instance_id) in leaving {
            let result = if member_id.is_empty() {
                // An admin removing a static member by instance id alone.
                match instance_id
                    .as_deref()
                    .and_then(|i| self.static_member_id(i))
                {
                    Some(id) => {
                        let id = id.to_string();
                        self.remove(&id);
                        None
                    }
                    None => Some(ResponseError::UnknownMemberId),
                }
            } else if self.pending_join.remove(member_id).is_some() {
                None
            } else {
                match self.validate_member(member_id, instance_id.as_deref()) {
                    Ok(()) => {
                        self.remove(member_id);
                        None
                    }
                    Err(e) => Some(e),
                }
            };
            removed |= result.is_none();
            results.push(result);
        }
        if removed {
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(now, cfg)
                }
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(now),
                _ => {}
            }
        }
        Ok(results)
    }

    /// Kafka's `validateOffsetCommit` for a group that exists.
    pub fn validate_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if self.state != GroupState::Empty {
            // A "simple" commit (no member, no generation) while members own partitions.
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }
}

//! What the admin and offset APIs ask of a group: whether a commit may go ahead, its
//! description, deletion, and letting go of it.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::Group;
use crate::kafka::coordinator::messages::{
    DescribedMember, Description, GroupState, JoinResult, SyncResult,
};

impl Group {
    /// Whether an OffsetCommit may go ahead. A generation below 0 on an Empty group is a
    /// "simple" commit (admin tools, manual assignment); otherwise the member and generation
    /// must be current. Commits stay allowed while PreparingRebalance, since consumers commit
    /// what they processed before rejoining.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        self.tick(now);
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(owner) = instance_id.and_then(|i| self.statics.get(i))
            && owner != member_id
        {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        let idx = self
            .index(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        self.members[idx].last_heartbeat = now;
        Ok(())
    }

    pub fn describe(&self) -> Description {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = self
            .members
            .iter()
            .map(|m| DescribedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        Description {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
        }
    }

    /// DeleteGroups: only an Empty group goes (to Dead, refusing joins while its offsets
    /// are deleted).
    pub fn begin_delete(&mut self) -> Result<(), ResponseError> {
        match self.state {
            GroupState::Empty if self.members.is_empty() => {
                self.state = GroupState::Dead;
                self.pending.clear();
                Ok(())
            }
            GroupState::Dead => Err(ResponseError::GroupIdNotFound),
            _ => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// A placeholder for a group being deleted that was not in memory.
    pub fn dead(now: Instant) -> Self {
        Group {
            state: GroupState::Dead,
            ..Group::new(now, Duration::ZERO)
        }
    }

    /// The group is no longer ours (or the broker stops): every waiting member is told
    /// `error` (NOT_COORDINATOR sends it to find the new coordinator and rejoin there).
    pub fn abandon(&mut self, error: ResponseError) {
        for m in &mut self.members {
            let id = m.id.clone();
            m.answer_join(JoinResult::error(&id, error));
            m.answer_sync(SyncResult::error(error));
        }
        self.members.clear();
        self.statics.clear();
        self.pending.clear();
        self.pending_sync.clear();
        self.leader = None;
        self.state = GroupState::Dead;
    }
}

//! The join phase: members joining (new, pending, static replacement), rebalance
//! preparation and the completion that starts a new generation.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;
use crate::kafka::group::config::GroupConfig;

impl Group {
    pub fn join_new_member(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        p: JoinParams,
    ) -> Reply<JoinResult> {
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                "",
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports_protocols(&p.protocol_type, &p.protocols) {
            return Reply::Now(JoinResult::error(
                "",
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        let prefix = p.instance_id.as_deref().unwrap_or(&p.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(instance) = p.instance_id.clone() {
            if let Some(existing) = self.static_member_id(&instance).map(str::to_string) {
                return Reply::Wait(self.replace_static_member(now, cfg, p, &existing, new_id));
            }
            return Reply::Wait(self.add_member(now, cfg, p, new_id));
        }
        if p.require_known_member_id {
            self.pending_join
                .insert(new_id.clone(), now + p.session_timeout);
            return Reply::Now(JoinResult::error(new_id, ResponseError::MemberIdRequired));
        }
        Reply::Wait(self.add_member(now, cfg, p, new_id))
    }

    pub fn join_existing_member(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        p: JoinParams,
    ) -> Reply<JoinResult> {
        let id = p.member_id.clone();
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports_protocols(&p.protocol_type, &p.protocols) {
            return Reply::Now(JoinResult::error(
                id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        if self.pending_join.contains_key(&id) {
            if p.instance_id.is_some() {
                // Pending ids are only handed to dynamic members.
                return Reply::Now(JoinResult::error(id, ResponseError::UnknownMemberId));
            }
            return Reply::Wait(self.add_member(now, cfg, p, id.clone()));
        }
        if let Err(e) = self.validate_member(&id, p.instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(id, e));
        }
        let unchanged = self.member(&id).is_some_and(|m| m.protocols == p.protocols);
        match self.state {
            GroupState::PreparingRebalance => Reply::Wait(self.update_member(now, cfg, p)),
            GroupState::CompletingRebalance if unchanged => {
                // A retry of a JoinGroup whose response was lost: same generation again.
                let members = if self.is_leader(&id) {
                    self.current_members()
                } else {
                    Vec::new()
                };
                let leader = self.leader.clone().unwrap_or_default();
                Reply::Now(self.success(&id, members, leader))
            }
            GroupState::Stable if unchanged && !self.is_leader(&id) => {
                let leader = self.leader.clone().unwrap_or_default();
                Reply::Now(self.success(&id, Vec::new(), leader))
            }
            // The leader rejoining a stable group forces a rebalance, which lets it react
            // to changes the metadata does not show (new partitions, for consumers).
            GroupState::CompletingRebalance | GroupState::Stable => {
                Reply::Wait(self.update_member(now, cfg, p))
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(id, ResponseError::UnknownMemberId))
            }
        }
    }

    fn add_member(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        p: JoinParams,
        id: String,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let member = Member {
            id,
            instance_id: p.instance_id,
            client_id: p.client_id,
            client_host: p.client_host,
            session_timeout: p.session_timeout,
            rebalance_timeout: p.rebalance_timeout,
            protocol_type: p.protocol_type,
            protocols: p.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            // A parked new member cannot heartbeat and its disconnect is invisible, so its
            // join is bounded separately.
            session_deadline: Some(now + cfg.new_member_join_timeout),
            is_new: true,
        };
        if self.state == GroupState::PreparingRebalance && self.previous_state == GroupState::Empty
        {
            self.new_member_added = true;
        }
        self.add(member);
        self.maybe_prepare_rebalance_or_complete_join(now, cfg);
        rx
    }

    fn update_member(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        p: JoinParams,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.member_mut(&p.member_id) {
            set_join_waiter(m, tx);
            m.protocols = p.protocols;
            m.rebalance_timeout = p.rebalance_timeout;
            m.session_timeout = p.session_timeout;
        }
        self.maybe_prepare_rebalance_or_complete_join(now, cfg);
        rx
    }

    /// A static member rejoined without its member id (a restart): it takes over the old
    /// member's place and assignment under a new id, and the old id is fenced.
    fn replace_static_member(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
        p: JoinParams,
        old_id: &str,
        new_id: String,
    ) -> oneshot::Receiver<JoinResult> {
        let leader_before = self.leader.clone().unwrap_or_default();
        let (tx, rx) = oneshot::channel();
        let Some(m) = self.member_mut(old_id) else {
            let _ = tx.send(JoinResult::error("", ResponseError::UnknownMemberId));
            return rx;
        };
        complete_join(
            m,
            JoinResult::error(old_id, ResponseError::FencedInstanceId),
        );
        complete_sync(m, SyncResult::error(ResponseError::FencedInstanceId));
        m.id = new_id.clone();
        m.session_deadline = Some(now + p.session_timeout);
        m.protocols = p.protocols;
        m.rebalance_timeout = p.rebalance_timeout;
        m.session_timeout = p.session_timeout;
        set_join_waiter(m, tx);
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                // Nothing the assignment depends on changed: answer with the current
                // generation and let the member keep its assignment.
                let result = if p.supports_skip_assignment {
                    let is_leader = self.is_leader(&new_id);
                    let members = if is_leader {
                        self.current_members()
                    } else {
                        Vec::new()
                    };
                    let leader = self.leader.clone().unwrap_or_default();
                    JoinResult {
                        skip_assignment: is_leader,
                        ..self.success(&new_id, members, leader)
                    }
                } else {
                    // An old client must not believe it leads: it would reassign.
                    self.success(&new_id, Vec::new(), leader_before)
                };
                if let Some(m) = self.member_mut(&new_id) {
                    complete_join(m, result);
                }
            }
            GroupState::Stable => self.maybe_prepare_rebalance_or_complete_join(now, cfg),
            // The leader may be assigning with the old id: rebalance so the new id gets
            // an assignment.
            GroupState::CompletingRebalance => self.prepare_rebalance(now, cfg),
            _ => self.maybe_complete_join_phase(now),
        }
        rx
    }

    pub(super) fn maybe_prepare_rebalance_or_complete_join(
        &mut self,
        now: Instant,
        cfg: &GroupConfig,
    ) {
        if self.can_rebalance() {
            self.prepare_rebalance(now, cfg);
        } else {
            self.maybe_complete_join_phase(now);
        }
    }

    pub(super) fn prepare_rebalance(&mut self, now: Instant, cfg: &GroupConfig) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                m.assignment = Bytes::new();
            }
            self.propagate_assignment(now, Some(ResponseError::RebalanceInProgress));
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let initial = self.state == GroupState::Empty;
        if initial {
            let delay = cfg.initial_rebalance_delay;
            self.join_timer = Some(JoinTimer {
                at: now + delay,
                kind: JoinTimerKind::Initial {
                    delay,
                    remaining: self.rebalance_timeout().saturating_sub(delay),
                },
            });
        }
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            from = self.state.as_str(),
            members = self.members.len(),
            "preparing to rebalance"
        );
        self.transition(GroupState::PreparingRebalance, now);
        if !initial {
            if self.all_members_joined() {
                self.complete_join(now);
            } else {
                self.join_timer = Some(JoinTimer {
                    at: now + self.rebalance_timeout(),
                    kind: JoinTimerKind::Complete,
                });
            }
        }
    }

    pub(super) fn maybe_complete_join_phase(&mut self, now: Instant) {
        // The first rebalance of a group ends on its delay timer, not when the first
        // member is "all members".
        if self.state == GroupState::PreparingRebalance
            && self.previous_state != GroupState::Empty
            && self.all_members_joined()
        {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are dropped, the
    /// generation advances and every parked JoinGroup is answered.
    pub(super) fn complete_join(&mut self, now: Instant) {
        self.join_timer = None;
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting_join() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Only static members are left and none rejoined: wait for them (or for their
            // sessions to run out).
            self.join_timer = Some(JoinTimer {
                at: now + self.rebalance_timeout(),
                kind: JoinTimerKind::Complete,
            });
            return;
        }
        self.generation += 1;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now);
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or_default(),
            "join phase complete"
        );
        let all = self.current_members();
        let leader = self.leader.clone().unwrap_or_default();
        let results: Vec<JoinResult> = self
            .members
            .iter()
            .map(|m| {
                let members = if self.is_leader(&m.id) {
                    all.clone()
                } else {
                    Vec::new()
                };
                self.success(&m.id, members, leader.clone())
            })
            .collect();
        for (m, r) in self.members.iter_mut().zip(results) {
            complete_join(m, r);
            m.session_deadline = Some(now + m.session_timeout);
            m.is_new = false;
            self.pending_sync.insert(m.id.clone());
        }
        self.sync_timer = Some((now + self.rebalance_timeout(), self.generation));
    }

    /// Keeps the leader if it rejoined, else picks a member that did; false if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self.member(&leader).is_some_and(Member::awaiting_join) {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }
}

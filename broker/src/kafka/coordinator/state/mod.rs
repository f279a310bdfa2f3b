//! One consumer group's state machine for the classic group protocol, as Apache Kafka's
//! GroupCoordinator runs it:
//!
//! ```text
//!          first join          everyone rejoined or          leader's SyncGroup
//!   Empty ───────────> PreparingRebalance ──────────> CompletingRebalance ───────> Stable
//!     ^                 ^    │    rebalance timeout          │                        │
//!     │   nobody left   │    │                               │ join, leave, expiry,   │
//!     └─────────────────┼────┘                               │ missing SyncGroup      │
//!                       └────────────────────────────────────┴────────────────────────┘
//!   DeleteGroups of an Empty group: Dead, until the offsets are gone and the group is forgotten.
//! ```
//!
//! Pure: no I/O, no locks and no clock (every call takes `now`). Answers that depend on
//! other members (JoinGroup until every member rejoined, a follower's SyncGroup until the
//! leader's) are oneshot senders kept with the member and completed by the transition that
//! decides them. Every such wait comes with a deadline, and [`Group::tick`] at or after that
//! deadline always completes it, so no request waits unbounded. Each event first applies
//! the deadlines that have passed, so answers never depend on how often `tick` runs.
//!
//! Invariants: the leader is a member whenever there are members; `statics` maps each static
//! member's instance id to its current member id; a member is in `pending_sync` only between
//! a completed join and its SyncGroup.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::messages::{
    GroupState, Join, JoinResult, JoinedMember, Protocol, Reply, Sync, SyncResult,
};
use member::Member;

mod admin;
mod member;

/// Kafka's delayed initial rebalance: a group leaving Empty waits a little for more
/// members, so a starting fleet of consumers does not rebalance once per member.
#[derive(Debug)]
struct InitialDelay {
    until: Instant,
    /// Of the rebalance timeout, what further extensions may still use.
    remaining: Duration,
    /// Whether a member joined during this delay (which earns another one).
    new_members: bool,
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order: the first is the default leader.
    members: Vec<Member>,
    statics: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they expire.
    pending: HashMap<String, Instant>,
    pending_sync: HashSet<String>,
    rebalance_deadline: Option<Instant>,
    sync_deadline: Option<Instant>,
    initial: Option<InitialDelay>,
    initial_rebalance_delay: Duration,
    empty_since: Instant,
}

impl Group {
    pub fn new(now: Instant, initial_rebalance_delay: Duration) -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            statics: HashMap::new(),
            pending: HashMap::new(),
            pending_sync: HashSet::new(),
            rebalance_deadline: None,
            sync_deadline: None,
            initial: None,
            initial_rebalance_delay,
            empty_since: now,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or("")
    }

    /// Empty for at least `retention`, with nobody about to join: nothing worth keeping in
    /// memory (offsets live in the store).
    pub fn is_idle(&self, now: Instant, retention: Duration) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.empty_since + retention <= now
    }

    fn index(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == member_id)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// FENCED_INSTANCE_ID when the instance id belongs to another member id, else
    /// UNKNOWN_MEMBER_ID when the member is not in the group.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<usize, ResponseError> {
        if let Some(owner) = instance_id.and_then(|i| self.statics.get(i))
            && owner != member_id
        {
            return Err(ResponseError::FencedInstanceId);
        }
        self.index(member_id).ok_or(ResponseError::UnknownMemberId)
    }

    /// Whether a member with these protocols can be in the group: the first member sets the
    /// protocol type; later ones must share it and at least one protocol with everyone.
    fn supports(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.iter().all(|m| m.supports(&p.name)))
    }

    /// The protocol every member supports that most members prefer; ties go to the one the
    /// first member prefers.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut best: Option<(&str, usize)> = None;
        for candidate in &candidates {
            let votes = self
                .members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .find(|p| candidates.contains(&p.name.as_str()))
                        .is_some_and(|p| p.name == *candidate)
                })
                .count();
            if best.is_none_or(|(_, most)| votes > most) {
                best = Some((candidate, votes));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    fn join_result(&self, member_id: &str, leader: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if member_id == leader {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: leader.to_string(),
            member_id: member_id.to_string(),
            members,
        }
    }

    pub fn join(&mut self, join: Join, now: Instant) -> Reply<JoinResult> {
        self.tick(now);
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::error(
                &join.member_id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.supports(&join.protocol_type, &join.protocols) {
            return Reply::Now(JoinResult::error(
                &join.member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        if join.member_id.is_empty() {
            self.join_new(join, now)
        } else {
            self.join_known(join, now)
        }
    }

    fn join_new(&mut self, join: Join, now: Instant) -> Reply<JoinResult> {
        if let Some(instance) = &join.instance_id {
            return match self.statics.get(instance).cloned() {
                Some(old_id) => self.replace_static(&old_id, join, now),
                None => {
                    let id = join.fresh_id.clone();
                    self.add_member(id, join, now)
                }
            };
        }
        if join.require_known_id {
            // A pending id blocks the rebalance only until its session timeout.
            self.pending
                .insert(join.fresh_id.clone(), now + join.session_timeout);
            return Reply::Now(JoinResult::error(
                &join.fresh_id,
                ResponseError::MemberIdRequired,
            ));
        }
        let id = join.fresh_id.clone();
        self.add_member(id, join, now)
    }

    fn join_known(&mut self, join: Join, now: Instant) -> Reply<JoinResult> {
        if self.pending.remove(&join.member_id).is_some() {
            let id = join.member_id.clone();
            return self.add_member(id, join, now);
        }
        let idx = match self.check_member(&join.member_id, join.instance_id.as_deref()) {
            Ok(idx) => idx,
            Err(e) => return Reply::Now(JoinResult::error(&join.member_id, e)),
        };
        let unchanged = self.members[idx].protocols == join.protocols;
        match self.state {
            GroupState::PreparingRebalance => {
                let rx = self.update_member(idx, join, now);
                self.wait_join(rx, now)
            }
            GroupState::CompletingRebalance if unchanged => {
                // A retried join (the answer was lost): the same answer again.
                let leader = self.leader.clone().unwrap_or_default();
                Reply::Now(self.join_result(&join.member_id, &leader))
            }
            GroupState::Stable if unchanged && !self.is_leader(&join.member_id) => {
                // Nothing changes for a follower: let it SyncGroup for the current generation.
                let leader = self.leader.clone().unwrap_or_default();
                Reply::Now(self.join_result(&join.member_id, &leader))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                // The leader rejoining asks for a new assignment, e.g. after a metadata change.
                let rx = self.update_member(idx, join, now);
                self.prepare_rebalance(now);
                self.wait_join(rx, now)
            }
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinResult::error(
                &join.member_id,
                ResponseError::UnknownMemberId,
            )),
        }
    }

    /// Updates a known member from its JoinGroup and makes it await the join's completion.
    fn update_member(
        &mut self,
        idx: usize,
        join: Join,
        now: Instant,
    ) -> oneshot::Receiver<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let m = &mut self.members[idx];
        // A duplicate join replaces the earlier one, which the client has given up on.
        m.answer_join(JoinResult::error(&m.id, ResponseError::RebalanceInProgress));
        m.protocols = join.protocols;
        m.session_timeout = join.session_timeout;
        m.rebalance_timeout = join.rebalance_timeout;
        m.client_id = join.client_id;
        m.client_host = join.client_host;
        m.last_heartbeat = now;
        m.join_waiter = Some(tx);
        rx
    }

    fn add_member(&mut self, id: String, join: Join, now: Instant) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if self.members.is_empty() {
            self.protocol_type = Some(join.protocol_type.clone());
        }
        if let Some(instance) = &join.instance_id {
            self.statics.insert(instance.clone(), id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        self.members.push(Member {
            id,
            instance_id: join.instance_id,
            client_id: join.client_id,
            client_host: join.client_host,
            session_timeout: join.session_timeout,
            rebalance_timeout: join.rebalance_timeout,
            protocols: join.protocols,
            assignment: Bytes::new(),
            last_heartbeat: now,
            is_new: true,
            join_waiter: Some(tx),
            sync_waiter: None,
        });
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(delay) = &mut self.initial {
                    delay.new_members = true;
                }
            }
            _ => self.prepare_rebalance(now),
        }
        self.wait_join(rx, now)
    }

    /// A static member restarted (it joins without a member id but with a known instance
    /// id): it takes over the old member's place and assignment under a new member id, and
    /// whoever still uses the old id is fenced.
    fn replace_static(&mut self, old_id: &str, join: Join, now: Instant) -> Reply<JoinResult> {
        let Some(idx) = self.index(old_id) else {
            // `statics` only names members; keep going as a new member if it ever does not.
            let id = join.fresh_id.clone();
            return self.add_member(id, join, now);
        };
        let new_id = join.fresh_id.clone();
        let old_leader = self.leader.clone().unwrap_or_default();
        let m = &mut self.members[idx];
        m.answer_join(JoinResult::error(old_id, ResponseError::FencedInstanceId));
        m.answer_sync(SyncResult::error(ResponseError::FencedInstanceId));
        m.id = new_id.clone();
        if let Some(instance) = &join.instance_id {
            self.statics.insert(instance.clone(), new_id.clone());
        }
        if old_leader == old_id {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        let rx = self.update_member(idx, join, now);
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol => {
                // Nothing to reassign. The old leader id is returned on purpose: the
                // restarted member then acts as a follower and SyncGroup hands it the
                // assignment it had, instead of it computing one from an empty member list.
                let result = JoinResult {
                    members: Vec::new(),
                    ..self.join_result(&new_id, &old_leader)
                };
                self.members[idx].answer_join(result);
                self.members[idx].is_new = false;
            }
            GroupState::PreparingRebalance => {}
            // In CompletingRebalance the leader may be assigning to the old id: start over.
            _ => self.prepare_rebalance(now),
        }
        self.wait_join(rx, now)
    }

    fn wait_join(&mut self, rx: oneshot::Receiver<JoinResult>, now: Instant) -> Reply<JoinResult> {
        self.try_complete_join(now);
        Reply::Wait {
            rx,
            until: self.next_deadline().unwrap_or(now),
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                m.assignment = Bytes::new();
                m.answer_sync(SyncResult::error(ResponseError::RebalanceInProgress));
            }
        }
        let from_empty = self.state == GroupState::Empty;
        self.pending_sync.clear();
        self.sync_deadline = None;
        self.state = GroupState::PreparingRebalance;
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        if from_empty && !self.initial_rebalance_delay.is_zero() {
            let delay = self.initial_rebalance_delay.min(timeout);
            self.initial = Some(InitialDelay {
                until: now + delay,
                remaining: timeout - delay,
                new_members: false,
            });
        }
    }

    fn try_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance
            && self.initial.is_none()
            && self.pending.is_empty()
            && self.members.iter().all(|m| m.join_waiter.is_some())
        {
            self.complete_join(now);
        }
    }

    /// Ends PreparingRebalance: dynamic members that did not rejoin are dropped (static ones
    /// keep their place until their session expires), the generation advances and every
    /// waiting member gets its JoinGroup answer.
    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.join_waiter.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.initial = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.empty_since = now;
            return;
        }
        self.protocol = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let answers: Vec<JoinResult> = self
            .members
            .iter()
            .map(|m| self.join_result(&m.id, &leader))
            .collect();
        for (m, answer) in self.members.iter_mut().zip(answers) {
            if m.join_waiter.is_some() {
                m.answer_join(answer);
                m.is_new = false;
                m.last_heartbeat = now;
            }
        }
        self.pending_sync = self.members.iter().map(|m| m.id.clone()).collect();
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = Some(now + timeout);
    }

    /// Takes a member out without any state transition.
    fn remove_member(&mut self, member_id: &str) {
        let Some(idx) = self.index(member_id) else {
            return;
        };
        let mut m = self.members.remove(idx);
        if let Some(instance) = &m.instance_id
            && self.statics.get(instance) == Some(&m.id)
        {
            self.statics.remove(instance);
        }
        if self.is_leader(member_id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.pending_sync.remove(member_id);
        m.answer_join(JoinResult::error(member_id, ResponseError::UnknownMemberId));
        m.answer_sync(SyncResult::error(ResponseError::UnknownMemberId));
    }

    /// Takes a member out and rebalances the others (leave, session expiry).
    fn remove_and_rebalance(&mut self, member_id: &str, now: Instant) {
        self.remove_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub fn sync(&mut self, sync: Sync, now: Instant) -> Reply<SyncResult> {
        self.tick(now);
        if self.state == GroupState::Dead {
            return Reply::Now(SyncResult::error(ResponseError::CoordinatorNotAvailable));
        }
        let idx = match self.check_member(&sync.member_id, sync.instance_id.as_deref()) {
            Ok(idx) => idx,
            Err(e) => return Reply::Now(SyncResult::error(e)),
        };
        if sync.generation != self.generation {
            return Reply::Now(SyncResult::error(ResponseError::IllegalGeneration));
        }
        if sync.protocol_type.is_some() && sync.protocol_type != self.protocol_type
            || sync.protocol_name.is_some() && sync.protocol_name != self.protocol
        {
            return Reply::Now(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResult::error(ResponseError::RebalanceInProgress))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = &mut self.members[idx];
                m.answer_sync(SyncResult::error(ResponseError::RebalanceInProgress));
                m.sync_waiter = Some(tx);
                m.last_heartbeat = now;
                self.pending_sync.remove(&sync.member_id);
                if self.is_leader(&sync.member_id) {
                    self.apply_assignments(sync.assignments);
                }
                Reply::Wait {
                    rx,
                    until: self.next_deadline().unwrap_or(now),
                }
            }
            GroupState::Stable => {
                self.members[idx].last_heartbeat = now;
                self.pending_sync.remove(&sync.member_id);
                Reply::Now(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: self.members[idx].assignment.clone(),
                })
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(SyncResult::error(ResponseError::UnknownMemberId))
            }
        }
    }

    /// The leader's assignments: members it left out get an empty one. The group is Stable
    /// and every member waiting in SyncGroup gets its part.
    fn apply_assignments(&mut self, assignments: Vec<(String, Bytes)>) {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        self.state = GroupState::Stable;
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol.clone();
        for m in &mut self.members {
            m.assignment = by_member.remove(&m.id).unwrap_or_default();
            m.answer_sync(SyncResult {
                error: None,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment: m.assignment.clone(),
            });
        }
    }

    pub fn heartbeat(
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
        let idx = self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        self.members[idx].last_heartbeat = now;
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// One member of a LeaveGroup: by member id, or by instance id for static members
    /// (whose member id may be left empty).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        self.tick(now);
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let id = match instance_id {
            Some(instance) => match self.statics.get(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(owner) if !member_id.is_empty() && owner != member_id => {
                    return Err(ResponseError::FencedInstanceId);
                }
                Some(owner) => owner.clone(),
            },
            None => {
                if self.pending.remove(member_id).is_some() {
                    self.try_complete_join(now);
                    return Ok(());
                }
                self.index(member_id)
                    .ok_or(ResponseError::UnknownMemberId)?;
                member_id.to_string()
            }
        };
        self.remove_and_rebalance(&id, now);
        Ok(())
    }

    /// The earliest moment at which [`Group::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let members = self.members.iter().filter_map(Member::expires_at);
        let rebalance = match self.state {
            GroupState::PreparingRebalance => self.rebalance_deadline,
            _ => None,
        };
        let sync = if self.pending_sync.is_empty() {
            None
        } else {
            self.sync_deadline
        };
        members
            .chain(self.pending.values().copied())
            .chain(self.initial.as_ref().map(|d| d.until))
            .chain(rebalance)
            .chain(sync)
            .min()
    }

    /// Applies every deadline that has passed: expired pending ids and sessions, the
    /// initial delay, the rebalance timeout and members that never sent SyncGroup.
    pub fn tick(&mut self, now: Instant) {
        if self.state == GroupState::Dead {
            return;
        }
        let pending = self.pending.len();
        self.pending.retain(|_, expires| *expires > now);
        if self.pending.len() != pending {
            self.try_complete_join(now);
        }

        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.expires_at().is_some_and(|t| t <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            self.remove_and_rebalance(&id, now);
        }

        if let Some(delay) = &self.initial
            && delay.until <= now
        {
            if delay.new_members && !delay.remaining.is_zero() {
                let extra = self.initial_rebalance_delay.min(delay.remaining);
                self.initial = Some(InitialDelay {
                    until: now + extra,
                    remaining: delay.remaining - extra,
                    new_members: false,
                });
            } else {
                self.initial = None;
                self.complete_join(now);
            }
        }

        if self.state == GroupState::PreparingRebalance
            && self.initial.is_none()
            && self.rebalance_deadline.is_some_and(|d| d <= now)
        {
            self.complete_join(now);
        }

        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && !self.pending_sync.is_empty()
            && self.sync_deadline.is_some_and(|d| d <= now)
        {
            let missing: Vec<String> = self.pending_sync.drain().collect();
            for id in missing {
                self.remove_member(&id);
            }
            self.prepare_rebalance(now);
            self.try_complete_join(now);
        }
    }
}

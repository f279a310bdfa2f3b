//! One classic consumer group: its members, generation, chosen protocol and timers, and
//! the transitions of Apache Kafka's classic group protocol.
//!
//! ```text
//!            join                 all joined / timeout          leader's SyncGroup
//!   Empty ──────────▶ PreparingRebalance ──────────▶ CompletingRebalance ──────────▶ Stable
//!     ▲                 ▲      │ no member left                │                       │
//!     └─────────────────┼──────┘                               │ join, leave, expiry   │
//!                       └──────────────────────────────────────┴───────────────────────┘
//!   any state ──DeleteGroups──▶ Dead
//! ```
//!
//! Invariants: a member is "awaiting join" while it holds a join waiter, and every waiter is
//! completed exactly once (by the join/sync completion, an error, or the member's removal),
//! so a parked request never hangs on the state machine. Timers are plain deadlines that
//! [`super::Groups::tick`] checks; nothing here sleeps.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

mod join;
mod membership;
mod timers;

/// The classic group states, named as Kafka reports them in ListGroups and DescribeGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A protocol a member supports (for consumers: an assignor such as `range`), with the
/// member's opaque metadata for it (its subscription).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The outcome of a JoinGroup, independent of the wire version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    pub fn error(member_id: impl Into<String>, error: ResponseError) -> Self {
        JoinResult {
            error: Some(error),
            member_id: member_id.into(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// The outcome of a SyncGroup, independent of the wire version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> Self {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What a joining member asks for.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a dynamic member without an id gets MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: a rejoining static leader may be told to skip the assignment.
    pub supports_skip_assignment: bool,
}

/// What SyncGroup carries, version-independent.
#[derive(Debug, Clone, Default)]
pub struct SyncParams {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// When the member expires unless it heartbeats; `None` while nothing is scheduled
    /// (a member parked in a rebalance keeps itself alive until the rebalance answers it).
    session_deadline: Option<Instant>,
    /// Joined but has not yet received a JoinGroup response: such a member may expire even
    /// while parked, after the new-member join timeout.
    is_new: bool,
}

impl Member {
    fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    fn awaiting_sync(&self) -> bool {
        self.sync_waiter.is_some()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a parked member is alive, a new one is not.
    fn satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join() || self.awaiting_sync())
    }

    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|x| x.name == p))
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// The member's first preference among the protocols every member supports.
    fn vote<'a>(&'a self, candidates: &HashSet<&str>) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|p| p.name.as_str())
            .find(|p| candidates.contains(p))
    }
}

#[derive(Debug, Clone, Copy)]
enum JoinTimerKind {
    /// The first rebalance of an empty group waits `delay` for more members, again while
    /// new ones keep arriving, up to `remaining` in total.
    Initial {
        delay: Duration,
        remaining: Duration,
    },
    /// Complete the join phase with whoever rejoined.
    Complete,
}

#[derive(Debug, Clone, Copy)]
struct JoinTimer {
    at: Instant,
    kind: JoinTimerKind,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    state: GroupState,
    previous_state: GroupState,
    state_since: Instant,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In join order: the first member becomes the leader.
    members: Vec<Member>,
    /// Dynamic members given an id by MEMBER_ID_REQUIRED, expiring if they do not rejoin.
    pending_join: HashMap<String, Instant>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    join_timer: Option<JoinTimer>,
    /// Deadline for every member's SyncGroup, for the generation it was set in.
    sync_timer: Option<(Instant, i32)>,
    new_member_added: bool,
}

/// A description of a group for DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    /// The chosen protocol, reported only while Stable (as Kafka does).
    pub protocol_data: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// An answer now, or a receiver the state machine completes later (never left pending:
/// see the module invariants).
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// `(member id, group instance id)` as LeaveGroup names a member.
pub type LeavingMember = (String, Option<String>);

impl Group {
    pub fn new(id: String, now: Instant) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            previous_state: GroupState::Dead,
            state_since: now,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending_join: HashMap::new(),
            pending_sync: HashSet::new(),
            join_timer: None,
            sync_timer: None,
            new_member_added: false,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Empty with nobody about to join, for how long.
    pub fn idle_since(&self) -> Option<Instant> {
        (self.state == GroupState::Empty && self.pending_join.is_empty())
            .then_some(self.state_since)
    }

    fn transition(&mut self, to: GroupState, now: Instant) {
        self.previous_state = self.state;
        self.state = to;
        self.state_since = now;
    }

    fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn is_leader(&self, id: &str) -> bool {
        self.leader.as_deref() == Some(id)
    }

    fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.as_str())
    }

    /// The group's rebalance timeout: the longest of its members'.
    pub fn rebalance_timeout(&self) -> Duration {
        self.members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn all_members_joined(&self) -> bool {
        self.pending_join.is_empty() && self.members.iter().all(Member::awaiting_join)
    }

    fn can_rebalance(&self) -> bool {
        matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }

    /// Kafka's `validateMember`: a static member must present the member id currently
    /// bound to its instance id; anyone else must be a member.
    pub fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.static_member_id(instance) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(bound) if bound != member_id => return Err(ResponseError::FencedInstanceId),
                Some(_) => {}
            }
        }
        if self.member(member_id).is_none() {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    fn supporting(&self, protocol: &str) -> usize {
        self.members
            .iter()
            .filter(|m| m.protocols.iter().any(|p| p.name == protocol))
            .count()
    }

    /// Whether a member of `protocol_type` with these protocols can be in the group: an
    /// empty group takes any non-empty offer, otherwise the type must match and one of the
    /// protocols must be supported by every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.supporting(&p.name) == self.members.len())
    }

    /// The protocol every member supports with the most first-preference votes; ties go
    /// to the leader's (first member's) preference order.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let all = self.members.len();
        let candidates: HashSet<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|p| self.supporting(p) == all)
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in &self.members {
            if let Some(v) = m.vote(&candidates) {
                *votes.entry(v).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for p in first.protocols.iter().map(|p| p.name.as_str()) {
            let n = votes.get(p).copied().unwrap_or(0);
            if n > 0 && best.is_none_or(|(_, b)| n > b) {
                best = Some((p, n));
            }
        }
        best.map(|(p, _)| p.to_string())
    }

    fn current_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref();
        self.members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    fn success(&self, member_id: &str, members: Vec<JoinedMember>, leader: String) -> JoinResult {
        JoinResult {
            error: None,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            skip_assignment: false,
            members,
        }
    }

    fn add(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending_join.remove(&member.id);
        self.members.push(member);
    }

    /// Removes a member, answering any request it has parked with UNKNOWN_MEMBER_ID so the
    /// client (if it is still there) rejoins.
    fn remove(&mut self, id: &str) {
        if let Some(i) = self.members.iter().position(|m| m.id == id) {
            let mut m = self.members.remove(i);
            complete_join(
                &mut m,
                JoinResult::error("", ResponseError::UnknownMemberId),
            );
            complete_sync(&mut m, SyncResult::error(ResponseError::UnknownMemberId));
        }
        if self.is_leader(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        self.pending_join.remove(id);
        self.pending_sync.remove(id);
    }

    /// Answers every parked request with `error` (the group is going away from this
    /// broker or being deleted).
    pub fn fail_all(&mut self, error: ResponseError) {
        for m in &mut self.members {
            let id = m.id.clone();
            complete_join(m, JoinResult::error(id, error));
            complete_sync(m, SyncResult::error(error));
        }
    }

    pub fn mark_dead(&mut self, now: Instant) {
        self.fail_all(ResponseError::CoordinatorNotAvailable);
        self.join_timer = None;
        self.sync_timer = None;
        self.transition(GroupState::Dead, now);
    }

    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = self.protocol_name.as_deref().filter(|_| stable);
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_data: protocol.unwrap_or_default().to_string(),
            members: self
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(protocol),
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }
}

/// A SyncGroup's protocol type/name conflicts only if both sides name one.
fn inconsistent(asked: Option<&str>, ours: Option<&str>) -> bool {
    matches!((asked, ours), (Some(a), Some(o)) if a != o)
}

fn set_join_waiter(m: &mut Member, tx: oneshot::Sender<JoinResult>) {
    // A second JoinGroup from the same member supersedes the first (its connection is
    // most likely gone); the first still gets an answer that makes a live client rejoin.
    if let Some(old) = m.join_waiter.replace(tx) {
        let _ = old.send(JoinResult::error(
            m.id.clone(),
            ResponseError::RebalanceInProgress,
        ));
    }
}

fn complete_join(m: &mut Member, result: JoinResult) -> bool {
    match m.join_waiter.take() {
        // The requester may have gone away; the group goes on either way.
        Some(tx) => {
            let _ = tx.send(result);
            true
        }
        None => false,
    }
}

fn complete_sync(m: &mut Member, result: SyncResult) -> bool {
    match m.sync_waiter.take() {
        Some(tx) => {
            let _ = tx.send(result);
            true
        }
        None => false,
    }
}

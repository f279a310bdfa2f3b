//! A meta node as the rest of the service sees it: routes writes to the leader (proposing
//! locally or forwarding), makes reads linearizable, and changes Raft membership.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use robustmq_proto::raft::RaftPayload;
use robustmq_proto::raft::raft_internal_client::RaftInternalClient;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::error::{MetaError, MetaResult};
use crate::metrics::Metrics;
use crate::proposer::{LEADER_WAIT, Proposer};
use crate::raft::network::internal_client;
use crate::raft::state_machine::Shared;
use crate::raft::{NodeId, Raft, RaftMetrics, decode, encode};
use crate::store::{Command, Output, State};

/// What a follower asks of the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    Write(Command),
    /// The log index a linearizable read must wait for.
    ReadIndex,
    AddLearner {
        id: NodeId,
        addr: String,
    },
    PromoteVoter {
        id: NodeId,
    },
    RemoveNode {
        id: NodeId,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardResponse {
    Output(Box<Output>),
    ReadIndex(u64),
    Done,
}

pub struct MetaNode {
    pub id: NodeId,
    pub raft: Raft,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    /// Highest committed log index reported by the log store.
    pub committed: Arc<AtomicU64>,
    proposer: Proposer,
    peers: Mutex<HashMap<String, RaftInternalClient<Channel>>>,
}

impl MetaNode {
    pub fn new(
        id: NodeId,
        raft: Raft,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        committed: Arc<AtomicU64>,
        proposer: Proposer,
    ) -> Self {
        Self {
            id,
            raft,
            shared,
            metrics,
            committed,
            proposer,
            peers: Mutex::new(HashMap::new()),
        }
    }

    pub fn raft_metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// The known leader's id and address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        Some((id, addr))
    }

    async fn wait_for_leader(&self, deadline: Instant) -> MetaResult<(NodeId, String)> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(MetaError::Unavailable("no Raft leader is known".into()));
            }
        }
    }

    fn peer(&self, addr: &str) -> MetaResult<RaftInternalClient<Channel>> {
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let c = internal_client(addr)
            .map_err(|e| MetaError::Unavailable(format!("leader address {addr}: {e}")))?;
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    async fn forward(&self, addr: &str, req: &ForwardRequest) -> MetaResult<ForwardResponse> {
        let data = encode(req).map_err(|e| MetaError::Internal(e.to_string()))?;
        let resp = self
            .peer(addr)?
            .forward(RaftPayload { data: data.into() })
            .await
            .map_err(|s| {
                MetaError::Unavailable(format!(
                    "forwarding to the leader at {addr}: {}",
                    s.message()
                ))
            })?;
        decode::<MetaResult<ForwardResponse>>(&resp.into_inner().data)
            .map_err(|e| MetaError::Internal(format!("undecodable forward reply: {e}")))?
    }

    /// Runs `req` on the leader, wherever it is, retrying across leader changes.
    async fn on_leader(&self, req: ForwardRequest) -> MetaResult<ForwardResponse> {
        let deadline = Instant::now() + LEADER_WAIT;
        let mut last = MetaError::Unavailable("no Raft leader is known".into());
        while Instant::now() < deadline {
            let (leader, addr) = match self.wait_for_leader(deadline).await {
                Ok(l) => l,
                Err(e) => return Err(e),
            };
            let result = if leader == self.id {
                self.handle_forward(req.clone()).await
            } else {
                self.forward(&addr, &req).await
            };
            match result {
                Err(e @ (MetaError::NotLeader { .. } | MetaError::Unavailable(_))) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return r,
            }
        }
        Err(last)
    }

    /// Serves a request as the leader; fails with `NotLeader` on any other node.
    pub async fn handle_forward(&self, req: ForwardRequest) -> MetaResult<ForwardResponse> {
        match req {
            ForwardRequest::Write(cmd) => Ok(ForwardResponse::Output(Box::new(
                self.proposer.propose(cmd).await?,
            ))),
            ForwardRequest::ReadIndex => {
                let (read_log_id, _) = self
                    .raft
                    .get_read_log_id()
                    .await
                    .map_err(|e| self.leader_error(e))?;
                Ok(ForwardResponse::ReadIndex(
                    read_log_id.map_or(0, |l| l.index),
                ))
            }
            ForwardRequest::AddLearner { id, addr } => {
                self.raft
                    .add_learner(id, BasicNode { addr }, true)
                    .await
                    .map_err(|e| membership_error(e.to_string(), e.forward_to_leader()))?;
                Ok(ForwardResponse::Done)
            }
            ForwardRequest::PromoteVoter { id } => {
                self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                    .await
            }
            ForwardRequest::RemoveNode { id } => {
                let voters = self
                    .raft_metrics()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect::<BTreeSet<_>>();
                if voters.contains(&id) {
                    self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                        .await?;
                }
                self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                    .await
            }
        }
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
    ) -> MetaResult<ForwardResponse> {
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| membership_error(e.to_string(), e.forward_to_leader()))?;
        Ok(ForwardResponse::Done)
    }

    fn leader_error(
        &self,
        e: RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>,
    ) -> MetaError {
        match e.forward_to_leader() {
            Some(f) => MetaError::NotLeader {
                leader_id: f.leader_id,
                leader_addr: f.leader_node.clone().map(|n| n.addr),
            },
            None => MetaError::Unavailable(e.to_string()),
        }
    }

    /// Applies one command through Raft, from any node.
    pub async fn write(&self, cmd: Command) -> MetaResult<Output> {
        match self.on_leader(ForwardRequest::Write(cmd)).await? {
            ForwardResponse::Output(o) => Ok(*o),
            other => Err(MetaError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Reads the state; linearizable unless `stale`.
    pub async fn read<T>(&self, stale: bool, f: impl FnOnce(&State) -> T) -> MetaResult<T> {
        if !stale {
            self.linearize().await?;
        }
        let state = self.shared.state.read().expect("state lock");
        Ok(f(&state))
    }

    /// Waits until this node has applied everything committed when the read began,
    /// as confirmed by the current leader.
    pub async fn linearize(&self) -> MetaResult<()> {
        let index = self.read_index().await?;
        if self.shared.last_applied_index.load(Ordering::Relaxed) >= index {
            return Ok(());
        }
        self.wait_applied(index, "linearizable read").await
    }

    /// Changes the membership from any node, and returns once this node's Raft metrics,
    /// which [`Self::members`] reads, show the change: a follower answering for the leader
    /// must not report the membership from before the caller's own change.
    pub async fn membership(&self, req: ForwardRequest) -> MetaResult<()> {
        self.on_leader(req).await?;
        // No shortcut through `last_applied_index`: it moves before the metrics do.
        let index = self.read_index().await?;
        self.wait_applied(index, "membership change").await
    }

    /// The leader's commit index at this moment (Raft's read index).
    async fn read_index(&self) -> MetaResult<u64> {
        match self.on_leader(ForwardRequest::ReadIndex).await? {
            ForwardResponse::ReadIndex(i) => Ok(i),
            other => Err(MetaError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Waits until this node's Raft metrics show `index` applied.
    async fn wait_applied(&self, index: u64, why: &str) -> MetaResult<()> {
        self.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(Some(index), why)
            .await
            .map_err(|e| MetaError::Unavailable(format!("catching up to index {index}: {e}")))?;
        Ok(())
    }

    /// Voters and learners of the current membership, with their addresses.
    pub fn members(&self) -> (BTreeMap<NodeId, String>, BTreeMap<NodeId, String>) {
        let m = self.raft_metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut v = BTreeMap::new();
        let mut l = BTreeMap::new();
        for (id, node) in membership.nodes() {
            if voters.contains(id) {
                v.insert(*id, node.addr.clone());
            } else {
                l.insert(*id, node.addr.clone());
            }
        }
        (v, l)
    }

    /// Ready once a leader is known and everything committed here has been applied.
    pub fn is_ready(&self) -> bool {
        self.leader().is_some()
            && self.shared.last_applied_index.load(Ordering::Relaxed)
                >= self.committed.load(Ordering::Relaxed)
    }
}

fn membership_error(
    msg: String,
    fwd: Option<&openraft::error::ForwardToLeader<NodeId, BasicNode>>,
) -> MetaError {
    match fwd {
        Some(f) => MetaError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.clone().map(|n| n.addr),
        },
        None => MetaError::precondition(msg),
    }
}

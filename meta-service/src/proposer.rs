//! Batches concurrent writes into one Raft entry.
//!
//! Callers queue commands on a bounded channel; one task drains whatever is queued (up to
//! `max_batch`) into a single [`Request`] and proposes it, keeping up to `max_inflight`
//! proposals in flight so that batching never serialises on one Raft round trip. A batch
//! is formed only once a slot is free, so the busier the leader, the larger the entries.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::{MetaError, MetaResult};
use crate::metrics::Metrics;
use crate::raft::{NodeId, Raft};
use crate::store::{Command, Output, Request};

type Reply = oneshot::Sender<MetaResult<Output>>;

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<(Command, Reply)>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Proposer {
    pub fn start(raft: Raft, metrics: Arc<Metrics>, max_batch: usize, max_inflight: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * max_inflight.max(1));
        tokio::spawn(run(
            raft,
            rx,
            metrics,
            max_batch.max(1),
            max_inflight.max(1),
        ));
        Self { tx }
    }

    /// Proposes one command on this node (which must be the leader) and waits for its
    /// result.
    pub async fn propose(&self, cmd: Command) -> MetaResult<Output> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| MetaError::Unavailable("the node is shutting down".into()))?;
        rx.await
            .map_err(|_| MetaError::Unavailable("the proposal was dropped".into()))?
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<(Command, Reply)>,
    metrics: Arc<Metrics>,
    max_batch: usize,
    max_inflight: usize,
) {
    let inflight = Arc::new(Semaphore::new(max_inflight));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot before draining the queue: when idle, the first command is
        // proposed at once; when every slot is busy, everything that arrives meanwhile
        // joins the next entry instead of waiting behind a batch formed too early.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
            let started = Instant::now();
            let result = raft.client_write(Request::new(now_ms(), commands)).await;
            metrics.observe_proposal(started.elapsed(), replies.len());
            drop(permit);
            match result {
                Ok(resp) => {
                    let mut results = resp.data.results.into_iter();
                    for reply in replies {
                        let r = results
                            .next()
                            .unwrap_or_else(|| Err(MetaError::Internal("missing result".into())));
                        let _ = reply.send(r);
                    }
                }
                Err(e) => {
                    let err = write_error(e);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>) -> MetaError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MetaError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            MetaError::precondition(e.to_string())
        }
        RaftError::Fatal(f) => MetaError::Unavailable(f.to_string()),
    }
}

/// How long writes wait for a leader before giving up.
pub const LEADER_WAIT: Duration = Duration::from_secs(5);

//! The internal Raft service: receives openraft RPCs from peers, writes forwarded by
//! followers, and bootstrap probes. Payloads are decoded here and handed to openraft or to
//! the [`MetaNode`].

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use robustmq_proto::raft::raft_internal_server::RaftInternal;
use robustmq_proto::raft::{ProbeRequest, ProbeResponse, RaftPayload};
use tonic::{Request, Response, Status};

use super::{NodeId, TypeConfig, decode, encode};
use crate::node::{ForwardRequest, MetaNode};

pub struct RaftService {
    node: Arc<MetaNode>,
}

impl RaftService {
    pub fn new(node: Arc<MetaNode>) -> Self {
        Self { node }
    }
}

fn bad_payload(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable Raft payload: {e}"))
}

fn reply<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    let data = encode(v).map_err(|e| Status::internal(format!("encoding a Raft reply: {e}")))?;
    Ok(Response::new(RaftPayload { data: data.into() }))
}

#[tonic::async_trait]
impl RaftInternal for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(bad_payload)?;
        reply(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().data).map_err(bad_payload)?;
        reply(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(bad_payload)?;
        reply(&self.node.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let fwd: ForwardRequest = decode(&req.into_inner().data).map_err(bad_payload)?;
        reply(&self.node.handle_forward(fwd).await)
    }

    async fn probe(&self, _req: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        let initialized = self
            .node
            .raft
            .is_initialized()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ProbeResponse {
            node_id: self.node.id,
            initialized,
            leader_id: self.node.leader().map_or(0, |(id, _)| id),
        }))
    }
}

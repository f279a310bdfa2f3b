//! The Raft network client: openraft RPCs carried over the internal tonic service as
//! encoded payloads, on lazily connected channels.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use robustmq_proto::raft::RaftPayload;
use robustmq_proto::raft::raft_internal_client::RaftInternalClient;
use tonic::transport::{Channel, Endpoint};

use super::{NodeId, TypeConfig, decode, encode};

/// Largest Raft message accepted or sent (snapshot chunks are far smaller).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A lazily connecting client of a peer's internal Raft service.
pub fn internal_client(addr: &str) -> Result<RaftInternalClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect_lazy();
    Ok(RaftInternalClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

#[derive(Clone, Default)]
pub struct Network;

pub struct Peer {
    target: NodeId,
    client: Option<RaftInternalClient<Channel>>,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            client: internal_client(&node.addr).ok(),
            addr: node.addr.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("peer {addr}: {msg}")]
struct TransportError {
    addr: String,
    msg: String,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let err = |msg: String, addr: &str| TransportError {
            addr: addr.to_string(),
            msg,
        };
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&err(
                "bad address".into(),
                &self.addr,
            ))));
        };
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = RaftPayload { data: data.into() };
        let fut = async {
            match kind {
                Rpc::Append => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let resp = match tokio::time::timeout(option.hard_ttl(), fut).await {
            Err(_) => {
                return Err(RPCError::Unreachable(Unreachable::new(&err(
                    "timed out".into(),
                    &self.addr,
                ))));
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&err(
                    status.message().to_string(),
                    &self.addr,
                ))));
            }
            Ok(Err(status)) => {
                return Err(RPCError::Network(NetworkError::new(&err(
                    status.message().to_string(),
                    &self.addr,
                ))));
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}

//! The public `MetaService`: translates gRPC requests into commands (writes) and state
//! lookups (reads), and domain results back into responses. Stateless validation happens
//! here so that bad input fails fast with INVALID_ARGUMENT naming the field; everything
//! that depends on state is checked again in apply.

mod layer;

pub use layer::MetricsLayer;

use std::sync::Arc;

use robustmq_proto::meta::meta_service_server::MetaService;
use robustmq_proto::meta::*;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::credentials;
use crate::error::MetaError;
use crate::keys;
use crate::node::{ForwardRequest, MetaNode};
use crate::store::commands::role_from_i32;
use crate::store::{
    Command, Output, Pb, State, mqtt_topic, normalize_policy, normalize_topic, validate,
};
use crate::watch;

/// Most session updates one `UpdateSessions` call may carry.
const MAX_SESSION_UPDATES: usize = 1024;

/// Metadata header selecting a stale (local, non-linearizable) read.
pub const CONSISTENCY_HEADER: &str = "robustmq-consistency";

pub struct MetaGrpc {
    node: Arc<MetaNode>,
    shutdown: CancellationToken,
}

impl MetaGrpc {
    pub fn new(node: Arc<MetaNode>, shutdown: CancellationToken) -> Self {
        Self { node, shutdown }
    }

    async fn write(&self, cmd: Command) -> Result<Output, Status> {
        self.node.write(cmd).await.map_err(Status::from)
    }

    async fn read<R, T>(&self, req: &Request<R>, f: impl FnOnce(&State) -> T) -> Result<T, Status> {
        let stale = req
            .metadata()
            .get(CONSISTENCY_HEADER)
            .is_some_and(|v| v.as_bytes() == b"stale");
        self.node.read(stale, f).await.map_err(Status::from)
    }

    /// A linearizable (or stale) lookup of one object, NOT_FOUND naming it when absent.
    async fn get_one<R, T>(
        &self,
        req: &Request<R>,
        kind: &str,
        name: &str,
        f: impl FnOnce(&State) -> Option<T>,
    ) -> Result<Response<T>, Status> {
        self.read(req, f)
            .await?
            .map(Response::new)
            .ok_or_else(|| not_found(kind, name))
    }

    async fn put_policy(
        &self,
        policy: &StoragePolicy,
        create: bool,
    ) -> Result<Response<StoragePolicy>, Status> {
        let policy = Pb(normalize_policy(policy)?);
        match self.write(Command::PutPolicy { policy, create }).await? {
            Output::Policy(p) => Ok(Response::new(p.0)),
            o => Err(unexpected(o)),
        }
    }

    fn cluster_info(&self) -> ClusterInfo {
        let m = self.node.raft_metrics();
        let (voters, learners) = self.node.members();
        let member = |(id, addr): (u64, String)| Member { id, addr };
        let leader = self.node.leader();
        ClusterInfo {
            node_id: self.node.id,
            leader_id: leader.as_ref().map_or(0, |l| l.0),
            leader_addr: leader.map(|l| l.1).unwrap_or_default(),
            term: m.current_term,
            voters: voters.into_iter().map(member).collect(),
            learners: learners.into_iter().map(member).collect(),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            revision: self
                .node
                .shared
                .state
                .read()
                .expect("state lock")
                .revision(),
        }
    }

    async fn membership(&self, req: ForwardRequest) -> Result<Response<ClusterInfo>, Status> {
        self.node.membership(req).await.map_err(Status::from)?;
        Ok(Response::new(self.cluster_info()))
    }
}

fn unexpected(o: Output) -> Status {
    Status::internal(format!("unexpected command output {o:?}"))
}

fn not_found(kind: &str, name: &str) -> Status {
    MetaError::not_found(kind, name).into_status()
}

fn topic_with_shards(s: &State, name: &str) -> Option<TopicWithShards> {
    let topic = s.get::<Topic>(&keys::topic(name))?;
    Some(TopicWithShards {
        shards: s.list(&keys::shards_of(name)),
        topic: Some(topic),
    })
}

fn empty() -> Response<Empty> {
    Response::new(Empty {})
}

#[tonic::async_trait]
impl MetaService for MetaGrpc {
    async fn get_cluster(
        &self,
        _req: Request<GetClusterRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        Ok(Response::new(self.cluster_info()))
    }

    async fn add_learner(
        &self,
        req: Request<AddLearnerRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        let r = req.into_inner();
        if r.node_id == 0 || r.addr.is_empty() {
            return Err(MetaError::invalid(
                "node_id/addr",
                "a learner needs an id > 0 and an address",
            )
            .into());
        }
        self.membership(ForwardRequest::AddLearner {
            id: r.node_id,
            addr: r.addr,
        })
        .await
    }

    async fn promote_voter(
        &self,
        req: Request<PromoteVoterRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        self.membership(ForwardRequest::PromoteVoter {
            id: req.into_inner().node_id,
        })
        .await
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        self.membership(ForwardRequest::RemoveNode {
            id: req.into_inner().node_id,
        })
        .await
    }

    async fn register_node(
        &self,
        req: Request<RegisterNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let r = req.into_inner();
        let node = Node {
            id: r.id,
            role: r.role,
            addr: r.addr,
            labels: r.labels,
            ..Node::default()
        };
        match self
            .write(Command::RegisterNode {
                node: Pb(node),
                lease_ttl_ms: u64::from(r.lease_ttl_ms),
            })
            .await?
        {
            Output::Node(n) => Ok(Response::new(n.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = req.into_inner();
        match self
            .write(Command::Heartbeat {
                role: r.role,
                id: r.id,
                lease_ttl_ms: u64::from(r.lease_ttl_ms),
            })
            .await?
        {
            Output::Lease {
                expires_at_ms,
                state,
            } => Ok(Response::new(HeartbeatResponse {
                lease_expires_at_ms: expires_at_ms,
                state,
            })),
            o => Err(unexpected(o)),
        }
    }

    async fn unregister_node(&self, req: Request<NodeRef>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        self.write(Command::UnregisterNode {
            role: r.role,
            id: r.id,
        })
        .await?;
        Ok(empty())
    }

    async fn drain_node(&self, req: Request<NodeRef>) -> Result<Response<Node>, Status> {
        let r = req.into_inner();
        match self
            .write(Command::DrainNode {
                role: r.role,
                id: r.id,
            })
            .await?
        {
            Output::Node(n) => Ok(Response::new(n.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn list_nodes(
        &self,
        req: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let role = role_from_i32(req.get_ref().role);
        let resp = self
            .read(&req, |s| {
                let prefix = match role {
                    NodeRole::Unspecified => keys::NODES.to_string(),
                    r => keys::nodes_of(r),
                };
                let nodes = s
                    .list::<Node>(&prefix)
                    .into_iter()
                    .map(|n| {
                        let lease = s.get::<Lease>(&keys::lease(role_from_i32(n.role), n.id));
                        NodeWithLease {
                            lease_expires_at_ms: lease.map_or(0, |l| l.expires_at_ms),
                            node: Some(n),
                        }
                    })
                    .collect();
                ListNodesResponse {
                    nodes,
                    revision: s.revision(),
                }
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn create_policy(
        &self,
        req: Request<StoragePolicy>,
    ) -> Result<Response<StoragePolicy>, Status> {
        self.put_policy(req.get_ref(), true).await
    }

    async fn update_policy(
        &self,
        req: Request<StoragePolicy>,
    ) -> Result<Response<StoragePolicy>, Status> {
        self.put_policy(req.get_ref(), false).await
    }

    async fn get_policy(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<StoragePolicy>, Status> {
        let name = req.get_ref().name.clone();
        self.get_one(&req, "storage policy", &name, |s| {
            s.get::<StoragePolicy>(&keys::policy(&name))
        })
        .await
    }

    async fn list_policies(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<ListPoliciesResponse>, Status> {
        let prefix = keys::policy(&req.get_ref().prefix);
        let resp = self
            .read(&req, |s| ListPoliciesResponse {
                policies: s.list(&prefix),
                revision: s.revision(),
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete_policy(&self, req: Request<NameRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::DeletePolicy {
            name: req.into_inner().name,
        })
        .await?;
        Ok(empty())
    }

    async fn create_topic(&self, req: Request<Topic>) -> Result<Response<TopicWithShards>, Status> {
        let t = normalize_topic(req.get_ref())?;
        match self.write(Command::CreateTopic { topic: Pb(t) }).await? {
            Output::Topic(t) => Ok(Response::new(t.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn get_topic(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<TopicWithShards>, Status> {
        let name = req.get_ref().name.clone();
        self.get_one(&req, "topic", &name, |s| topic_with_shards(s, &name))
            .await
    }

    async fn list_topics(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let prefix = keys::topic(&req.get_ref().prefix);
        let resp = self
            .read(&req, |s| ListTopicsResponse {
                topics: s.list(&prefix),
                revision: s.revision(),
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn delete_topic(&self, req: Request<NameRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::DeleteTopic {
            name: req.into_inner().name,
        })
        .await?;
        Ok(empty())
    }

    async fn add_partitions(
        &self,
        req: Request<AddPartitionsRequest>,
    ) -> Result<Response<TopicWithShards>, Status> {
        let r = req.into_inner();
        match self
            .write(Command::AddPartitions {
                name: r.name,
                shards: r.shards,
            })
            .await?
        {
            Output::Topic(t) => Ok(Response::new(t.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn list_shards(
        &self,
        req: Request<ListShardsRequest>,
    ) -> Result<Response<ListShardsResponse>, Status> {
        let (topic, node) = (req.get_ref().topic.clone(), req.get_ref().journal_node);
        let resp = self
            .read(&req, |s| {
                let prefix = if topic.is_empty() {
                    keys::SHARDS.to_string()
                } else {
                    keys::shards_of(&topic)
                };
                ListShardsResponse {
                    shards: s
                        .list::<ShardPlacement>(&prefix)
                        .into_iter()
                        .filter(|p| node == 0 || p.replicas.contains(&node))
                        .collect(),
                    revision: s.revision(),
                }
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn commit_offsets(
        &self,
        req: Request<CommitOffsetsRequest>,
    ) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        validate::free_key("group", &r.group)?;
        self.write(Command::CommitOffsets {
            group: r.group,
            offsets: r.offsets.into_iter().map(Pb).collect(),
        })
        .await?;
        Ok(empty())
    }

    async fn fetch_offsets(
        &self,
        req: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let r = req.get_ref().clone();
        let offsets = self
            .read(&req, |s| {
                if r.partitions.is_empty() {
                    s.list::<PartitionOffset>(&keys::group_offsets(&r.group))
                } else {
                    r.partitions
                        .iter()
                        .filter_map(|p| {
                            s.get::<PartitionOffset>(&keys::offset(&r.group, &p.topic, p.partition))
                        })
                        .collect()
                }
            })
            .await?;
        Ok(Response::new(FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let prefix = req.get_ref().prefix.clone();
        let groups = self
            .read(&req, |s| {
                let mut groups: Vec<String> = s
                    .scan(keys::OFFSETS)
                    .filter_map(|(k, _)| {
                        k[keys::OFFSETS.len()..]
                            .split('/')
                            .next()
                            .map(keys::unescape)
                    })
                    .filter(|g| g.starts_with(&prefix))
                    .collect();
                groups.dedup();
                groups
            })
            .await?;
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn delete_group(&self, req: Request<NameRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::DeleteGroup {
            group: req.into_inner().name,
        })
        .await?;
        Ok(empty())
    }

    async fn put_session(&self, req: Request<Session>) -> Result<Response<Session>, Status> {
        match self
            .write(Command::PutSession {
                session: Pb(req.into_inner()),
            })
            .await?
        {
            Output::Session(s) => Ok(Response::new(s.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn update_session(
        &self,
        req: Request<UpdateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        match self.write(session_write(req.into_inner())?).await? {
            Output::Session(s) => Ok(Response::new(s.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn update_sessions(
        &self,
        req: Request<UpdateSessionsRequest>,
    ) -> Result<Response<UpdateSessionsResponse>, Status> {
        let updates = req.into_inner().updates;
        if updates.len() > MAX_SESSION_UPDATES {
            return Err(MetaError::invalid(
                "updates",
                format!(
                    "{} updates in one call, at most {MAX_SESSION_UPDATES}",
                    updates.len()
                ),
            )
            .into());
        }
        // Proposed concurrently, so the proposer puts them in as few Raft entries as it
        // can; each keeps its own owner check and result.
        let results = futures::future::join_all(updates.into_iter().map(|u| async move {
            let command = match session_write(u) {
                Ok(c) => c,
                Err(e) => return Status::from(e),
            };
            match self.write(command).await {
                Ok(Output::Session(_)) => Status::ok(""),
                Ok(o) => unexpected(o),
                Err(e) => e,
            }
        }))
        .await;
        Ok(Response::new(UpdateSessionsResponse {
            results: results
                .into_iter()
                .map(|s| UpdateSessionResult {
                    code: s.code() as i32,
                    message: s.message().to_string(),
                })
                .collect(),
        }))
    }

    async fn claim_session(
        &self,
        req: Request<ClaimSessionRequest>,
    ) -> Result<Response<ClaimSessionResponse>, Status> {
        match self
            .write(Command::ClaimSession {
                claim: Pb(req.into_inner()),
            })
            .await?
        {
            Output::Claimed { previous, current } => Ok(Response::new(ClaimSessionResponse {
                previous: previous.map(|p| p.0),
                current: Some(current.0),
            })),
            o => Err(unexpected(o)),
        }
    }

    async fn get_session(&self, req: Request<NameRequest>) -> Result<Response<Session>, Status> {
        let id = req.get_ref().name.clone();
        self.get_one(&req, "session", &id, |s| {
            s.get::<Session>(&keys::session(&id))
        })
        .await
    }

    async fn delete_session(&self, req: Request<NameRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::DeleteSession {
            client_id: req.into_inner().name,
        })
        .await?;
        Ok(empty())
    }

    async fn list_sessions(
        &self,
        req: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let (owner, holder) = (req.get_ref().owner_broker, req.get_ref().will_holder);
        let sessions = self
            .read(&req, |s| {
                s.list::<Session>(keys::SESSIONS)
                    .into_iter()
                    .filter(|x| owner == 0 || x.owner_broker == owner)
                    .filter(|x| holder == 0 || x.will_holder == holder)
                    .collect()
            })
            .await?;
        Ok(Response::new(ListSessionsResponse { sessions }))
    }

    async fn set_retained(&self, req: Request<RetainedMessage>) -> Result<Response<Empty>, Status> {
        self.write(Command::SetRetained {
            message: Pb(req.into_inner()),
        })
        .await?;
        Ok(empty())
    }

    async fn get_retained(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<RetainedMessage>, Status> {
        let topic = req.get_ref().name.clone();
        self.get_one(&req, "retained message", &topic, |s| {
            s.get::<RetainedMessage>(&keys::retained(&topic))
        })
        .await
    }

    async fn match_retained(
        &self,
        req: Request<MatchRetainedRequest>,
    ) -> Result<Response<MatchRetainedResponse>, Status> {
        let filter = req.get_ref().filter.clone();
        mqtt_topic::validate_filter("filter", &filter)?;
        let messages = self
            .read(&req, |s| {
                s.list::<RetainedMessage>(keys::RETAINED)
                    .into_iter()
                    .filter(|m| mqtt_topic::matches(&filter, &m.topic))
                    .collect()
            })
            .await?;
        Ok(Response::new(MatchRetainedResponse { messages }))
    }

    async fn create_user(&self, req: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        let r = req.into_inner();
        validate::user_name(&r.name)?;
        if r.password.is_empty() {
            return Err(MetaError::invalid("password", "must not be empty").into());
        }
        // Salting and hashing happen before proposing: apply must stay deterministic.
        let password = r.password;
        let credentials =
            tokio::task::spawn_blocking(move || credentials::derive_credentials(&password))
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
        let user = User {
            name: r.name,
            credentials,
            superuser: r.superuser,
            created_at_ms: 0,
        };
        match self.write(Command::CreateUser { user: Pb(user) }).await? {
            Output::User(u) => Ok(Response::new(u.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn delete_user(&self, req: Request<NameRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::DeleteUser {
            name: req.into_inner().name,
        })
        .await?;
        Ok(empty())
    }

    async fn get_user(&self, req: Request<NameRequest>) -> Result<Response<User>, Status> {
        let name = req.get_ref().name.clone();
        self.get_one(&req, "user", &name, |s| s.get::<User>(&keys::user(&name)))
            .await
    }

    async fn list_users(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let prefix = keys::user(&req.get_ref().prefix);
        let users = self
            .read(&req, |s| {
                s.list::<User>(&prefix)
                    .into_iter()
                    .map(|u| User {
                        credentials: vec![],
                        ..u
                    })
                    .collect()
            })
            .await?;
        Ok(Response::new(ListUsersResponse { users }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let name = req.get_ref().name.clone();
        let user = self
            .read(&req, |s| s.get::<User>(&keys::user(&name)))
            .await?;
        let password = req.into_inner().password;
        let Some(user) = user else {
            return Ok(Response::new(AuthenticateResponse::default()));
        };
        let superuser = user.superuser;
        let ok = tokio::task::spawn_blocking(move || {
            user.credentials
                .first()
                .is_some_and(|c| credentials::verify(c, &password))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(AuthenticateResponse {
            ok,
            superuser: ok && superuser,
        }))
    }

    async fn add_acl(&self, req: Request<AclRule>) -> Result<Response<AclRule>, Status> {
        match self
            .write(Command::AddAcl {
                rule: Pb(req.into_inner()),
            })
            .await?
        {
            Output::Acl(r) => Ok(Response::new(r.0)),
            o => Err(unexpected(o)),
        }
    }

    async fn delete_acl(&self, req: Request<DeleteAclRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::DeleteAcl {
            id: req.into_inner().id,
        })
        .await?;
        Ok(empty())
    }

    async fn list_acls(
        &self,
        req: Request<ListRequest>,
    ) -> Result<Response<ListAclsResponse>, Status> {
        let principal = req.get_ref().prefix.clone();
        let resp = self
            .read(&req, |s| ListAclsResponse {
                rules: s
                    .list::<AclRule>(keys::ACLS)
                    .into_iter()
                    .filter(|r| principal.is_empty() || r.principal == principal)
                    .collect(),
                revision: s.revision(),
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn allocate_producer_ids(
        &self,
        req: Request<AllocateProducerIdsRequest>,
    ) -> Result<Response<AllocateProducerIdsResponse>, Status> {
        match self
            .write(Command::AllocateProducerIds {
                count: req.into_inner().count,
            })
            .await?
        {
            Output::ProducerIds { first_id, count } => {
                Ok(Response::new(AllocateProducerIdsResponse {
                    first_id,
                    count,
                }))
            }
            o => Err(unexpected(o)),
        }
    }

    async fn kv_put(&self, req: Request<KvPutRequest>) -> Result<Response<KvPutResponse>, Status> {
        let r = req.into_inner();
        validate::free_key("key", &r.key)?;
        match self
            .write(Command::KvPut {
                key: r.key,
                value: r.value.to_vec(),
                expected_revision: r.expected_revision,
            })
            .await?
        {
            Output::Revision(revision) => Ok(Response::new(KvPutResponse { revision })),
            o => Err(unexpected(o)),
        }
    }

    async fn kv_get(&self, req: Request<KvGetRequest>) -> Result<Response<KvGetResponse>, Status> {
        let key = keys::kv(&req.get_ref().key);
        let resp = self
            .read(&req, |s| match s.get_raw(&key) {
                Some(v) => KvGetResponse {
                    found: true,
                    value: v.data.clone(),
                    mod_revision: v.mod_revision,
                },
                None => KvGetResponse::default(),
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn kv_delete(&self, req: Request<KvGetRequest>) -> Result<Response<Empty>, Status> {
        self.write(Command::KvDelete {
            key: req.into_inner().key,
        })
        .await?;
        Ok(empty())
    }

    async fn kv_list(
        &self,
        req: Request<KvListRequest>,
    ) -> Result<Response<KvListResponse>, Status> {
        let prefix = keys::kv(&req.get_ref().prefix);
        let limit = match req.get_ref().limit {
            0 => usize::MAX,
            n => n as usize,
        };
        let resp = self
            .read(&req, |s| KvListResponse {
                entries: s
                    .scan(&prefix)
                    .take(limit)
                    .map(|(k, v)| KvEntry {
                        key: k[keys::KV.len()..].to_string(),
                        value: v.data.clone(),
                        mod_revision: v.mod_revision,
                    })
                    .collect(),
                revision: s.revision(),
            })
            .await?;
        Ok(Response::new(resp))
    }

    type WatchStream = watch::WatchStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = req.into_inner();
        Ok(Response::new(watch::start(
            self.node.shared.clone(),
            r.prefix,
            r.from_revision,
            self.shutdown.clone(),
        )))
    }
}

/// The command for a conditional session write: on the owner, or on the holder of a
/// pending will (never both).
fn session_write(u: UpdateSessionRequest) -> Result<Command, MetaError> {
    let Some(session) = u.session else {
        return Err(MetaError::invalid("session", "required"));
    };
    match (u.expected_owner, u.expected_will_holder) {
        (0, holder) if holder != 0 => Ok(Command::UpdateSessionWill {
            session: Pb(session),
            holder,
            holder_epoch: u.expected_will_holder_epoch,
        }),
        (_, 0) => Ok(Command::UpdateSession {
            session: Pb(session),
            expected_owner: u.expected_owner,
            expected_epoch: u.expected_epoch,
        }),
        _ => Err(MetaError::invalid(
            "expected_will_holder",
            "a write is conditional on the owner or on the will holder, not both",
        )),
    }
}

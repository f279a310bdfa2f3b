//! Working with the meta-service (`proto/proto/meta.proto`): the node registers itself
//! (role JOURNAL, its gRPC address), heartbeats its lease, and follows its shard
//! placements so that local shards match what meta assigns.
//!
//! Placement follows the list-then-watch pattern: `ListShards(journal_node = self)` gives
//! the full set and a revision; local meta-owned shards are created, updated or deleted to
//! match; then `Watch("shards/", revision + 1)` streams changes. A `compacted` response or
//! a broken stream leads back to a fresh list. Each placement's `leader` and `epoch` are
//! handed to the shard registry, which fences appends with them. Shards created locally
//! (CreateShard RPC, [`Origin::Local`]) are never deleted by reconciliation.
//!
//! A new shard's storage spec comes from its topic's StoragePolicy (`GetTopic`, then
//! `GetPolicy`), falling back to the node defaults when meta has none. The `object` engine
//! is not implemented yet; such shards use the segment engine and a warning says so.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use robustmq_proto::meta as pb;
use robustmq_proto::meta::meta_service_client::MetaServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::registry::{Leadership, NodeDirectory, Origin, ShardManager};
use crate::shard::{EngineKind, FsyncPolicy, ShardId, ShardSpec};

const SHARDS_PREFIX: &str = "shards/";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_millis(500);

/// Errors talking to meta. They are logged and retried, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("meta endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("meta call {call} failed: {status}")]
    Call {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("meta call {call} timed out")]
    Timeout { call: &'static str },
    #[error("meta watch on {prefix:?} ended")]
    WatchEnded { prefix: &'static str },
}

/// The node's link to meta.
pub struct MetaLink {
    client: MetaServiceClient<Channel>,
    node_id: u64,
    addr: String,
    lease_ttl_ms: u32,
    shards: Arc<ShardManager>,
    nodes: Mutex<HashMap<u64, String>>,
}

async fn call<T>(
    name: &'static str,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, MetaError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Err(_) => Err(MetaError::Timeout { call: name }),
        Ok(Err(status)) => Err(MetaError::Call { call: name, status }),
        Ok(Ok(r)) => Ok(r.into_inner()),
    }
}

impl MetaLink {
    /// Builds a lazily connecting client balanced over `endpoints` (any meta node answers).
    pub fn new(
        endpoints: &[String],
        node_id: u64,
        addr: String,
        lease_ttl_ms: u32,
        shards: Arc<ShardManager>,
    ) -> Result<Arc<MetaLink>, MetaError> {
        let mut eps = Vec::new();
        for e in endpoints {
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let ep = Endpoint::from_shared(url)
                .map_err(|err| MetaError::BadEndpoint {
                    endpoint: e.clone(),
                    reason: err.to_string(),
                })?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true);
            eps.push(ep);
        }
        let channel = Channel::balance_list(eps.into_iter());
        Ok(Arc::new(MetaLink {
            client: MetaServiceClient::new(channel),
            node_id,
            addr,
            lease_ttl_ms,
            shards,
            nodes: Mutex::new(HashMap::new()),
        }))
    }

    async fn register(&self) -> Result<(), MetaError> {
        let node = call(
            "RegisterNode",
            self.client.clone().register_node(pb::RegisterNodeRequest {
                id: self.node_id,
                role: pb::NodeRole::Journal as i32,
                addr: self.addr.clone(),
                lease_ttl_ms: self.lease_ttl_ms,
                labels: HashMap::new(),
            }),
        )
        .await?;
        tracing::info!(node_id = node.id, addr = %node.addr, "registered with meta");
        Ok(())
    }

    /// Registers, then heartbeats every third of the lease; re-registers when meta says
    /// the lease expired or forgot the node. Sets `registered` after the first success.
    pub async fn run_lease(
        self: Arc<Self>,
        registered: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) {
        let every = Duration::from_millis((self.lease_ttl_ms / 3).max(200) as u64);
        let mut need_register = true;
        loop {
            if need_register {
                match self.register().await {
                    Ok(()) => {
                        need_register = false;
                        registered.store(true, Ordering::Release);
                    }
                    Err(e) => tracing::warn!(error = %e, "registering with meta"),
                }
            } else {
                let hb = call(
                    "Heartbeat",
                    self.client.clone().heartbeat(pb::HeartbeatRequest {
                        role: pb::NodeRole::Journal as i32,
                        id: self.node_id,
                        lease_ttl_ms: self.lease_ttl_ms,
                    }),
                )
                .await;
                match hb {
                    Ok(r) if r.state == pb::NodeState::Expired as i32 => {
                        tracing::warn!("meta says our lease expired; registering again");
                        need_register = true;
                    }
                    Ok(_) => {}
                    Err(MetaError::Call { status, .. })
                        if status.code() == tonic::Code::NotFound =>
                    {
                        tracing::warn!("meta does not know this node; registering again");
                        need_register = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat"),
                }
            }
            let wait = if need_register { RETRY } else { every };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // No UnregisterNode on shutdown: meta evicts an unregistered node from every
        // replica set, and a restart (rolling update) must come back to its shards. The
        // lease lapses instead, which moves only leaderships. Removing a node for good is
        // DrainNode's job (the operator's).
    }

    /// Lists then watches placements until cancelled; sets `synced` after the first full
    /// reconciliation.
    pub async fn run_placements(
        self: Arc<Self>,
        registered: Arc<AtomicBool>,
        synced: Arc<AtomicBool>,
        cancel: CancellationToken,
    ) {
        while !registered.load(Ordering::Acquire) {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        loop {
            let r = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.list_and_watch(&synced) => r,
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "shard placement sync; listing again");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    async fn list_and_watch(&self, synced: &AtomicBool) -> Result<(), MetaError> {
        let list = call(
            "ListShards",
            self.client.clone().list_shards(pb::ListShardsRequest {
                topic: String::new(),
                journal_node: self.node_id,
            }),
        )
        .await?;
        self.reconcile(&list.shards).await;
        synced.store(true, Ordering::Release);
        let mut stream = call(
            "Watch",
            self.client.clone().watch(pb::WatchRequest {
                prefix: SHARDS_PREFIX.to_string(),
                from_revision: list.revision + 1,
            }),
        )
        .await?;
        loop {
            let msg = stream.message().await.map_err(|status| MetaError::Call {
                call: "Watch",
                status,
            })?;
            let Some(resp) = msg else {
                return Err(MetaError::WatchEnded {
                    prefix: SHARDS_PREFIX,
                });
            };
            if resp.compacted {
                tracing::info!(
                    revision = resp.revision,
                    "watch history compacted; re-listing"
                );
                return Ok(());
            }
            for ev in resp.events {
                self.apply_event(ev).await;
            }
        }
    }

    fn holds(&self, p: &pb::ShardPlacement) -> bool {
        p.replicas.contains(&self.node_id)
    }

    /// Makes local meta-owned shards match `placements` (already filtered to this node).
    async fn reconcile(&self, placements: &[pb::ShardPlacement]) {
        let mut wanted = HashSet::new();
        for p in placements.iter().filter(|p| self.holds(p)) {
            wanted.insert(ShardId::new(p.topic.clone(), p.shard));
            self.ensure(p).await;
        }
        for h in self.shards.list() {
            if h.origin == Origin::Meta && !wanted.contains(&h.id) {
                self.remove(&h.id).await;
            }
        }
    }

    async fn apply_event(&self, ev: pb::WatchEvent) {
        if ev.kind == pb::EventKind::Delete as i32 {
            if let Some(id) = parse_shard_key(&ev.key) {
                self.remove(&id).await;
            }
            return;
        }
        match pb::ShardPlacement::decode(ev.value.clone()) {
            Ok(p) if self.holds(&p) => self.ensure(&p).await,
            Ok(p) => self.remove(&ShardId::new(p.topic, p.shard)).await,
            Err(e) => tracing::warn!(key = %ev.key, error = %e, "undecodable shard placement"),
        }
    }

    async fn ensure(&self, p: &pb::ShardPlacement) {
        let id = ShardId::new(p.topic.clone(), p.shard);
        let leadership = Leadership {
            leader: p.leader,
            epoch: p.epoch,
        };
        if let Ok(h) = self.shards.get(&id) {
            if let Err(e) = self.shards.update_leadership(&h, leadership) {
                tracing::error!(shard = %id, error = %e, "updating leadership");
            }
            return;
        }
        let spec = self.spec_for_topic(&p.topic).await;
        if let Err(e) = self
            .shards
            .create(id.clone(), spec, p.leader, p.epoch, Origin::Meta)
            .await
        {
            tracing::error!(shard = %id, error = %e, "creating a shard meta placed here");
        }
    }

    async fn remove(&self, id: &ShardId) {
        let Ok(h) = self.shards.get(id) else { return };
        if h.origin != Origin::Meta {
            return;
        }
        if let Err(e) = self.shards.delete(id).await {
            tracing::error!(shard = %id, error = %e, "deleting a shard meta moved away");
        }
    }

    /// The spec from the topic's storage policy, or node defaults where meta has none.
    async fn spec_for_topic(&self, topic: &str) -> ShardSpec {
        let defaults = self.shards.defaults().clone();
        let t = match call(
            "GetTopic",
            self.client.clone().get_topic(pb::NameRequest {
                name: topic.to_string(),
            }),
        )
        .await
        {
            Ok(t) => t.topic.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(topic, error = %e, "no topic in meta; using default shard spec");
                return defaults;
            }
        };
        let policy_name = if t.storage_policy.is_empty() {
            "default".to_string()
        } else {
            t.storage_policy.clone()
        };
        let policy = call(
            "GetPolicy",
            self.client.clone().get_policy(pb::NameRequest {
                name: policy_name.clone(),
            }),
        )
        .await;
        let policy = match policy {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(topic, policy = %policy_name, error = %e,
                    "storage policy unavailable; using default shard spec");
                pb::StoragePolicy::default()
            }
        };
        spec_from_policy(topic, &t, &policy, defaults)
    }
}

/// Combines node defaults, a StoragePolicy and a topic's retention override.
pub fn spec_from_policy(
    topic: &str,
    t: &pb::Topic,
    p: &pb::StoragePolicy,
    mut spec: ShardSpec,
) -> ShardSpec {
    match pb::Engine::try_from(p.engine) {
        Ok(pb::Engine::Memory) => spec.engine = EngineKind::Memory,
        Ok(pb::Engine::Segment) => spec.engine = EngineKind::Segment,
        Ok(pb::Engine::Object) => {
            tracing::warn!(topic, "object engine not implemented yet; using segment");
            spec.engine = EngineKind::Segment;
        }
        _ => {}
    }
    match pb::Fsync::try_from(p.fsync) {
        Ok(pb::Fsync::Always) => spec.fsync = FsyncPolicy::Always,
        Ok(pb::Fsync::Never) => spec.fsync = FsyncPolicy::Never,
        Ok(pb::Fsync::Interval) => {
            spec.fsync = FsyncPolicy::Interval {
                ms: p.fsync_interval_ms.max(1),
            }
        }
        _ => {}
    }
    if let Some(r) = t.retention.as_ref().or(p.retention.as_ref()) {
        spec.retention_ms = r.time_ms;
        spec.retention_bytes = r.bytes;
    }
    if p.memory_max_bytes > 0 {
        spec.memory_max_bytes = p.memory_max_bytes;
    }
    spec
}

/// `shards/{topic}/{shard:06}` → the shard. The topic may itself contain '/', so the
/// index is taken from the last component.
pub fn parse_shard_key(key: &str) -> Option<ShardId> {
    let rest = key.strip_prefix(SHARDS_PREFIX)?;
    let (topic, idx) = rest.rsplit_once('/')?;
    if topic.is_empty() {
        return None;
    }
    Some(ShardId::new(topic, idx.parse().ok()?))
}

#[async_trait]
impl NodeDirectory for MetaLink {
    async fn addr_of(&self, node_id: u64) -> Option<String> {
        if let Some(a) = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node_id)
        {
            return Some(a.clone());
        }
        let list = call(
            "ListNodes",
            self.client.clone().list_nodes(pb::ListNodesRequest {
                role: pb::NodeRole::Journal as i32,
            }),
        )
        .await
        .ok()?;
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        for n in list.nodes.into_iter().filter_map(|n| n.node) {
            nodes.insert(n.id, n.addr);
        }
        nodes.get(&node_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_parse_from_the_right() {
        assert_eq!(
            parse_shard_key("shards/orders/000003"),
            Some(ShardId::new("orders", 3))
        );
        assert_eq!(
            parse_shard_key("shards/a/b/000010"),
            Some(ShardId::new("a/b", 10))
        );
        assert_eq!(parse_shard_key("shards/000001"), None);
        assert_eq!(parse_shard_key("topics/x"), None);
        assert_eq!(parse_shard_key("shards/x/notanumber"), None);
    }

    #[test]
    fn topic_retention_overrides_the_policy() {
        let policy = pb::StoragePolicy {
            engine: pb::Engine::Memory as i32,
            fsync: pb::Fsync::Interval as i32,
            fsync_interval_ms: 50,
            retention: Some(pb::Retention {
                time_ms: 1000,
                bytes: 2000,
            }),
            memory_max_bytes: 4096,
            ..Default::default()
        };
        let topic = pb::Topic {
            retention: Some(pb::Retention {
                time_ms: 5,
                bytes: 0,
            }),
            ..Default::default()
        };
        let s = spec_from_policy("t", &topic, &policy, ShardSpec::default());
        assert_eq!(s.engine, EngineKind::Memory);
        assert_eq!(s.fsync, FsyncPolicy::Interval { ms: 50 });
        assert_eq!((s.retention_ms, s.retention_bytes), (5, 0));
        assert_eq!(s.memory_max_bytes, 4096);
        let s = spec_from_policy("t", &pb::Topic::default(), &policy, ShardSpec::default());
        assert_eq!((s.retention_ms, s.retention_bytes), (1000, 2000));
    }
}

//! The broker's link to the meta-service: a cheap-to-clone [`MetaClient`], node
//! registration with lease heartbeats, and [`TopicRoutes`], the cache of topics that bind
//! an MQTT filter, which decides where a publish is stored and which shards to tail.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mqtt_codec::topic;
use robustmq_proto::meta::meta_service_client::MetaServiceClient;
use robustmq_proto::meta::{
    HeartbeatRequest, ListNodesRequest, ListRequest, Node, NodeRole, RegisterNodeRequest, Topic,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::error::{BrokerError, Result};

/// A meta-service client over one lazily connected channel.
#[derive(Clone)]
pub struct MetaClient {
    channel: Channel,
}

impl MetaClient {
    /// Connects lazily: the first call dials, and a failed call redials.
    pub fn new(addr: &str) -> Result<Self> {
        let uri = if addr.starts_with("http") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| BrokerError::Config(format!("meta address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(MetaClient { channel })
    }

    pub fn client(&self) -> MetaServiceClient<Channel> {
        MetaServiceClient::new(self.channel.clone())
    }

    /// Every broker meta knows, each with its state (alive, expired, ...).
    pub async fn broker_nodes(&self) -> std::result::Result<Vec<Node>, tonic::Status> {
        Ok(self
            .client()
            .list_nodes(ListNodesRequest {
                role: NodeRole::Broker as i32,
            })
            .await?
            .into_inner()
            .nodes
            .into_iter()
            .filter_map(|n| n.node)
            .collect())
    }
}

/// Registers the broker and keeps its lease alive until cancelled.
pub async fn run_lease(
    meta: MetaClient,
    node_id: u64,
    addr: String,
    labels: std::collections::HashMap<String, String>,
    ttl_ms: u32,
    cancel: CancellationToken,
) {
    let mut registered = false;
    let every = Duration::from_millis((ttl_ms / 3).max(200) as u64);
    while !cancel.is_cancelled() {
        let mut c = meta.client();
        let r = if registered {
            c.heartbeat(HeartbeatRequest {
                role: NodeRole::Broker as i32,
                id: node_id,
                lease_ttl_ms: ttl_ms,
            })
            .await
            .map(|_| ())
        } else {
            c.register_node(RegisterNodeRequest {
                id: node_id,
                role: NodeRole::Broker as i32,
                addr: addr.clone(),
                lease_ttl_ms: ttl_ms,
                labels: labels.clone(),
            })
            .await
            .map(|_| tracing::info!(node_id, %addr, "registered with meta"))
        };
        match r {
            Ok(()) => registered = true,
            Err(s) => {
                tracing::warn!(error = %s, "meta lease call failed");
                // NotFound means meta forgot us (lease lapsed and swept): register again.
                registered = registered && s.code() != tonic::Code::NotFound;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// A topic that binds an MQTT filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub topic: String,
    pub filter: String,
    pub shards: u32,
}

/// How specific a filter is: more literal levels first, then no `#`, then fewer `+`.
fn specificity(filter: &str) -> (usize, bool, usize) {
    let levels: Vec<&str> = filter.split('/').collect();
    let literal = levels.iter().filter(|l| **l != "+" && **l != "#").count();
    let plus = levels.iter().filter(|l| **l == "+").count();
    (literal, !filter.ends_with('#'), usize::MAX - plus)
}

/// The shard of a binding an MQTT topic lands in: FNV-1a of the topic name, so that every
/// broker agrees and one MQTT topic keeps its order in one shard.
pub fn shard_of(mqtt_topic: &str, shards: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in mqtt_topic.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h % shards.max(1)
}

/// The current bindings, refreshed from meta.
#[derive(Clone)]
pub struct TopicRoutes {
    bindings: Arc<RwLock<Vec<Binding>>>,
    changed: watch::Sender<u64>,
}

impl Default for TopicRoutes {
    fn default() -> Self {
        Self::new()
    }
}

impl TopicRoutes {
    pub fn new() -> Self {
        TopicRoutes {
            bindings: Arc::new(RwLock::new(Vec::new())),
            changed: watch::channel(0).0,
        }
    }

    /// Replaces the bindings with those of `topics`; returns whether anything changed.
    pub fn set(&self, topics: &[Topic]) -> bool {
        let mut next: Vec<Binding> = topics
            .iter()
            .filter(|t| !t.mqtt_filter.is_empty() && t.shards > 0)
            .map(|t| Binding {
                topic: t.name.clone(),
                filter: t.mqtt_filter.clone(),
                shards: t.shards,
            })
            .collect();
        next.sort_by(|a, b| a.topic.cmp(&b.topic));
        let mut cur = self.bindings.write().unwrap_or_else(|p| p.into_inner());
        if *cur == next {
            return false;
        }
        *cur = next;
        drop(cur);
        self.changed.send_modify(|v| *v += 1);
        true
    }

    pub fn all(&self) -> Vec<Binding> {
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every bound shard as `(topic, shard)`, in order.
    pub fn shards(&self) -> Vec<(Arc<str>, u32)> {
        let mut shards: Vec<(Arc<str>, u32)> = self
            .all()
            .into_iter()
            .flat_map(|b| {
                let topic: Arc<str> = b.topic.as_str().into();
                (0..b.shards).map(move |s| (topic.clone(), s))
            })
            .collect();
        shards.sort();
        shards
    }

    /// Bumped on every change; tailers follow it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The (topic, shard) a publish to `mqtt_topic` is stored in: the binding whose filter
    /// matches most specifically (ties: the smaller topic name).
    pub fn route(&self, mqtt_topic: &str) -> Option<(String, u32)> {
        let b = self.bindings.read().unwrap_or_else(|p| p.into_inner());
        b.iter()
            .filter(|b| topic::matches(&b.filter, mqtt_topic))
            .max_by(|x, y| {
                specificity(&x.filter)
                    .cmp(&specificity(&y.filter))
                    .then_with(|| y.topic.cmp(&x.topic))
            })
            .map(|b| (b.topic.clone(), shard_of(mqtt_topic, b.shards)))
    }

    /// Lists topics from meta once.
    pub async fn refresh(&self, meta: &MetaClient) -> Result<bool> {
        let topics = meta
            .client()
            .list_topics(ListRequest::default())
            .await
            .map_err(|s| BrokerError::meta("ListTopics", s))?
            .into_inner()
            .topics;
        Ok(self.set(&topics))
    }

    /// Keeps the bindings fresh: re-read on every topic change in meta and every `every`.
    pub async fn run_refresh(self, meta: MetaClient, every: Duration, cancel: CancellationToken) {
        let m = meta.clone();
        crate::freshness::keep_fresh(meta, "topics/", every, cancel, "topic bindings", || {
            self.refresh(&m)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, filter: &str, shards: u32) -> Topic {
        Topic {
            name: name.into(),
            mqtt_filter: filter.into(),
            shards,
            ..Default::default()
        }
    }

    #[test]
    fn most_specific_binding_wins() {
        let r = TopicRoutes::new();
        r.set(&[
            topic("default", "#", 1),
            topic("sensors", "sensors/#", 4),
            topic("temps", "sensors/+/temp", 2),
            topic("unbound", "", 1),
        ]);
        assert_eq!(r.route("other/x").unwrap().0, "default");
        assert_eq!(r.route("sensors/a/humidity").unwrap().0, "sensors");
        assert_eq!(r.route("sensors/a/temp").unwrap().0, "temps");
        // `#` does not match `$`-topics at the first level, so they are not stored.
        assert_eq!(r.route("$SYS/x"), None);
        assert_eq!(r.all().len(), 3);
    }

    #[test]
    fn shard_is_stable_and_in_range() {
        for n in 1..8 {
            let s = shard_of("a/b/c", n);
            assert!(s < n);
            assert_eq!(s, shard_of("a/b/c", n));
        }
        let spread: std::collections::HashSet<u32> =
            (0..64).map(|i| shard_of(&format!("t/{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "topics spread over every shard");
    }
}

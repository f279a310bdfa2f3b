//! `StoragePolicy`: how a topic's shards are stored (engine, replication, fsync, retention,
//! object store), mirrored into meta-service as a policy of the same name.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Retention};

/// Desired storage policy. The engine cannot change after creation: existing shards were
/// written by it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "robustmq.io",
    version = "v1alpha1",
    kind = "StoragePolicy",
    namespaced,
    status = "StoragePolicyStatus",
    shortname = "rsp",
    category = "robustmq",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".spec.engine"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.engine != 'object' || has(self.objectStore)").message("objectStore is required when engine is object"))]
pub struct StoragePolicySpec {
    /// The RobustMQCluster (same namespace) whose meta-service holds the policy.
    #[schemars(length(min = 1))]
    pub cluster_ref: String,
    /// memory (bounded, lost on restart), segment (local disk, replicated) or object
    /// (sealed segments in S3-compatible storage). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("engine is immutable"))]
    pub engine: Engine,
    /// Copies of each shard (the ack quorum is a majority of them).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 7))]
    pub replicas: i32,
    #[serde(default)]
    pub fsync: Fsync,
    /// Interval of `fsync: interval`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fsync_interval_ms: Option<i64>,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStore>,
}

fn default_replicas() -> i32 {
    3
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Memory,
    Segment,
    Object,
}

impl Engine {
    pub fn to_meta(self) -> robustmq_proto::meta::Engine {
        match self {
            Engine::Memory => robustmq_proto::meta::Engine::Memory,
            Engine::Segment => robustmq_proto::meta::Engine::Segment,
            Engine::Object => robustmq_proto::meta::Engine::Object,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Memory => "memory",
            Engine::Segment => "segment",
            Engine::Object => "object",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Every append (with group commit).
    #[default]
    Always,
    /// Every `fsyncIntervalMs`.
    Interval,
    /// Leave it to the OS.
    Never,
}

impl Fsync {
    pub fn to_meta(self) -> robustmq_proto::meta::Fsync {
        match self {
            Fsync::Always => robustmq_proto::meta::Fsync::Always,
            Fsync::Interval => robustmq_proto::meta::Fsync::Interval,
            Fsync::Never => robustmq_proto::meta::Fsync::Never,
        }
    }
}

/// S3-compatible object store of the `object` engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStore {
    /// URL of the S3 API, e.g. `https://s3.eu-west-1.amazonaws.com`.
    #[schemars(length(min = 1))]
    pub endpoint: String,
    #[schemars(length(min = 1))]
    pub bucket: String,
    #[serde(default)]
    pub region: String,
    /// Key prefix of every object this policy writes.
    #[serde(default)]
    pub prefix: String,
    /// Secret (same namespace) with `accessKeyId` and `secretAccessKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretRef {
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoragePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

impl StoragePolicy {
    /// The policy as meta-service's message; the name in meta is the resource's name.
    pub fn to_meta(&self, name: &str) -> Result<robustmq_proto::meta::StoragePolicy, String> {
        let s = &self.spec;
        Ok(robustmq_proto::meta::StoragePolicy {
            name: name.to_string(),
            engine: s.engine.to_meta() as i32,
            replicas: s.replicas.max(1) as u32,
            fsync: s.fsync.to_meta() as i32,
            fsync_interval_ms: s.fsync_interval_ms.unwrap_or(0).max(0) as u64,
            retention: Some(s.retention.to_meta()?),
            object_store: s
                .object_store
                .as_ref()
                .map(|o| robustmq_proto::meta::ObjectStore {
                    endpoint: o.endpoint.clone(),
                    bucket: o.bucket.clone(),
                    region: o.region.clone(),
                    prefix: o.prefix.clone(),
                    credentials_secret: o
                        .credentials_secret_ref
                        .as_ref()
                        .map(|r| r.name.clone())
                        .unwrap_or_default(),
                }),
            memory_max_bytes: 0,
        })
    }
}

//! `Topic`: a RobustMQ topic (Kafka topic and MQTT filter binding) in a cluster's
//! meta-service. Partitions may only grow; deletion honours `deletionPolicy`.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Retention};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "robustmq.io",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "rtopic",
    category = "robustmq",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".status.engine"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The RobustMQCluster (same namespace) that holds the topic.
    #[schemars(length(min = 1))]
    pub cluster_ref: String,
    /// Shards (Kafka partitions). May grow, never shrink.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions may only grow"))]
    pub partitions: i32,
    /// StoragePolicy name; absent: the cluster's defaultStoragePolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_policy: Option<String>,
    /// Overrides the policy's retention for this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaBinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttBinding>,
    /// What deleting this resource does to the topic in meta: Delete removes it and its
    /// data, Retain leaves it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_partitions() -> i32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct KafkaBinding {
    /// The name Kafka clients use; absent: the resource name.
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct MqttBinding {
    /// MQTT topic filter whose publishes land in this topic, e.g. `sensors/#`.
    #[schemars(length(min = 1))]
    pub filter: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Shards in meta.
    #[serde(default)]
    pub shards: i32,
    /// Engine of the policy in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Policy in use (the spec's or the cluster default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_policy: Option<String>,
}

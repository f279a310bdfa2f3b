//! `RobustMQCluster`: one RobustMQ deployment (meta StatefulSet, journal StatefulSet,
//! broker Deployment with an HPA) in one namespace.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Resources};

/// Desired state of a RobustMQ cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "robustmq.io",
    version = "v1alpha1",
    kind = "RobustMQCluster",
    namespaced,
    status = "RobustMQClusterStatus",
    shortname = "rmq",
    category = "robustmq",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Meta","type":"integer","jsonPath":".status.metaReady"}"#,
    printcolumn = r#"{"name":"Journal","type":"integer","jsonPath":".status.journalReady"}"#,
    printcolumn = r#"{"name":"Brokers","type":"integer","jsonPath":".status.brokersReady"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.metaLeader"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RobustMQClusterSpec {
    /// Container image holding the RobustMQ binaries.
    #[serde(default = "default_image")]
    pub image: String,
    /// Image pull policy of every RobustMQ container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default)]
    pub meta: MetaSpec,
    #[serde(default)]
    pub journal: JournalSpec,
    #[serde(default)]
    pub broker: BrokerSpec,
    /// TLS for the MQTT/TLS, WSS and Kafka/TLS listeners. Absent: those listeners are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// StoragePolicy used by Topics of this cluster that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_storage_policy: Option<String>,
    /// Per-tier configuration overrides, rendered into that tier's ConfigMap. A change rolls
    /// only that tier.
    #[serde(default)]
    pub config: ConfigOverrides,
}

fn default_image() -> String {
    "ghcr.io/robustmq/robustmq:0.1.0".to_string()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// A PersistentVolumeClaim template's size and class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size, a quantity such as `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: String,
    /// StorageClass; absent means the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    "10Gi".to_string()
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// The meta-service tier: a Raft group, so an odd number of voters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetaSpec {
    /// Raft voters: 1, 3, 5 or 7.
    #[serde(default = "default_meta_replicas")]
    #[schemars(range(min = 1, max = 7))]
    #[x_kube(validation = Rule::new("self % 2 == 1").message("meta.replicas must be odd (1, 3, 5 or 7)"))]
    pub replicas: i32,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub resources: Resources,
}

fn default_meta_replicas() -> i32 {
    3
}

impl Default for MetaSpec {
    fn default() -> Self {
        MetaSpec {
            replicas: default_meta_replicas(),
            storage: StorageSpec::default(),
            resources: Resources::default(),
        }
    }
}

/// The journal (storage) tier.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JournalSpec {
    #[serde(default = "default_journal_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub resources: Resources,
}

fn default_journal_replicas() -> i32 {
    3
}

impl Default for JournalSpec {
    fn default() -> Self {
        JournalSpec {
            replicas: default_journal_replicas(),
            storage: StorageSpec::default(),
            resources: Resources::default(),
        }
    }
}

/// The stateless broker tier, scaled by a HorizontalPodAutoscaler.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas").message("broker.maxReplicas must be >= broker.minReplicas"))]
pub struct BrokerSpec {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub listeners: Listeners,
    /// Host name clients use (advertised in Kafka Metadata and MQTT redirects); absent: the
    /// broker Service's DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
}

fn default_min_replicas() -> i32 {
    2
}
fn default_max_replicas() -> i32 {
    10
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            autoscaling: AutoscalingSpec::default(),
            resources: Resources::default(),
            listeners: Listeners::default(),
            advertised_host: None,
        }
    }
}

/// HPA targets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Average CPU utilization (percent of requests) the HPA aims for.
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
    /// Average live connections per pod (the broker's `robustmq_connections` metric through
    /// a custom-metrics adapter); absent: CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_connections_per_pod: Option<i32>,
}

fn default_cpu() -> i32 {
    70
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        AutoscalingSpec {
            target_cpu_utilization: default_cpu(),
            target_connections_per_pod: None,
        }
    }
}

/// Client listener ports of the broker and the type of the Service exposing them. The TLS
/// listeners (mqttTls, wss, kafkaTls) are exposed only when `spec.tls` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    #[serde(default = "p_mqtt")]
    #[schemars(range(min = 1, max = 65535))]
    pub mqtt: i32,
    #[serde(default = "p_mqtt_tls")]
    #[schemars(range(min = 1, max = 65535))]
    pub mqtt_tls: i32,
    #[serde(default = "p_ws")]
    #[schemars(range(min = 1, max = 65535))]
    pub ws: i32,
    #[serde(default = "p_wss")]
    #[schemars(range(min = 1, max = 65535))]
    pub wss: i32,
    #[serde(default = "p_kafka")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka: i32,
    #[serde(default = "p_kafka_tls")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka_tls: i32,
    #[serde(default)]
    pub service_type: ServiceType,
}

fn p_mqtt() -> i32 {
    1883
}
fn p_mqtt_tls() -> i32 {
    8883
}
fn p_ws() -> i32 {
    8083
}
fn p_wss() -> i32 {
    8084
}
fn p_kafka() -> i32 {
    9092
}
fn p_kafka_tls() -> i32 {
    9093
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            mqtt: p_mqtt(),
            mqtt_tls: p_mqtt_tls(),
            ws: p_ws(),
            wss: p_wss(),
            kafka: p_kafka(),
            kafka_tls: p_kafka_tls(),
            service_type: ServiceType::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Either an existing `kubernetes.io/tls` Secret, or a self-signed one the operator makes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretName) != (has(self.selfSigned) && self.selfSigned)").message("tls: set exactly one of secretName or selfSigned: true"))]
pub struct TlsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<bool>,
}

/// Configuration keys per tier (`raft.heartbeat_ms: "100"`). Dotted keys become nested YAML;
/// values are parsed as YAML scalars, so `"100"` is a number and `"true"` a boolean.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub journal: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker: BTreeMap<String, String>,
}

/// Observed state of a RobustMQ cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RobustMQClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, MetaQuorum, JournalReady, BrokersReady, Progressing, Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub meta_ready: i32,
    #[serde(default)]
    pub journal_ready: i32,
    #[serde(default)]
    pub brokers_ready: i32,
    /// Pod name of the meta Raft leader, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_leader: Option<String>,
    /// Client endpoints by protocol (`mqtt`, `kafka`, ...), as `host:port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, String>,
}

impl RobustMQCluster {
    /// Whether the broker's TLS listeners are on.
    pub fn tls_enabled(&self) -> bool {
        self.spec.tls.is_some()
    }
}

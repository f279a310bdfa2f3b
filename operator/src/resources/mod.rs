//! Pure builders of the children of a `RobustMQCluster`: given the cluster object they
//! return the Kubernetes objects the reconciler server-side applies. No I/O here, so the
//! unit tests can check every object for a given spec.
//!
//! Names (cluster `c`):
//! ```text
//! c-meta-config / c-journal-config / c-broker-config    ConfigMaps (one per tier)
//! c-meta, c-journal                                      headless Services + StatefulSets + PDBs
//! c-broker                                               Service, Deployment, HPA, PDB
//! c-tls                                                  self-signed TLS Secret (if asked)
//! ```

mod configmap;
mod deployment;
mod hpa;
mod pdb;
mod secret;
mod service;
mod statefulset;

pub use configmap::*;
pub use deployment::*;
pub use hpa::*;
pub use pdb::*;
pub use secret::*;
pub use service::*;
pub use statefulset::*;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PodAffinityTerm, PodAntiAffinity, Probe, ResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{Resources, RobustMQCluster};

/// Port of meta's gRPC API (public and Raft).
pub const META_GRPC_PORT: i32 = 1228;
/// Port of journal's gRPC API.
pub const JOURNAL_GRPC_PORT: i32 = 1778;
/// Admin HTTP port of every tier (/healthz, /readyz, /metrics).
pub const ADMIN_PORT: i32 = 8080;
/// Pod-template annotation carrying the hash of the tier's rendered config; a change rolls
/// exactly that tier's pods.
pub const CONFIG_HASH_ANNOTATION: &str = "robustmq.io/config-hash";
/// Where each tier's ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/robustmq";
/// Where the broker's TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/robustmq/tls";

/// The three tiers a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Meta,
    Journal,
    Broker,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Meta, Tier::Journal, Tier::Broker];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Meta => "meta",
            Tier::Journal => "journal",
            Tier::Broker => "broker",
        }
    }

    /// Name of the tier's workload, Service and PDB.
    pub fn name(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.as_str())
    }

    /// Name of the tier's ConfigMap.
    pub fn config_name(self, cluster: &str) -> String {
        format!("{cluster}-{}-config", self.as_str())
    }

    fn binary(self) -> &'static str {
        match self {
            Tier::Meta => "robustmq-meta",
            Tier::Journal => "robustmq-journal",
            Tier::Broker => "robustmq-broker",
        }
    }
}

/// Labels every child of a tier carries (and selects on).
pub fn selector_labels(cluster: &str, tier: Tier) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "robustmq".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster.to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            tier.as_str().to_string(),
        ),
    ])
}

fn labels(cluster: &str, tier: Tier) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster, tier);
    l.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "robustmq-operator".to_string(),
    );
    l
}

/// The controller ownerReference that makes the garbage collector delete a child with its
/// cluster.
pub fn owner_ref(c: &RobustMQCluster) -> OwnerReference {
    // `controller_owner_ref` is None only for objects without a name or uid, which an object
    // read from the API server always has; fall back to building it from the fields.
    c.controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: "robustmq.io/v1alpha1".into(),
            kind: "RobustMQCluster".into(),
            name: c.name_any(),
            uid: c.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
}

/// Metadata of a child: name, the cluster's namespace, labels and the owner reference.
pub fn child_meta(c: &RobustMQCluster, tier: Tier, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: c.namespace(),
        labels: Some(labels(&c.name_any(), tier)),
        owner_references: Some(vec![owner_ref(c)]),
        ..ObjectMeta::default()
    }
}

fn label_selector(cluster: &str, tier: Tier) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(cluster, tier)),
        ..LabelSelector::default()
    }
}

fn resource_requirements(r: &Resources) -> Option<ResourceRequirements> {
    if r.requests.is_empty() && r.limits.is_empty() {
        return None;
    }
    let q = |m: &BTreeMap<String, String>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect::<BTreeMap<_, _>>()
        })
    };
    Some(ResourceRequirements {
        requests: q(&r.requests),
        limits: q(&r.limits),
        ..ResourceRequirements::default()
    })
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Spread a tier's pods over nodes when possible (preferred, so small test clusters still
/// schedule).
fn anti_affinity(cluster: &str, tier: Tier) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(label_selector(cluster, tier)),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn port(name: &str, p: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: p,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

/// The container every tier runs: image, pull policy, probes on the admin port, resources
/// and the config volume.
fn base_container(c: &RobustMQCluster, tier: Tier, resources: &Resources) -> Container {
    Container {
        name: tier.as_str().into(),
        image: Some(c.spec.image.clone()),
        image_pull_policy: c.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        resources: resource_requirements(resources),
        volume_mounts: Some(vec![k8s_openapi::api::core::v1::VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Container::default()
    }
}

/// `host:port` of every meta pod through the headless Service, for journal and broker.
pub fn meta_peers(c: &RobustMQCluster) -> String {
    let name = Tier::Meta.name(&c.name_any());
    (0..c.spec.meta.replicas.max(1))
        .map(|i| format!("{name}-{i}.{name}:{META_GRPC_PORT}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The gRPC endpoint of the cluster's meta-service as the operator dials it.
pub fn meta_endpoint(cluster: &str, namespace: &str) -> String {
    format!(
        "http://{}.{namespace}.svc:{META_GRPC_PORT}",
        Tier::Meta.name(cluster)
    )
}

/// Name of the Secret the broker's TLS listeners use, if TLS is on.
pub fn tls_secret_name(c: &RobustMQCluster) -> Option<String> {
    let tls = c.spec.tls.as_ref()?;
    Some(
        tls.secret_name
            .clone()
            .unwrap_or_else(|| format!("{}-tls", c.name_any())),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::RobustMQClusterSpec;

    /// A cluster as read back from the API server (with a uid) from a YAML spec.
    pub fn cluster(spec_yaml: &str) -> RobustMQCluster {
        let spec: RobustMQClusterSpec = serde_yaml::from_str(spec_yaml).expect("spec");
        let mut c = RobustMQCluster::new("demo", spec);
        c.metadata.namespace = Some("prod".into());
        c.metadata.uid = Some("1111-2222".into());
        c
    }

    #[test]
    fn children_are_owned_by_the_cluster_as_controller() {
        let c = cluster("{}");
        let o = owner_ref(&c);
        assert_eq!(o.kind, "RobustMQCluster");
        assert_eq!(o.uid, "1111-2222");
        assert_eq!(o.controller, Some(true));
        let m = child_meta(&c, Tier::Meta, "demo-meta".into());
        assert_eq!(m.namespace.as_deref(), Some("prod"));
        assert_eq!(m.labels.unwrap()["app.kubernetes.io/component"], "meta");
    }

    #[test]
    fn meta_peers_list_every_ordinal_through_the_headless_service() {
        let c = cluster("meta: {replicas: 3}");
        assert_eq!(
            meta_peers(&c),
            "demo-meta-0.demo-meta:1228,demo-meta-1.demo-meta:1228,demo-meta-2.demo-meta:1228"
        );
        assert_eq!(
            meta_endpoint("demo", "prod"),
            "http://demo-meta.prod.svc:1228"
        );
    }
}

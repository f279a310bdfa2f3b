//! StatefulSets of the meta (Raft) and journal (storage) tiers, each with a PVC template.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{
    ADMIN_PORT, CONFIG_DIR, CONFIG_HASH_ANNOTATION, JOURNAL_GRPC_PORT, META_GRPC_PORT, Tier,
    anti_affinity, base_container, child_meta, config_file, config_hash, env, env_field,
    label_selector, labels, meta_peers, port,
};
use crate::crd::{RobustMQCluster, StorageSpec};

/// Where the data volume is mounted.
pub const DATA_DIR: &str = "/data";

fn pvc_template(storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

fn config_volume(c: &RobustMQCluster, tier: Tier) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: tier.config_name(&c.name_any()),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn pod_meta(c: &RobustMQCluster, tier: Tier) -> ObjectMeta {
    ObjectMeta {
        labels: Some(labels(&c.name_any(), tier)),
        annotations: Some(BTreeMap::from([(
            CONFIG_HASH_ANNOTATION.to_string(),
            config_hash(c, tier),
        )])),
        ..ObjectMeta::default()
    }
}

fn statefulset(
    c: &RobustMQCluster,
    tier: Tier,
    replicas: i32,
    storage: &StorageSpec,
    container: k8s_openapi::api::core::v1::Container,
    parallel: bool,
) -> StatefulSet {
    let name = tier.name(&c.name_any());
    StatefulSet {
        metadata: child_meta(c, tier, name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name),
            // Raft voters must all start to elect a leader, so meta pods start together;
            // journal pods start in order so a scale-up adds one node at a time.
            pod_management_policy: Some(if parallel { "Parallel" } else { "OrderedReady" }.into()),
            selector: label_selector(&c.name_any(), tier),
            template: PodTemplateSpec {
                metadata: Some(pod_meta(c, tier)),
                spec: Some(PodSpec {
                    containers: vec![container],
                    affinity: Some(anti_affinity(&c.name_any(), tier)),
                    volumes: Some(vec![config_volume(c, tier)]),
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![pvc_template(storage)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn data_mount() -> VolumeMount {
    VolumeMount {
        name: "data".into(),
        mount_path: DATA_DIR.into(),
        ..VolumeMount::default()
    }
}

/// The meta-service StatefulSet: node ids from the pod ordinal, initial voters from the
/// headless Service and the replica count.
pub fn meta_statefulset(c: &RobustMQCluster) -> StatefulSet {
    let tier = Tier::Meta;
    let spec = &c.spec.meta;
    let mut container = base_container(c, tier, &spec.resources);
    container.command = Some(vec![tier.binary().into()]);
    container.args = Some(vec![
        "--config".into(),
        format!("{CONFIG_DIR}/{}", config_file(tier)),
    ]);
    container.env = Some(vec![
        env("ROBUSTMQ_META_NODE_ID_FROM_HOSTNAME", "true"),
        env("ROBUSTMQ_META_PEER_SERVICE", tier.name(&c.name_any())),
        env("ROBUSTMQ_META_REPLICAS", spec.replicas.to_string()),
        env(
            "ROBUSTMQ_META_GRPC_ADDR",
            format!("0.0.0.0:{META_GRPC_PORT}"),
        ),
        env("ROBUSTMQ_META_ADMIN_ADDR", format!("0.0.0.0:{ADMIN_PORT}")),
        env("ROBUSTMQ_META_DATA_DIR", DATA_DIR),
    ]);
    container.ports = Some(vec![
        port("grpc", META_GRPC_PORT),
        port("admin", ADMIN_PORT),
    ]);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(data_mount());
    statefulset(c, tier, spec.replicas, &spec.storage, container, true)
}

/// The journal StatefulSet. The journal's node id is the ordinal + 1 (0 means "no node" in
/// shard placements); it has no hostname flag, so a shell derives it from `$HOSTNAME`.
pub fn journal_statefulset(c: &RobustMQCluster) -> StatefulSet {
    let tier = Tier::Journal;
    let spec = &c.spec.journal;
    let name = tier.name(&c.name_any());
    let mut container = base_container(c, tier, &spec.resources);
    container.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "exec {} --config {CONFIG_DIR}/{} --node-id $(( ${{HOSTNAME##*-}} + 1 ))",
            tier.binary(),
            config_file(tier)
        ),
    ]);
    container.env = Some(vec![
        env_field("POD_NAME", "metadata.name"),
        env(
            "ROBUSTMQ_JOURNAL_GRPC_ADDR",
            format!("0.0.0.0:{JOURNAL_GRPC_PORT}"),
        ),
        env(
            "ROBUSTMQ_JOURNAL_ADVERTISED_ADDR",
            format!("$(POD_NAME).{name}:{JOURNAL_GRPC_PORT}"),
        ),
        env(
            "ROBUSTMQ_JOURNAL_ADMIN_ADDR",
            format!("0.0.0.0:{ADMIN_PORT}"),
        ),
        env("ROBUSTMQ_JOURNAL_DATA_DIR", DATA_DIR),
        env("ROBUSTMQ_JOURNAL_META", meta_peers(c)),
    ]);
    container.ports = Some(vec![
        port("grpc", JOURNAL_GRPC_PORT),
        port("admin", ADMIN_PORT),
    ]);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(data_mount());
    statefulset(c, tier, spec.replicas, &spec.storage, container, false)
}

/// Journal node ids (ordinal + 1) that a scale from `current` to `desired` replicas
/// removes; meta drains them before the StatefulSet shrinks.
pub fn journal_nodes_removed(current: i32, desired: i32) -> Vec<u64> {
    (desired.max(0)..current.max(0))
        .map(|o| o as u64 + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    fn env_of(s: &StatefulSet, key: &str) -> Option<String> {
        s.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == key)?
            .value
            .clone()
    }

    #[test]
    fn meta_statefulset_is_parallel_with_probes_pvc_and_peers() {
        let c = cluster(
            "image: r:1\nimagePullPolicy: Always\nmeta: {replicas: 5, storage: {size: 20Gi, storageClassName: fast}, resources: {requests: {cpu: 500m}}}",
        );
        let s = meta_statefulset(&c);
        assert_eq!(s.metadata.name.as_deref(), Some("demo-meta"));
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(5));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.service_name.as_deref(), Some("demo-meta"));
        let pvc = &spec.volume_claim_templates.as_ref().unwrap()[0];
        let pvc_spec = pvc.spec.as_ref().unwrap();
        assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            pvc_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "20Gi"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        let ctr = &pod.containers[0];
        assert_eq!(ctr.image.as_deref(), Some("r:1"));
        assert_eq!(ctr.image_pull_policy.as_deref(), Some("Always"));
        let ready = ctr
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        let live = ctr
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        assert_eq!(
            ctr.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"].0,
            "500m"
        );
        assert!(pod.affinity.as_ref().unwrap().pod_anti_affinity.is_some());
        assert_eq!(env_of(&s, "ROBUSTMQ_META_REPLICAS").as_deref(), Some("5"));
        assert_eq!(
            env_of(&s, "ROBUSTMQ_META_PEER_SERVICE").as_deref(),
            Some("demo-meta")
        );
        let ann = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap();
        assert_eq!(ann[CONFIG_HASH_ANNOTATION], config_hash(&c, Tier::Meta));
    }

    #[test]
    fn journal_statefulset_is_ordered_and_points_at_meta() {
        let c = cluster("meta: {replicas: 1}\njournal: {replicas: 4}");
        let s = journal_statefulset(&c);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        assert_eq!(
            env_of(&s, "ROBUSTMQ_JOURNAL_META").as_deref(),
            Some("demo-meta-0.demo-meta:1228")
        );
        let cmd = spec.template.spec.as_ref().unwrap().containers[0]
            .command
            .clone()
            .unwrap();
        assert!(
            cmd[2].contains("--node-id $(( ${HOSTNAME##*-} + 1 ))"),
            "{cmd:?}"
        );
    }

    #[test]
    fn shrinking_the_journal_removes_the_highest_ordinals() {
        assert_eq!(journal_nodes_removed(5, 3), vec![4, 5]);
        assert!(journal_nodes_removed(3, 3).is_empty());
        assert!(journal_nodes_removed(3, 5).is_empty());
    }
}

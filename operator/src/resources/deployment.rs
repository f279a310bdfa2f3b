//! The broker Deployment. Its `replicas` is deliberately left unset: the HPA owns it, and
//! setting it under server-side apply would fight the autoscaler on every reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, PodSpec, PodTemplateSpec, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{
    ADMIN_PORT, CONFIG_DIR, CONFIG_HASH_ANNOTATION, TLS_DIR, Tier, anti_affinity, base_container,
    broker_ports, child_meta, config_file, config_hash, env, env_field, label_selector, labels,
    port, tls_secret_name,
};
use crate::crd::RobustMQCluster;

pub fn broker_deployment(c: &RobustMQCluster) -> Deployment {
    let tier = Tier::Broker;
    let cluster = c.name_any();
    let spec = &c.spec.broker;
    let mut container = base_container(c, tier, &spec.resources);
    // Deployment pods have no ordinal, but the broker needs a node id > 0 that is unique
    // among live brokers: derive it from the (unique) pod name with a 32-bit CRC.
    container.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "exec {} --config {CONFIG_DIR}/{} --node-id $(( $(printf %s \"$HOSTNAME\" | cksum | cut -d' ' -f1) + 1 ))",
            tier.binary(),
            config_file(tier)
        ),
    ]);
    let l = &spec.listeners;
    let advertised = spec.advertised_host.clone().unwrap_or_else(|| {
        format!(
            "{}.{}.svc",
            tier.name(&cluster),
            c.namespace().unwrap_or_default()
        )
    });
    let mut envs = vec![
        env_field("POD_NAME", "metadata.name"),
        // The broker takes one meta address; the headless Service name resolves to every meta
        // pod.
        env(
            "ROBUSTMQ_BROKER_META",
            format!("{}:{}", Tier::Meta.name(&cluster), super::META_GRPC_PORT),
        ),
        env("ROBUSTMQ_BROKER_ADVERTISED_HOST", advertised),
        env(
            "ROBUSTMQ_BROKER_ADMIN_ADDR",
            format!("0.0.0.0:{ADMIN_PORT}"),
        ),
        env("ROBUSTMQ_BROKER_MQTT_ADDR", format!("0.0.0.0:{}", l.mqtt)),
        env("ROBUSTMQ_BROKER_MQTT_WS_ADDR", format!("0.0.0.0:{}", l.ws)),
        env("ROBUSTMQ_BROKER_KAFKA_ADDR", format!("0.0.0.0:{}", l.kafka)),
    ];
    if let Some(policy) = &c.spec.default_storage_policy {
        envs.push(env(
            "ROBUSTMQ_BROKER_DEFAULT_STORAGE_POLICY",
            policy.clone(),
        ));
    }
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: tier.config_name(&cluster),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if let Some(secret) = tls_secret_name(c) {
        envs.extend([
            env(
                "ROBUSTMQ_BROKER_MQTT_TLS_ADDR",
                format!("0.0.0.0:{}", l.mqtt_tls),
            ),
            env(
                "ROBUSTMQ_BROKER_MQTT_WSS_ADDR",
                format!("0.0.0.0:{}", l.wss),
            ),
            env(
                "ROBUSTMQ_BROKER_KAFKA_TLS_ADDR",
                format!("0.0.0.0:{}", l.kafka_tls),
            ),
            env("ROBUSTMQ_BROKER_TLS_CERT", format!("{TLS_DIR}/tls.crt")),
            env("ROBUSTMQ_BROKER_TLS_KEY", format!("{TLS_DIR}/tls.key")),
        ]);
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: "tls".into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
    container.env = Some(envs);
    let mut ports: Vec<_> = broker_ports(c)
        .into_iter()
        .map(|(n, p)| port(n, p))
        .collect();
    ports.push(port("admin", ADMIN_PORT));
    container.ports = Some(ports);

    Deployment {
        metadata: child_meta(c, tier, tier.name(&cluster)),
        spec: Some(DeploymentSpec {
            replicas: None,
            selector: label_selector(&cluster, tier),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&cluster, tier)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash(c, tier),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    affinity: Some(anti_affinity(&cluster, tier)),
                    volumes: Some(volumes),
                    // Brokers drain on SIGTERM (MQTT 5 DISCONNECT, session flush).
                    termination_grace_period_seconds: Some(60),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn broker_deployment_leaves_replicas_to_the_hpa() {
        let d = broker_deployment(&cluster("broker: {minReplicas: 3, maxReplicas: 9}"));
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, None);
        let json = serde_json::to_value(&spec).unwrap();
        assert!(json.get("replicas").is_none(), "{json}");
    }

    #[test]
    fn broker_gets_a_node_id_from_its_pod_name_and_one_meta_address() {
        let d = broker_deployment(&cluster("{}"));
        let ctr = &d.spec.unwrap().template.spec.unwrap().containers[0];
        let cmd = ctr.command.clone().unwrap();
        assert!(
            cmd[2].starts_with(
                "exec robustmq-broker --config /etc/robustmq/broker.yaml --node-id $(("
            ),
            "{cmd:?}"
        );
        assert!(cmd[2].contains("cksum"), "{cmd:?}");
        let meta = ctr
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "ROBUSTMQ_BROKER_META")
            .unwrap();
        assert_eq!(meta.value.as_deref(), Some("demo-meta:1228"));
    }

    #[test]
    fn broker_mounts_the_tls_secret_only_with_tls() {
        let plain = broker_deployment(&cluster("{}"));
        let pod = plain.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.volumes.unwrap().len(), 1);
        let d = broker_deployment(&cluster("tls: {secretName: my-cert}"));
        let pod = d.spec.unwrap().template.spec.unwrap();
        let vols = pod.volumes.unwrap();
        assert_eq!(
            vols[1].secret.as_ref().unwrap().secret_name.as_deref(),
            Some("my-cert")
        );
        let ports: Vec<i32> = pod.containers[0]
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, vec![1883, 8083, 9092, 8883, 8084, 9093, 8080]);
    }
}

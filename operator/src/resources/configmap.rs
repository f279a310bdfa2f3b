//! Per-tier ConfigMaps and the config hash that rolls a tier when its config changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::{Tier, child_meta};
use crate::crd::RobustMQCluster;

/// The file name of a tier's config inside its ConfigMap (`meta.yaml`, ...).
pub fn config_file(tier: Tier) -> String {
    format!("{}.yaml", tier.as_str())
}

fn overrides(c: &RobustMQCluster, tier: Tier) -> &BTreeMap<String, String> {
    match tier {
        Tier::Meta => &c.spec.config.meta,
        Tier::Journal => &c.spec.config.journal,
        Tier::Broker => &c.spec.config.broker,
    }
}

/// Renders a tier's overrides as YAML: dotted keys nest (`raft.heartbeat_ms` becomes
/// `raft: {heartbeat_ms: ..}`) and values are YAML scalars, so numbers and booleans keep
/// their type for the binary's typed config. Keys are sorted, so the text (and its hash) is
/// stable.
pub fn render_config(overrides: &BTreeMap<String, String>) -> String {
    let mut root = serde_yaml::Mapping::new();
    for (key, raw) in overrides {
        let value: serde_yaml::Value =
            serde_yaml::from_str(raw).unwrap_or_else(|_| serde_yaml::Value::String(raw.clone()));
        let parts: Vec<&str> = key.split('.').collect();
        let mut map = &mut root;
        for part in &parts[..parts.len() - 1] {
            let k = serde_yaml::Value::String((*part).to_string());
            let entry = map
                .entry(k)
                .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
            if !entry.is_mapping() {
                // `a: 1` and `a.b: 2` together: the nested key wins, as the more specific.
                *entry = serde_yaml::Value::Mapping(Default::default());
            }
            map = entry.as_mapping_mut().expect("just made a mapping");
        }
        map.insert(
            serde_yaml::Value::String(parts[parts.len() - 1].to_string()),
            value,
        );
    }
    if root.is_empty() {
        return "{}\n".to_string();
    }
    serde_yaml::to_string(&root).unwrap_or_else(|_| "{}\n".to_string())
}

/// The ConfigMap holding a tier's rendered config.
pub fn configmap(c: &RobustMQCluster, tier: Tier) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(c, tier, tier.config_name(&c.name_any())),
        data: Some(BTreeMap::from([(
            config_file(tier),
            render_config(overrides(c, tier)),
        )])),
        ..ConfigMap::default()
    }
}

/// SHA-256 (hex, first 16 bytes) of what a tier's pods read from outside their own spec:
/// the rendered config, plus the TLS Secret's name for the broker. Put on the pod template,
/// it rolls exactly the tier whose config changed.
pub fn config_hash(c: &RobustMQCluster, tier: Tier) -> String {
    let mut h = Sha256::new();
    h.update(render_config(overrides(c, tier)).as_bytes());
    if tier == Tier::Broker
        && let Some(s) = super::tls_secret_name(c)
    {
        h.update(b"\0tls=");
        h.update(s.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn dotted_keys_nest_and_scalars_keep_their_type() {
        let m = BTreeMap::from([
            ("raft.heartbeat_ms".to_string(), "100".to_string()),
            (
                "raft.election_timeout_min_ms".to_string(),
                "300".to_string(),
            ),
            ("log".to_string(), "debug".to_string()),
        ]);
        let v: serde_yaml::Value = serde_yaml::from_str(&render_config(&m)).unwrap();
        assert_eq!(v["raft"]["heartbeat_ms"].as_u64(), Some(100));
        assert_eq!(v["raft"]["election_timeout_min_ms"].as_u64(), Some(300));
        assert_eq!(v["log"].as_str(), Some("debug"));
        assert_eq!(render_config(&BTreeMap::new()), "{}\n");
    }

    #[test]
    fn a_config_change_changes_only_that_tiers_hash() {
        let a = cluster("{}");
        let b = cluster("config: {journal: {segment_bytes: '1048576'}}");
        assert_eq!(config_hash(&a, Tier::Meta), config_hash(&b, Tier::Meta));
        assert_eq!(config_hash(&a, Tier::Broker), config_hash(&b, Tier::Broker));
        assert_ne!(
            config_hash(&a, Tier::Journal),
            config_hash(&b, Tier::Journal)
        );
        let tls = cluster("tls: {selfSigned: true}");
        assert_ne!(
            config_hash(&a, Tier::Broker),
            config_hash(&tls, Tier::Broker)
        );
        assert_eq!(config_hash(&a, Tier::Meta), config_hash(&tls, Tier::Meta));
    }

    #[test]
    fn configmap_holds_the_rendered_file() {
        let c = cluster("config: {meta: {snapshot_logs: '5000'}}");
        let cm = configmap(&c, Tier::Meta);
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-meta-config"));
        assert_eq!(cm.data.unwrap()["meta.yaml"], "snapshot_logs: 5000\n");
    }
}

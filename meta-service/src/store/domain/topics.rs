//! Storage policies and topics, with their shards.

use robustmq_proto::meta::{Engine, Fsync, ShardPlacement, StoragePolicy, Topic, TopicWithShards};

use super::placement;
use crate::error::{MetaError, MetaResult};
use crate::keys;
use crate::store::validate::resource_name;
use crate::store::{Output, Pb, State, mqtt_topic};

pub const DEFAULT_POLICY: &str = "default";
const MAX_SHARDS: u32 = 100_000;
const MAX_REPLICAS: u32 = 7;

/// Fills defaults and checks every field of a policy.
pub fn normalize_policy(p: &StoragePolicy) -> MetaResult<StoragePolicy> {
    let mut p = p.clone();
    resource_name("name", &p.name)?;
    let engine = Engine::try_from(p.engine).unwrap_or(Engine::Unspecified);
    if engine == Engine::Unspecified {
        return Err(MetaError::invalid(
            "engine",
            "must be memory, segment or object",
        ));
    }
    if p.replicas == 0 {
        p.replicas = 1;
    }
    if p.replicas > MAX_REPLICAS {
        return Err(MetaError::invalid(
            "replicas",
            format!("{} is more than {MAX_REPLICAS}", p.replicas),
        ));
    }
    match Fsync::try_from(p.fsync).unwrap_or(Fsync::Unspecified) {
        Fsync::Unspecified => p.fsync = Fsync::Always as i32,
        Fsync::Interval if p.fsync_interval_ms == 0 => {
            return Err(MetaError::invalid(
                "fsync_interval_ms",
                "must be > 0 when fsync is interval",
            ));
        }
        _ => {}
    }
    if engine == Engine::Object && p.object_store.as_ref().is_none_or(|o| o.bucket.is_empty()) {
        return Err(MetaError::invalid(
            "object_store.bucket",
            "the object engine needs a bucket",
        ));
    }
    Ok(p)
}

pub(super) fn put_policy(s: &mut State, p: &StoragePolicy, create: bool) -> MetaResult<Output> {
    let p = normalize_policy(p)?;
    let key = keys::policy(&p.name);
    match (s.get::<StoragePolicy>(&key), create) {
        (Some(_), true) => return Err(MetaError::already_exists("storage policy", &p.name)),
        (None, false) => return Err(MetaError::not_found("storage policy", &p.name)),
        (Some(old), false) if old.engine != p.engine => {
            return Err(MetaError::precondition(format!(
                "the engine of storage policy '{}' is immutable",
                p.name
            )));
        }
        _ => {}
    }
    s.put(key, &p);
    Ok(Output::Policy(Pb(p)))
}

pub(super) fn delete_policy(s: &mut State, name: &str) -> MetaResult<Output> {
    let key = keys::policy(name);
    if !s.contains(&key) {
        return Err(MetaError::not_found("storage policy", name));
    }
    if s.indexes.policy_users.get(name).copied().unwrap_or(0) > 0 {
        let user = s
            .list::<Topic>(keys::TOPICS)
            .into_iter()
            .find(|t| t.storage_policy == name)
            .map(|t| t.name)
            .unwrap_or_default();
        return Err(MetaError::precondition(format!(
            "storage policy '{name}' is in use by topic '{user}'"
        )));
    }
    s.delete(&key);
    Ok(Output::None)
}

/// Fills defaults and checks the stateless fields of a topic.
pub fn normalize_topic(t: &Topic) -> MetaResult<Topic> {
    let mut t = t.clone();
    resource_name("name", &t.name)?;
    if t.shards == 0 {
        return Err(MetaError::invalid("shards", "must be greater than 0"));
    }
    if t.shards > MAX_SHARDS {
        return Err(MetaError::invalid(
            "shards",
            format!("{} is more than {MAX_SHARDS}", t.shards),
        ));
    }
    if t.storage_policy.is_empty() {
        t.storage_policy = DEFAULT_POLICY.to_string();
    }
    if t.kafka_name.is_empty() {
        t.kafka_name = t.name.clone();
    }
    resource_name("kafka_name", &t.kafka_name)?;
    if !t.mqtt_filter.is_empty() {
        mqtt_topic::validate_filter("mqtt_filter", &t.mqtt_filter)?;
    }
    Ok(t)
}

pub(super) fn create_topic(s: &mut State, t: &Topic, now: u64) -> MetaResult<Output> {
    let mut t = normalize_topic(t)?;
    let key = keys::topic(&t.name);
    if s.contains(&key) {
        return Err(MetaError::already_exists("topic", &t.name));
    }
    let Some(policy) = s.get::<StoragePolicy>(&keys::policy(&t.storage_policy)) else {
        return Err(MetaError::precondition(format!(
            "storage policy '{}' does not exist",
            t.storage_policy
        )));
    };
    if let Some(other) = s.indexes.kafka_names.get(&t.kafka_name) {
        return Err(MetaError::AlreadyExists {
            kind: "kafka name".into(),
            name: format!("{} (bound by topic '{other}')", t.kafka_name),
        });
    }
    if let Some(other) = s.indexes.mqtt_filters.get(&t.mqtt_filter) {
        return Err(MetaError::AlreadyExists {
            kind: "mqtt filter".into(),
            name: format!("{} (bound by topic '{other}')", t.mqtt_filter),
        });
    }
    t.created_at_ms = now;
    s.put(key, &t);
    let replicas = placement::replicas_of(&policy);
    let shards = (0..t.shards)
        .map(|i| {
            let p = placement::place(s, &t.name, i, replicas);
            s.put(keys::shard(&t.name, i), &p);
            p
        })
        .collect();
    Ok(Output::Topic(Pb(TopicWithShards {
        topic: Some(t),
        shards,
    })))
}

pub(super) fn delete_topic(s: &mut State, name: &str) -> MetaResult<Output> {
    let key = keys::topic(name);
    if !s.contains(&key) {
        return Err(MetaError::not_found("topic", name));
    }
    s.delete_prefix(&keys::shards_of(name));
    s.delete(&key);
    Ok(Output::None)
}

pub(super) fn add_partitions(s: &mut State, name: &str, shards: u32) -> MetaResult<Output> {
    let key = keys::topic(name);
    let Some(mut t) = s.get::<Topic>(&key) else {
        return Err(MetaError::not_found("topic", name));
    };
    if shards <= t.shards {
        return Err(MetaError::invalid(
            "shards",
            format!(
                "topic '{name}' has {} shards; the new count must be larger",
                t.shards
            ),
        ));
    }
    if shards > MAX_SHARDS {
        return Err(MetaError::invalid(
            "shards",
            format!("{shards} is more than {MAX_SHARDS}"),
        ));
    }
    let old = t.shards;
    t.shards = shards;
    s.put(key, &t);
    let replicas = placement::desired_replicas(s, &t);
    for i in old..shards {
        let p = placement::place(s, name, i, replicas);
        s.put(keys::shard(name, i), &p);
    }
    let shards = s.list::<ShardPlacement>(&keys::shards_of(name));
    Ok(Output::Topic(Pb(TopicWithShards {
        topic: Some(t),
        shards,
    })))
}

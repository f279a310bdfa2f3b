//! The topics as Kafka clients see them: a cache of meta's topics keyed by their Kafka
//! name (`kafka_name`, or the topic name when that is empty), and the admin calls that
//! change them (create, delete, add partitions), with meta's answers turned into Kafka
//! error codes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use robustmq_proto::meta::{AddPartitionsRequest, ListRequest, NameRequest, Retention, Topic};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::freshness::keep_fresh;
use crate::meta::MetaClient;

/// A topic as Kafka sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTopic {
    /// What Kafka clients call it.
    pub kafka_name: String,
    /// Meta's name, which is also the storage name of its shards.
    pub name: String,
    pub partitions: u32,
    pub id: Uuid,
    pub policy: String,
    pub retention: Option<Retention>,
    pub mqtt_filter: String,
    pub config: HashMap<String, String>,
}

/// A failed admin call: the Kafka error and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub code: i16,
    pub message: String,
}

impl AdminError {
    pub fn new(e: ResponseError, message: impl Into<String>) -> Self {
        AdminError {
            code: e.code(),
            message: message.into(),
        }
    }

    fn from_meta(s: &tonic::Status) -> Self {
        let e = match s.code() {
            tonic::Code::AlreadyExists => ResponseError::TopicAlreadyExists,
            tonic::Code::NotFound => ResponseError::UnknownTopicOrPartition,
            tonic::Code::InvalidArgument => ResponseError::InvalidRequest,
            tonic::Code::FailedPrecondition => ResponseError::InvalidConfig,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                ResponseError::RequestTimedOut
            }
            _ => ResponseError::UnknownServerError,
        };
        AdminError::new(e, s.message())
    }
}

/// A stable, non-nil id per topic incarnation: a topic deleted and re-created under the
/// same name gets a new id (its creation time differs), as Kafka clients expect.
pub fn topic_id(name: &str, created_at_ms: u64) -> Uuid {
    let h = |seed: u64| {
        let mut h = seed;
        for b in name.bytes().chain(created_at_ms.to_be_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    };
    let (hi, lo) = (h(0xcbf2_9ce4_8422_2325), h(0x84222325cbf29ce4));
    Uuid::from_u64_pair(hi, lo | 1)
}

fn kafka_view(t: &Topic) -> KafkaTopic {
    let kafka_name = if t.kafka_name.is_empty() {
        t.name.clone()
    } else {
        t.kafka_name.clone()
    };
    KafkaTopic {
        kafka_name,
        name: t.name.clone(),
        partitions: t.shards,
        id: topic_id(&t.name, t.created_at_ms),
        policy: if t.storage_policy.is_empty() {
            "default".into()
        } else {
            t.storage_policy.clone()
        },
        retention: t.retention,
        mqtt_filter: t.mqtt_filter.clone(),
        config: t.config.clone(),
    }
}

/// How topics are created on a Kafka client's behalf.
#[derive(Debug, Clone)]
pub struct CreateDefaults {
    pub partitions: u32,
    pub policy: String,
}

/// The cache, refreshed from meta periodically and on a miss.
#[derive(Clone)]
pub struct Topics {
    meta: MetaClient,
    by_kafka: Arc<RwLock<BTreeMap<String, KafkaTopic>>>,
    /// Last refresh; a miss refreshes at most this often so unknown names cannot storm meta.
    last: Arc<Mutex<Instant>>,
    pub defaults: CreateDefaults,
}

const MISS_REFRESH_EVERY: Duration = Duration::from_millis(200);

impl Topics {
    pub fn new(meta: MetaClient, defaults: CreateDefaults) -> Self {
        Topics {
            meta,
            by_kafka: Arc::new(RwLock::new(BTreeMap::new())),
            last: Arc::new(Mutex::new(Instant::now() - MISS_REFRESH_EVERY)),
            defaults,
        }
    }

    fn set(&self, topics: &[Topic]) {
        let mut next = BTreeMap::new();
        // Explicit Kafka names win over topics seen under their own name.
        for t in topics.iter().filter(|t| t.kafka_name.is_empty()) {
            next.insert(t.name.clone(), kafka_view(t));
        }
        for t in topics.iter().filter(|t| !t.kafka_name.is_empty()) {
            next.insert(t.kafka_name.clone(), kafka_view(t));
        }
        *self.by_kafka.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    pub async fn refresh(&self) -> Result<(), tonic::Status> {
        let topics = self
            .meta
            .client()
            .list_topics(ListRequest::default())
            .await?
            .into_inner()
            .topics;
        self.set(&topics);
        *self.last.lock().await = Instant::now();
        Ok(())
    }

    /// Keeps the cache fresh: re-read on every topic change in meta and every `every`.
    pub async fn run_refresh(self, every: Duration, cancel: CancellationToken) {
        let meta = self.meta.clone();
        keep_fresh(meta, "topics/", every, cancel, "Kafka topics", || {
            self.refresh()
        })
        .await
    }

    pub fn cached(&self, kafka_name: &str) -> Option<KafkaTopic> {
        self.by_kafka
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kafka_name)
            .cloned()
    }

    /// The topic, re-reading meta on a miss (another broker may have just created it).
    pub async fn get(&self, kafka_name: &str) -> Option<KafkaTopic> {
        if let Some(t) = self.cached(kafka_name) {
            return Some(t);
        }
        {
            let last = self.last.lock().await;
            if last.elapsed() < MISS_REFRESH_EVERY {
                drop(last);
                return self.cached(kafka_name);
            }
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "refreshing Kafka topics after a miss");
        }
        self.cached(kafka_name)
    }

    pub fn all(&self) -> Vec<KafkaTopic> {
        self.by_kafka
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Creates a topic for Kafka (`validate_only` checks without creating).
    pub async fn create(
        &self,
        kafka_name: &str,
        partitions: i32,
        configs: &[(String, Option<String>)],
        validate_only: bool,
    ) -> Result<KafkaTopic, AdminError> {
        let partitions = match partitions {
            -1 => self.defaults.partitions,
            p if p > 0 => p as u32,
            p => {
                return Err(AdminError::new(
                    ResponseError::InvalidPartitions,
                    format!("number of partitions must be positive, got {p}"),
                ));
            }
        };
        if kafka_name.is_empty()
            || kafka_name.len() > 249
            || kafka_name == "."
            || kafka_name == ".."
            || !kafka_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(AdminError::new(
                ResponseError::InvalidTopicException,
                format!("topic name {kafka_name:?} is not 1..=249 characters of [A-Za-z0-9._-]"),
            ));
        }
        let mut topic = Topic {
            name: kafka_name.to_string(),
            shards: partitions,
            storage_policy: self.defaults.policy.clone(),
            ..Default::default()
        };
        apply_configs(&mut topic, configs)?;
        if self.cached(kafka_name).is_some() {
            return Err(AdminError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic {kafka_name:?} already exists"),
            ));
        }
        if validate_only {
            return Ok(kafka_view(&topic));
        }
        let created = self
            .meta
            .client()
            .create_topic(topic)
            .await
            .map_err(|s| AdminError::from_meta(&s))?
            .into_inner()
            .topic
            .unwrap_or_default();
        let _ = self.refresh().await;
        Ok(kafka_view(&created))
    }

    pub async fn delete(&self, kafka_name: &str) -> Result<(), AdminError> {
        let Some(t) = self.get(kafka_name).await else {
            return Err(AdminError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("no topic {kafka_name:?}"),
            ));
        };
        self.meta
            .client()
            .delete_topic(NameRequest { name: t.name })
            .await
            .map_err(|s| AdminError::from_meta(&s))?;
        let _ = self.refresh().await;
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn add_partitions(
        &self,
        kafka_name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let Some(t) = self.get(kafka_name).await else {
            return Err(AdminError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("no topic {kafka_name:?}"),
            ));
        };
        if count <= t.partitions as i32 {
            return Err(AdminError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "topic {kafka_name:?} has {} partitions; the count can only grow",
                    t.partitions
                ),
            ));
        }
        if validate_only {
            return Ok(());
        }
        self.meta
            .client()
            .add_partitions(AddPartitionsRequest {
                name: t.name,
                shards: count as u32,
            })
            .await
            .map_err(|s| AdminError::from_meta(&s))?;
        let _ = self.refresh().await;
        Ok(())
    }
}

/// Kafka topic configs that map onto the topic: retention, and the storage policy
/// (`robustmq.storage.policy`). Compaction is not offered, so asking for it is an error
/// rather than a silent no-op; other keys are kept as given.
fn apply_configs(
    topic: &mut Topic,
    configs: &[(String, Option<String>)],
) -> Result<(), AdminError> {
    let bad = |k: &str, v: &str| {
        AdminError::new(
            ResponseError::InvalidConfig,
            format!("invalid value {v:?} for {k}"),
        )
    };
    for (k, v) in configs {
        let Some(v) = v else { continue };
        match k.as_str() {
            "retention.ms" | "retention.bytes" => {
                let n: i64 = v.parse().map_err(|_| bad(k, v))?;
                let r = topic.retention.get_or_insert_with(Retention::default);
                let keep = if n < 0 { 0 } else { n as u64 };
                if k == "retention.ms" {
                    r.time_ms = keep;
                } else {
                    r.bytes = keep;
                }
            }
            "robustmq.storage.policy" => topic.storage_policy = v.clone(),
            "cleanup.policy" if v != "delete" => {
                return Err(AdminError::new(
                    ResponseError::InvalidConfig,
                    format!("cleanup.policy={v} is not supported (only delete)"),
                ));
            }
            _ => {
                topic.config.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_change_with_incarnation() {
        assert_eq!(topic_id("a", 1), topic_id("a", 1));
        assert_ne!(topic_id("a", 1), topic_id("a", 2));
        assert_ne!(topic_id("a", 1), topic_id("b", 1));
        assert!(!topic_id("", 0).is_nil());
    }

    #[tokio::test]
    async fn explicit_kafka_names_win() {
        let t = Topics::new(
            MetaClient::new("127.0.0.1:1").unwrap(),
            CreateDefaults {
                partitions: 1,
                policy: "default".into(),
            },
        );
        t.set(&[
            Topic {
                name: "x".into(),
                shards: 1,
                ..Default::default()
            },
            Topic {
                name: "sensors".into(),
                kafka_name: "x".into(),
                shards: 4,
                ..Default::default()
            },
        ]);
        let x = t.cached("x").unwrap();
        assert_eq!((x.name.as_str(), x.partitions), ("sensors", 4));
        assert!(t.cached("sensors").is_none());
    }

    #[test]
    fn configs_map_to_the_topic() {
        let mut topic = Topic::default();
        apply_configs(
            &mut topic,
            &[
                ("retention.ms".into(), Some("60000".into())),
                ("retention.bytes".into(), Some("-1".into())),
                ("robustmq.storage.policy".into(), Some("fast".into())),
                ("segment.bytes".into(), Some("1024".into())),
            ],
        )
        .unwrap();
        assert_eq!(topic.retention.unwrap().time_ms, 60000);
        assert_eq!(topic.storage_policy, "fast");
        assert_eq!(topic.config["segment.bytes"], "1024");
        let e = apply_configs(
            &mut topic,
            &[("cleanup.policy".into(), Some("compact".into()))],
        )
        .unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidConfig.code());
        assert!(apply_configs(&mut topic, &[("retention.ms".into(), Some("x".into()))]).is_err());
    }
}

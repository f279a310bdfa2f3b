//! OffsetFetch (v1–9): committed offsets from meta, -1 for a partition without one; all
//! of a group's offsets when no topics are named; several groups at once from v8.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use robustmq_proto::meta::TopicPartition;

use super::{sb, store_error};
use crate::kafka::group::coordinator::GroupCoordinator;

/// One partition's committed position (offset -1: none).
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

impl Fetched {
    fn none(partition: i32) -> Self {
        Fetched {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }
}

type Wanted = Option<Vec<(String, Vec<i32>)>>;
type FetchedTopics = Vec<(String, Vec<Fetched>)>;

impl GroupCoordinator {
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let mut groups = Vec::with_capacity(req.groups.len());
            for g in req.groups {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let group = match self.fetch_group(&g.group_id, wanted).await {
                    Ok(topics) => OffsetFetchResponseGroup::default().with_topics(
                        topics
                            .into_iter()
                            .map(|(name, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(sb(name)))
                                    .with_partitions(parts.into_iter().map(partition_v8).collect())
                            })
                            .collect(),
                    ),
                    Err(e) => OffsetFetchResponseGroup::default().with_error_code(e.code()),
                };
                groups.push(group.with_group_id(g.group_id));
            }
            return OffsetFetchResponse::default().with_groups(groups);
        }

        let wanted: Wanted = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let topics = match self.fetch_group(&req.group_id, wanted.clone()).await {
            Ok(topics) => topics,
            Err(e) if version >= 2 => {
                return OffsetFetchResponse::default().with_error_code(e.code());
            }
            // v1 has no group-level error: every partition asked for carries it.
            Err(e) => {
                let topics = wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, parts)| {
                        let partitions = parts
                            .into_iter()
                            .map(|p| partition(Fetched::none(p), version).with_error_code(e.code()))
                            .collect();
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(sb(name)))
                            .with_partitions(partitions)
                    })
                    .collect();
                return OffsetFetchResponse::default().with_topics(topics);
            }
        };
        let topics = topics
            .into_iter()
            .map(|(name, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(sb(name)))
                    .with_partitions(parts.into_iter().map(|f| partition(f, version)).collect())
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }

    async fn fetch_group(
        &self,
        group_id: &str,
        wanted: Wanted,
    ) -> Result<FetchedTopics, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns_group(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let Some(wanted) = wanted else {
            let all = self
                .store
                .fetch(group_id, Vec::new())
                .await
                .map_err(|e| store_error(&e))?;
            let mut by_topic: BTreeMap<String, Vec<Fetched>> = BTreeMap::new();
            for o in all {
                by_topic.entry(o.topic).or_default().push(Fetched {
                    partition: o.partition as i32,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata,
                });
            }
            return Ok(by_topic.into_iter().collect());
        };
        let asked: Vec<TopicPartition> = wanted
            .iter()
            .flat_map(|(topic, parts)| {
                parts.iter().filter(|p| **p >= 0).map(|p| TopicPartition {
                    topic: topic.clone(),
                    partition: *p as u32,
                })
            })
            .collect();
        // An empty list would mean "everything" to the store.
        let found = if asked.is_empty() {
            Vec::new()
        } else {
            self.store
                .fetch(group_id, asked)
                .await
                .map_err(|e| store_error(&e))?
        };
        let mut found: HashMap<(String, u32), _> = found
            .into_iter()
            .map(|o| ((o.topic.clone(), o.partition), o))
            .collect();
        Ok(wanted
            .into_iter()
            .map(|(topic, parts)| {
                let fetched = parts
                    .into_iter()
                    .map(|p| {
                        let key = (topic.clone(), p.max(0) as u32);
                        match found.remove(&key).filter(|_| p >= 0) {
                            Some(o) => Fetched {
                                partition: p,
                                offset: o.offset,
                                leader_epoch: o.leader_epoch,
                                metadata: o.metadata,
                            },
                            None => Fetched::none(p),
                        }
                    })
                    .collect();
                (topic, fetched)
            })
            .collect())
    }
}

fn partition(f: Fetched, version: i16) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition::default()
        .with_partition_index(f.partition)
        .with_committed_offset(f.offset)
        .with_committed_leader_epoch(if version >= 5 { f.leader_epoch } else { -1 })
        .with_metadata(Some(sb(f.metadata)))
}

fn partition_v8(f: Fetched) -> OffsetFetchResponsePartitions {
    OffsetFetchResponsePartitions::default()
        .with_partition_index(f.partition)
        .with_committed_offset(f.offset)
        .with_committed_leader_epoch(f.leader_epoch)
        .with_metadata(Some(sb(f.metadata)))
}

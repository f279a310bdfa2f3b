//! OffsetCommit and OffsetFetch: the state machine says whether a commit may go ahead,
//! the [`super::OffsetStore`] (meta) holds the offsets. No lock is held while the store
//! is called.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use robustmq_proto::meta::{PartitionOffset, TopicPartition};
use tokio::time::Instant;

use super::service::GroupCoordinator;
use super::{OffsetStoreError, code, store_error};

/// One partition's committed offset as OffsetFetch reports it; -1 when nothing was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Committed {
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl Committed {
    fn none(partition: i32) -> Self {
        Committed {
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl GroupCoordinator {
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        _version: i16,
    ) -> OffsetCommitResponse {
        let group = req.group_id.as_str();
        let generation = req.generation_id_or_member_epoch;
        let allowed = self.check_owner(group).and_then(|()| {
            let instance = req.group_instance_id.as_ref().map(|i| i.as_str());
            match self.groups().get_mut(group) {
                Some(g) => {
                    g.check_commit(req.member_id.as_str(), instance, generation, Instant::now())
                }
                // Offsets only (no group in memory): simple commits are fine; a member of a
                // generation this broker never saw must rejoin first.
                None if generation < 0 => Ok(()),
                None => Err(ResponseError::IllegalGeneration),
            }
        });

        // Per partition in request order: an error found here, or the index of its offset
        // in the batch written to the store.
        let mut batch = Vec::new();
        let mut slots: Vec<Vec<(i32, Result<usize, ResponseError>)>> = Vec::new();
        let committed_at_ms = now_ms();
        for t in &req.topics {
            let mut row = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_ref().map_or("", |m| m.as_str());
                let slot = match (&allowed, u32::try_from(p.partition_index)) {
                    (Err(e), _) => Err(*e),
                    (Ok(()), Err(_)) => Err(ResponseError::UnknownTopicOrPartition),
                    (Ok(()), Ok(_)) if metadata.len() > self.settings.max_metadata_bytes => {
                        Err(ResponseError::OffsetMetadataTooLarge)
                    }
                    (Ok(()), Ok(partition)) => {
                        batch.push(PartitionOffset {
                            topic: t.name.as_str().to_string(),
                            partition,
                            offset: p.committed_offset,
                            metadata: metadata.to_string(),
                            leader_epoch: p.committed_leader_epoch,
                            committed_at_ms,
                        });
                        Ok(batch.len() - 1)
                    }
                };
                row.push((p.partition_index, slot));
            }
            slots.push(row);
        }

        let written = self.commit(group, batch).await;
        let topics = req
            .topics
            .iter()
            .zip(slots)
            .map(|(t, row)| {
                let partitions = row
                    .into_iter()
                    .map(|(partition, slot)| {
                        let error = slot.and_then(|i| written[i].map_or(Ok(i), Err)).err();
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(partition)
                            .with_error_code(code(error))
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Writes `offsets`, returning each one's error. Meta refuses a whole batch for one
    /// unknown topic or partition, so then the topics are retried one by one, and the
    /// partitions of a refused topic one by one, to land every offset that can land.
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Vec<Option<ResponseError>> {
        if offsets.is_empty() {
            return Vec::new();
        }
        match self.store.commit(group, offsets.clone()).await {
            Ok(()) => return vec![None; offsets.len()],
            Err(OffsetStoreError::UnknownPartition { .. }) => {}
            Err(e) => {
                tracing::warn!(group, error = %e, "offset commit failed");
                return vec![Some(store_error(&e)); offsets.len()];
            }
        }
        let mut by_topic: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, o) in offsets.iter().enumerate() {
            by_topic.entry(&o.topic).or_default().push(i);
        }
        // With one topic, the whole batch was that topic: straight to its partitions.
        let single = by_topic.len() == 1;
        let mut out = vec![None; offsets.len()];
        for indexes in by_topic.values() {
            if !single {
                let batch = indexes.iter().map(|&i| offsets[i].clone()).collect();
                match self.store.commit(group, batch).await {
                    Ok(()) => continue,
                    Err(OffsetStoreError::UnknownPartition { .. }) if indexes.len() > 1 => {}
                    Err(e) => {
                        for &i in indexes {
                            out[i] = Some(store_error(&e));
                        }
                        continue;
                    }
                }
            }
            for &i in indexes {
                let one = vec![offsets[i].clone()];
                out[i] = self
                    .store
                    .commit(group, one)
                    .await
                    .err()
                    .map(|e| store_error(&e));
            }
        }
        out
    }

    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let mut groups = Vec::with_capacity(req.groups.len());
            for g in req.groups {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
                        .collect()
                });
                let (error, topics) = match self.fetch(g.group_id.as_str(), wanted).await {
                    Ok(found) => (None, found),
                    Err(e) => (Some(e), Vec::new()),
                };
                let topics = topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&name))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|c| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(c.partition)
                                            .with_committed_offset(c.offset)
                                            .with_committed_leader_epoch(c.leader_epoch)
                                            .with_metadata(Some(StrBytes::from_string(c.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                groups.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_topics(topics)
                        .with_error_code(code(error)),
                );
            }
            return OffsetFetchResponse::default().with_groups(groups);
        }

        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.as_str().to_string(), t.partition_indexes))
                .collect()
        });
        let (error, topics) = match self.fetch(req.group_id.as_str(), wanted.clone()).await {
            Ok(found) => (None, found),
            // v1 has no group-level error: every asked partition carries it.
            Err(e) if version < 2 => (
                Some(e),
                wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, ps)| (t, ps.into_iter().map(Committed::none).collect()))
                    .collect(),
            ),
            Err(e) => (Some(e), Vec::new()),
        };
        let partition_error = if version < 2 { error } else { None };
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|c| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(c.partition)
                                    .with_committed_offset(c.offset)
                                    .with_committed_leader_epoch(if version >= 5 {
                                        c.leader_epoch
                                    } else {
                                        -1
                                    })
                                    .with_metadata(Some(StrBytes::from_string(c.metadata)))
                                    .with_error_code(code(partition_error))
                            })
                            .collect(),
                    )
            })
            .collect();
        let resp = OffsetFetchResponse::default().with_topics(topics);
        if version >= 2 {
            resp.with_error_code(code(error))
        } else {
            resp
        }
    }

    /// The committed offsets of `group`: of the `wanted` partitions (-1 for those without a
    /// commit), or all of them when `wanted` is None; by topic, in topic order when all.
    pub(super) async fn fetch(
        &self,
        group: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<Committed>)>, ResponseError> {
        self.check_owner(group)?;
        let asked: Vec<TopicPartition> = wanted
            .iter()
            .flatten()
            .flat_map(|(topic, partitions)| {
                partitions.iter().filter_map(|&p| {
                    u32::try_from(p).ok().map(|partition| TopicPartition {
                        topic: topic.clone(),
                        partition,
                    })
                })
            })
            .collect();
        if wanted.is_some() && asked.is_empty() {
            // Nothing valid asked: an empty list would mean "everything" to the store.
            return Ok(wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(Committed::none).collect()))
                .collect());
        }
        let stored = self.store.fetch(group, asked).await.map_err(|e| {
            tracing::warn!(group, error = %e, "offset fetch failed");
            store_error(&e)
        })?;
        let committed = |o: PartitionOffset| Committed {
            partition: o.partition as i32,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata,
        };
        match wanted {
            None => {
                let mut by_topic: BTreeMap<String, Vec<Committed>> = BTreeMap::new();
                for o in stored {
                    by_topic
                        .entry(o.topic.clone())
                        .or_default()
                        .push(committed(o));
                }
                for partitions in by_topic.values_mut() {
                    partitions.sort_by_key(|c| c.partition);
                }
                Ok(by_topic.into_iter().collect())
            }
            Some(wanted) => {
                let mut found: HashMap<(String, u32), PartitionOffset> = stored
                    .into_iter()
                    .map(|o| ((o.topic.clone(), o.partition), o))
                    .collect();
                Ok(wanted
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let answers = partitions
                            .into_iter()
                            .map(|p| {
                                u32::try_from(p)
                                    .ok()
                                    .and_then(|u| found.remove(&(topic.clone(), u)))
                                    .map_or_else(|| Committed::none(p), committed)
                            })
                            .collect();
                        (topic, answers)
                    })
                    .collect())
            }
        }
    }
}

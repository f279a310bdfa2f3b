//! OffsetCommit (v2–9): a member of the current generation, or anyone while the group has
//! no members (generation -1, empty member id: kcat, admin tools), writes offsets to meta.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use robustmq_proto::meta::PartitionOffset;

use super::{code, store_error};
use crate::kafka::group::OffsetStoreError;
use crate::kafka::group::coordinator::GroupCoordinator;

/// A partition of the request: its index, and an error now or its place in the batch
/// written to the store.
type Slot = (i32, Result<usize, ResponseError>);

impl GroupCoordinator {
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.0.to_string();
        let allowed = if group_id.is_empty() {
            Err(ResponseError::InvalidGroupId)
        } else if !self.owns_group(&group_id) {
            Err(ResponseError::NotCoordinator)
        } else {
            self.lock().validate_commit(
                &group_id,
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id_or_member_epoch,
                version,
            )
        };
        let max_metadata = self.config().max_metadata_bytes;

        let mut batch: Vec<PartitionOffset> = Vec::new();
        let mut topics: Vec<(TopicName, Vec<Slot>)> = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    let metadata = p.committed_metadata.as_deref().unwrap_or_default();
                    let slot = match allowed {
                        Err(e) => Err(e),
                        Ok(()) if metadata.len() > max_metadata => {
                            Err(ResponseError::OffsetMetadataTooLarge)
                        }
                        Ok(()) if p.partition_index < 0 => {
                            Err(ResponseError::UnknownTopicOrPartition)
                        }
                        Ok(()) => {
                            batch.push(PartitionOffset {
                                topic: t.name.0.to_string(),
                                partition: p.partition_index as u32,
                                offset: p.committed_offset,
                                metadata: metadata.to_string(),
                                leader_epoch: p.committed_leader_epoch,
                                committed_at_ms: 0,
                            });
                            Ok(batch.len() - 1)
                        }
                    };
                    (p.partition_index, slot)
                })
                .collect();
            topics.push((t.name, parts));
        }

        let written = self.commit_batch(&group_id, batch).await;
        let topics = topics
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|(index, slot)| {
                        let error = match slot {
                            Err(e) => Some(e),
                            Ok(i) => written[i],
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(code(error))
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Writes the batch; meta refuses a batch naming an unknown topic or partition as a
    /// whole, so on that answer each partition is retried alone to find which one it is.
    async fn commit_batch(
        &self,
        group_id: &str,
        batch: Vec<PartitionOffset>,
    ) -> Vec<Option<ResponseError>> {
        let n = batch.len();
        if n == 0 {
            return Vec::new();
        }
        match self.store.commit(group_id, batch.clone()).await {
            Ok(()) => vec![None; n],
            Err(OffsetStoreError::NotFound { .. }) if n > 1 => {
                let mut out = Vec::with_capacity(n);
                for o in batch {
                    let r = self.store.commit(group_id, vec![o]).await;
                    out.push(r.err().map(|e| store_error(&e)));
                }
                out
            }
            Err(e) => {
                tracing::warn!(group = group_id, error = %e, "offset commit failed");
                vec![Some(store_error(&e)); n]
            }
        }
    }
}

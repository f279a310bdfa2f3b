//! Where committed offsets live: [`MetaOffsetStore`] over the meta-service (production) and
//! [`MemoryOffsetStore`] (tests and embedding), which behaves as meta does: a commit naming
//! an unknown topic or partition is refused as a whole, and deleting a group without
//! offsets is "not found".

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use robustmq_proto::meta::{CommitOffsetsRequest, FetchOffsetsRequest, ListRequest, NameRequest};
use robustmq_proto::meta::{PartitionOffset, TopicPartition};
use tonic::Code;

use super::{OffsetStore, OffsetStoreError};
use crate::meta::MetaClient;

/// Offsets in meta (keys `offsets/{group}/{topic}/{partition}`), shared by every broker, so
/// a group moving to another coordinator loses nothing.
pub struct MetaOffsetStore {
    meta: MetaClient,
}

impl MetaOffsetStore {
    pub fn new(meta: MetaClient) -> Self {
        MetaOffsetStore { meta }
    }
}

fn unavailable(call: &'static str, group: &str, status: &tonic::Status) -> OffsetStoreError {
    OffsetStoreError::Unavailable {
        call,
        group: group.to_string(),
        detail: format!("{:?}: {}", status.code(), status.message()),
    }
}

#[async_trait::async_trait]
impl OffsetStore for MetaOffsetStore {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), OffsetStoreError> {
        let req = CommitOffsetsRequest {
            group: group.to_string(),
            offsets,
        };
        match self.meta.client().commit_offsets(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Err(OffsetStoreError::UnknownPartition {
                group: group.to_string(),
                detail: s.message().to_string(),
            }),
            Err(s) if s.code() == Code::InvalidArgument => Err(OffsetStoreError::Invalid {
                group: group.to_string(),
                detail: s.message().to_string(),
            }),
            Err(s) => Err(unavailable("CommitOffsets", group, &s)),
        }
    }

    async fn fetch(
        &self,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<PartitionOffset>, OffsetStoreError> {
        let req = FetchOffsetsRequest {
            group: group.to_string(),
            partitions,
        };
        match self.meta.client().fetch_offsets(req).await {
            Ok(r) => Ok(r.into_inner().offsets),
            Err(s) => Err(unavailable("FetchOffsets", group, &s)),
        }
    }

    async fn list_groups(&self) -> Result<Vec<String>, OffsetStoreError> {
        match self.meta.client().list_groups(ListRequest::default()).await {
            Ok(r) => Ok(r.into_inner().groups),
            Err(s) => Err(unavailable("ListGroups", "", &s)),
        }
    }

    async fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        let req = NameRequest {
            name: group.to_string(),
        };
        match self.meta.client().delete_group(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Err(OffsetStoreError::GroupNotFound {
                group: group.to_string(),
            }),
            Err(s) => Err(unavailable("DeleteGroup", group, &s)),
        }
    }
}

type Offsets = BTreeMap<(String, u32), PartitionOffset>;

/// Offsets in this process. With [`MemoryOffsetStore::with_topics`] it refuses partitions
/// of unknown topics as meta does; without, it takes any.
#[derive(Default)]
pub struct MemoryOffsetStore {
    groups: Mutex<BTreeMap<String, Offsets>>,
    topics: Option<HashMap<String, u32>>,
}

impl MemoryOffsetStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts commits only for these topics, each with this many partitions.
    pub fn with_topics(topics: &[(&str, u32)]) -> Self {
        MemoryOffsetStore {
            groups: Mutex::default(),
            topics: Some(topics.iter().map(|&(t, n)| (t.to_string(), n)).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Offsets>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl OffsetStore for MemoryOffsetStore {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), OffsetStoreError> {
        if let Some(topics) = &self.topics
            && let Some(o) = offsets
                .iter()
                .find(|o| topics.get(&o.topic).is_none_or(|&n| o.partition >= n))
        {
            return Err(OffsetStoreError::UnknownPartition {
                group: group.to_string(),
                detail: format!("{}/{}", o.topic, o.partition),
            });
        }
        let mut groups = self.lock();
        let stored = groups.entry(group.to_string()).or_default();
        for o in offsets {
            stored.insert((o.topic.clone(), o.partition), o);
        }
        Ok(())
    }

    async fn fetch(
        &self,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<PartitionOffset>, OffsetStoreError> {
        let groups = self.lock();
        let Some(stored) = groups.get(group) else {
            return Ok(Vec::new());
        };
        if partitions.is_empty() {
            return Ok(stored.values().cloned().collect());
        }
        Ok(partitions
            .into_iter()
            .filter_map(|p| stored.get(&(p.topic, p.partition)).cloned())
            .collect())
    }

    async fn list_groups(&self) -> Result<Vec<String>, OffsetStoreError> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        match self.lock().remove(group) {
            Some(_) => Ok(()),
            None => Err(OffsetStoreError::GroupNotFound {
                group: group.to_string(),
            }),
        }
    }
}

//! Where committed offsets live: [`MetaOffsetStore`] over the meta-service (production),
//! and [`MemoryOffsetStore`], a map with the same rules for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use robustmq_proto::meta::{
    CommitOffsetsRequest, FetchOffsetsRequest, ListRequest, NameRequest, PartitionOffset,
    TopicPartition,
};
use tonic::Code;

use super::{OffsetStore, OffsetStoreError};
use crate::meta::MetaClient;

/// Offsets in meta under `offsets/{group}/{topic}/{partition}`. Meta rejects a commit that
/// names an unknown topic or partition as a whole (NotFound).
pub struct MetaOffsetStore {
    meta: MetaClient,
}

impl MetaOffsetStore {
    pub fn new(meta: MetaClient) -> Self {
        MetaOffsetStore { meta }
    }
}

fn from_status(call: &'static str, group: &str, s: tonic::Status) -> OffsetStoreError {
    let detail = s.message().to_string();
    let group = group.to_string();
    match s.code() {
        Code::NotFound => OffsetStoreError::NotFound { group, detail },
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            OffsetStoreError::Invalid { group, detail }
        }
        _ => OffsetStoreError::Unavailable {
            call,
            detail: format!("{}: {detail}", s.code()),
        },
    }
}

#[async_trait::async_trait]
impl OffsetStore for MetaOffsetStore {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), OffsetStoreError> {
        self.meta
            .client()
            .commit_offsets(CommitOffsetsRequest {
                group: group.to_string(),
                offsets,
            })
            .await
            .map(|_| ())
            .map_err(|s| from_status("CommitOffsets", group, s))
    }

    async fn fetch(
        &self,
        group: &str,
        partitions: Vec<TopicPartition>,
    ) -> Result<Vec<PartitionOffset>, OffsetStoreError> {
        self.meta
            .client()
            .fetch_offsets(FetchOffsetsRequest {
                group: group.to_string(),
                partitions,
            })
            .await
            .map(|r| r.into_inner().offsets)
            .map_err(|s| from_status("FetchOffsets", group, s))
    }

    async fn list_groups(&self) -> Result<Vec<String>, OffsetStoreError> {
        self.meta
            .client()
            .list_groups(ListRequest::default())
            .await
            .map(|r| r.into_inner().groups)
            .map_err(|s| from_status("ListGroups", "", s))
    }

    async fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        self.meta
            .client()
            .delete_group(NameRequest {
                name: group.to_string(),
            })
            .await
            .map(|_| ())
            .map_err(|s| from_status("DeleteGroup", group, s))
    }
}

type GroupOffsets = BTreeMap<(String, u32), PartitionOffset>;

/// An in-memory [`OffsetStore`] that validates commits against a fixed topic catalog the
/// way meta does (all or nothing, NotFound for an unknown topic or partition). It can be
/// switched to fail every call, to exercise the coordinator's error paths.
#[derive(Default)]
pub struct MemoryOffsetStore {
    topics: HashMap<String, u32>,
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    groups: BTreeMap<String, GroupOffsets>,
    unavailable: bool,
}

impl MemoryOffsetStore {
    /// `topics`: `(name, partition count)` that commits may name.
    pub fn new<'a>(topics: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        MemoryOffsetStore {
            topics: topics
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
            inner: Mutex::default(),
        }
    }

    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(inner: &MemoryInner, call: &'static str) -> Result<(), OffsetStoreError> {
        if inner.unavailable {
            return Err(OffsetStoreError::Unavailable {
                call,
                detail: "store switched off".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl OffsetStore for MemoryOffsetStore {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<PartitionOffset>,
    ) -> Result<(), OffsetStoreError> {
        let mut inner = self.lock();
        Self::check(&inner, "CommitOffsets")?;
        if group.is_empty() {
            return Err(OffsetStoreError::Invalid {
                group: group.into(),
                detail: "group must not be empty".into(),
            });
        }
        if let Some(o) = offsets
            .iter()
            .find(|o| self.topics.get(&o.topic).is_none_or(|n| o.partition >= *n))
        {
            return Err(OffsetStoreError::NotFound {
                group: group.into(),
                detail: format!("partition {}/{} not found", o.topic, o.partition),
            });
        }
        let stored = inner.groups.entry(group.to_string()).or_default();
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
        let inner = self.lock();
        Self::check(&inner, "FetchOffsets")?;
        let Some(stored) = inner.groups.get(group) else {
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
        let inner = self.lock();
        Self::check(&inner, "ListGroups")?;
        Ok(inner.groups.keys().cloned().collect())
    }

    async fn delete_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        let mut inner = self.lock();
        Self::check(&inner, "DeleteGroup")?;
        match inner.groups.remove(group) {
            Some(_) => Ok(()),
            None => Err(OffsetStoreError::NotFound {
                group: group.into(),
                detail: "group has no offsets".into(),
            }),
        }
    }
}

//! The replicated state: an ordered key space with revisions, plus the deterministic logic
//! that applies [`Command`]s to it.
//!
//! Invariants:
//! - Every replica applies the same commands in the same order with the same `now_ms`, so
//!   apply must depend on nothing else (no clocks, no randomness, no I/O).
//! - A command either fails without changing anything, or records all of its changes:
//!   each handler validates before its first write.
//! - Every change bumps the revision by one; changes are kept in a bounded history so that
//!   watchers can resume from a revision.

pub mod commands;
mod domain;
pub use domain::{DEFAULT_POLICY, normalize_policy, normalize_topic};
pub mod mqtt_topic;
pub mod validate;

use std::collections::{BTreeMap, HashMap, VecDeque, btree_map};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use serde::{Deserialize, Serialize};

pub use commands::{Command, Output, Pb, Request, Response};

use crate::error::MetaResult;

/// A stored value and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub data: Bytes,
    pub mod_revision: u64,
}

/// One change of one key, as kept in the history and streamed to watchers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub revision: u64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<Bytes>,
}

/// Counters that are part of the replicated state but not of the key space.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub next_producer_id: i64,
    pub next_acl_id: u64,
}

/// Indexes derived from the key space, rebuilt on load and kept current by `put`/`delete`.
#[derive(Debug, Default, Clone)]
struct Indexes {
    /// Kafka name -> topic name.
    kafka_names: HashMap<String, String>,
    /// MQTT filter -> topic name.
    mqtt_filters: HashMap<String, String>,
    /// Journal node id -> number of shard replicas it hosts.
    journal_load: HashMap<u64, u64>,
    /// Journal node id -> number of shards it leads.
    journal_leads: HashMap<u64, u64>,
    /// Storage policy -> number of topics using it.
    policy_users: HashMap<String, u64>,
}

/// The whole replicated state.
#[derive(Debug, Clone)]
pub struct State {
    kv: BTreeMap<String, Value>,
    revision: u64,
    counters: Counters,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// The oldest revision a watcher may still resume from.
    compact_revision: u64,
    indexes: Indexes,
    /// Changes recorded by the command being applied, drained by the caller.
    pending: Vec<Arc<Change>>,
}

/// The serializable image of a [`State`], used for snapshots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateImage {
    pub revision: u64,
    pub counters: Counters,
    pub entries: Vec<(String, Value)>,
}

impl State {
    pub fn new(history_limit: usize) -> Self {
        Self {
            kv: BTreeMap::new(),
            revision: 0,
            counters: Counters {
                next_producer_id: 1000,
                next_acl_id: 1,
            },
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compact_revision: 1,
            indexes: Indexes::default(),
            pending: Vec::new(),
        }
    }

    /// Rebuilds a state from an image (a snapshot or the persisted key space). The history
    /// starts empty: watchers older than the image's revision must re-list.
    pub fn from_image(image: StateImage, history_limit: usize) -> Self {
        let mut s = Self::new(history_limit);
        s.revision = image.revision;
        s.counters = image.counters;
        s.compact_revision = image.revision + 1;
        s.kv = image.entries.into_iter().collect();
        s.rebuild_indexes();
        s
    }

    pub fn image(&self) -> StateImage {
        StateImage {
            revision: self.revision,
            counters: self.counters.clone(),
            entries: self
                .kv
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Restores history persisted beside the key space (oldest first).
    fn restore_history(&mut self, changes: Vec<Arc<Change>>) {
        if changes.is_empty() {
            return;
        }
        for c in changes {
            if c.revision > self.revision {
                continue;
            }
            self.history.push_back(c);
        }
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        self.compact_revision = self
            .history
            .front()
            .map(|c| c.revision)
            .unwrap_or(self.revision + 1);
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Recovery: replays persisted change batches applied after the image, restoring the
    /// keys, revision, counters and watch history they describe.
    pub fn replay(&mut self, batches: &[(Vec<Arc<Change>>, Counters)]) {
        let mut history = Vec::new();
        for (changes, counters) in batches {
            for c in changes {
                if let Some(old) = self.kv.remove(&c.key) {
                    self.unindex(&c.key, &old.data);
                }
                if let Some(data) = &c.value {
                    self.index(&c.key, data);
                    self.kv.insert(
                        c.key.clone(),
                        Value {
                            data: data.clone(),
                            mod_revision: c.revision,
                        },
                    );
                }
                self.revision = self.revision.max(c.revision);
                history.push(c.clone());
            }
            self.counters = counters.clone();
        }
        self.restore_history(history);
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether expiry work is due (the leader proposes a sweep only then).
    pub fn needs_sweep(&self, now_ms: u64) -> bool {
        domain::needs_sweep(self, now_ms)
    }

    pub fn compact_revision(&self) -> u64 {
        self.compact_revision
    }

    /// Applies a batch. Returns one result per command and every change made, in revision
    /// order.
    pub fn apply(&mut self, request: &Request) -> (Vec<MetaResult<Output>>, Vec<Arc<Change>>) {
        let mut results = Vec::with_capacity(request.commands.len());
        for cmd in request.commands.iter() {
            results.push(domain::apply(self, cmd, request.now_ms));
        }
        let changes = std::mem::take(&mut self.pending);
        for c in &changes {
            self.history.push_back(c.clone());
        }
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        if let Some(front) = self.history.front() {
            self.compact_revision = front.revision;
        }
        (results, changes)
    }

    // ---------------------------------------------------------------- reads

    pub fn get_raw(&self, key: &str) -> Option<&Value> {
        self.kv.get(key)
    }

    pub fn get<T: Message + Default>(&self, key: &str) -> Option<T> {
        self.kv
            .get(key)
            .and_then(|v| T::decode(v.data.as_ref()).ok())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.kv.contains_key(key)
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn scan<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.kv
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    pub fn list<T: Message + Default>(&self, prefix: &str) -> Vec<T> {
        self.scan(prefix)
            .filter_map(|(_, v)| T::decode(v.data.as_ref()).ok())
            .collect()
    }

    /// History changes with revision >= `from`, or `None` when the history no longer
    /// reaches back that far.
    pub fn changes_since(&self, from: u64) -> Option<Vec<Arc<Change>>> {
        if from < self.compact_revision {
            return None;
        }
        let start = self.history.partition_point(|c| c.revision < from);
        Some(self.history.iter().skip(start).cloned().collect())
    }

    // ---------------------------------------------------------------- writes (apply only)

    fn put<T: Message>(&mut self, key: String, msg: &T) {
        self.put_raw(key, Bytes::from(msg.encode_to_vec()));
    }

    fn put_raw(&mut self, key: String, data: Bytes) {
        self.revision += 1;
        let revision = self.revision;
        let value = Value {
            data: data.clone(),
            mod_revision: revision,
        };
        // One search of the key space: with many keys, string comparisons along the
        // B-tree path are most of the cost of a write's apply.
        let (key, old) = match self.kv.entry(key) {
            btree_map::Entry::Vacant(v) => {
                let key = v.key().clone();
                v.insert(value);
                (key, None)
            }
            btree_map::Entry::Occupied(mut o) => {
                let key = o.key().clone();
                (key, Some(o.insert(value)))
            }
        };
        if let Some(old) = old {
            self.unindex(&key, &old.data);
        }
        self.index(&key, &data);
        self.pending.push(Arc::new(Change {
            revision,
            key,
            value: Some(data),
        }));
    }

    fn delete(&mut self, key: &str) -> bool {
        let Some(old) = self.kv.remove(key) else {
            return false;
        };
        self.unindex(key, &old.data);
        self.revision += 1;
        self.pending.push(Arc::new(Change {
            revision: self.revision,
            key: key.to_string(),
            value: None,
        }));
        true
    }

    fn delete_prefix(&mut self, prefix: &str) -> usize {
        let keys: Vec<String> = self.scan(prefix).map(|(k, _)| k.clone()).collect();
        for k in &keys {
            self.delete(k);
        }
        keys.len()
    }

    // ---------------------------------------------------------------- derived indexes

    fn rebuild_indexes(&mut self) {
        self.indexes = Indexes::default();
        let entries: Vec<(String, Bytes)> = self
            .kv
            .iter()
            .map(|(k, v)| (k.clone(), v.data.clone()))
            .collect();
        for (k, v) in entries {
            self.index(&k, &v);
        }
    }

    fn index(&mut self, key: &str, data: &[u8]) {
        self.reindex(key, data, 1);
    }

    fn unindex(&mut self, key: &str, data: &[u8]) {
        self.reindex(key, data, -1);
    }

    fn reindex(&mut self, key: &str, data: &[u8], delta: i64) {
        use robustmq_proto::meta::{ShardPlacement, Topic};
        let ix = &mut self.indexes;
        if key.starts_with(crate::keys::TOPICS) {
            let Ok(t) = Topic::decode(data) else { return };
            if delta > 0 {
                ix.kafka_names.insert(t.kafka_name.clone(), t.name.clone());
                if !t.mqtt_filter.is_empty() {
                    ix.mqtt_filters
                        .insert(t.mqtt_filter.clone(), t.name.clone());
                }
            } else {
                ix.kafka_names.remove(&t.kafka_name);
                ix.mqtt_filters.remove(&t.mqtt_filter);
            }
            bump(&mut ix.policy_users, t.storage_policy, delta);
        } else if key.starts_with(crate::keys::SHARDS) {
            let Ok(p) = ShardPlacement::decode(data) else {
                return;
            };
            for r in p.replicas {
                bump(&mut ix.journal_load, r, delta);
            }
            if p.leader != 0 {
                bump(&mut ix.journal_leads, p.leader, delta);
            }
        }
    }
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, delta: i64) {
    let e = map.entry(key).or_insert(0);
    *e = e.saturating_add_signed(delta);
}

#[cfg(test)]
mod tests;

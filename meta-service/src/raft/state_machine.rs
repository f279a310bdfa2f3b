//! The Raft state machine: the in-memory [`State`] for fast reads, persisted in sled as it
//! is applied, with snapshots built from and installed into it.
//!
//! Tree `sm` layout:
//! ```text
//! d/{key}            -> mod_revision (8 bytes BE) ++ value
//! h/{revision BE}    -> encoded Change (the watch history)
//! m/applied          -> (last applied log id, last membership)
//! m/state            -> (revision, counters)
//! m/installing       -> present while a snapshot is being installed
//! ```
//! Each apply call becomes one atomic sled batch, written in order by a dedicated writer
//! thread so that disk writes stay off the reply path. The log, not this tree, is the
//! durable source: after a crash the tree may be behind (by whole batches, never half of
//! one), and Raft re-applies from `m/applied`.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{
    Entry, LogId, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, decode, encode,
    read_err, write_err,
};
use crate::store::{Change, Counters, Response, State, StateImage, Value};

const APPLIED: &[u8] = b"m/applied";
const STATE: &[u8] = b"m/state";
const INSTALLING: &[u8] = b"m/installing";
const CURRENT_SNAPSHOT: &[u8] = b"current";

/// What watchers are told after each apply.
#[derive(Debug, Clone)]
pub enum Signal {
    Changes(Arc<Vec<Arc<Change>>>),
    /// The state was replaced by a snapshot: watchers must re-list.
    Reset,
}

/// State shared between the state machine (writer) and the readers (gRPC, watch, admin).
pub struct Shared {
    pub state: RwLock<State>,
    applied: RwLock<(Option<LogId>, StoredMembership)>,
    pub last_applied_index: AtomicU64,
    pub signals: broadcast::Sender<Signal>,
    writer: Writer,
}

impl Shared {
    /// Waits until every applied batch is written to sled (for a clean shutdown).
    pub fn drain_writes(&self) -> Result<(), StorageError<NodeId>> {
        self.writer.drain()
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.applied.read().expect("applied lock").0
    }
}

#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
    tree: sled::Tree,
    snapshots: sled::Tree,
    history_limit: usize,
    snapshot_seq: Arc<AtomicU64>,
    /// Lowest revision that may still be persisted in `h/`.
    history_floor: Arc<AtomicU64>,
    writer: Writer,
}

/// Work for the writer thread, in apply order.
enum WriteOp {
    Apply(Box<Persist>),
    /// Answered once everything queued before it is written.
    Barrier(std::sync::mpsc::SyncSender<()>),
}

struct Persist {
    changes: Arc<Vec<Arc<Change>>>,
    applied: (Option<LogId>, StoredMembership),
    revision: u64,
    counters: Counters,
    /// Persisted history below this revision is deleted.
    trim: std::ops::Range<u64>,
}

/// Persists applied batches on its own thread, in order, one atomic sled batch each.
#[derive(Clone)]
struct Writer {
    tx: std::sync::mpsc::SyncSender<WriteOp>,
    /// Set when a write failed: the next apply reports it, which stops Raft.
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl Writer {
    fn start(tree: sled::Tree) -> Self {
        // Bounded: a disk that falls behind slows apply down instead of queueing forever.
        let (tx, rx) = std::sync::mpsc::sync_channel::<WriteOp>(64);
        let failed = Arc::new(std::sync::Mutex::new(None));
        let flag = failed.clone();
        std::thread::Builder::new()
            .name("sm-writer".into())
            .spawn(move || {
                for op in rx {
                    match op {
                        WriteOp::Barrier(done) => {
                            let _ = done.send(());
                        }
                        WriteOp::Apply(p) => {
                            if let Err(e) = persist(&tree, &p) {
                                tracing::error!(error = %e, "persisting the state machine failed");
                                *flag.lock().expect("writer flag") = Some(e.to_string());
                            }
                        }
                    }
                }
            })
            .expect("spawn the state machine writer");
        Self { tx, failed }
    }

    fn send(&self, op: WriteOp) -> Result<(), StorageError<NodeId>> {
        if let Some(e) = self.failed.lock().expect("writer flag").clone() {
            return Err(write_err(std::io::Error::other(e)));
        }
        self.tx
            .send(op)
            .map_err(|_| write_err(std::io::Error::other("the state machine writer stopped")))
    }

    /// Waits until every batch queued so far is written.
    fn drain(&self) -> Result<(), StorageError<NodeId>> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.send(WriteOp::Barrier(done))?;
        wait.recv()
            .map_err(|_| write_err(std::io::Error::other("the state machine writer stopped")))
    }
}

fn persist(tree: &sled::Tree, p: &Persist) -> Result<(), Box<dyn std::error::Error>> {
    let mut batch = sled::Batch::default();
    for c in p.changes.iter() {
        match &c.value {
            Some(v) => batch.insert(
                data_key(&c.key),
                encode_value(&Value {
                    data: v.clone(),
                    mod_revision: c.revision,
                }),
            ),
            None => batch.remove(data_key(&c.key)),
        }
        batch.insert(history_key(c.revision), encode(c.as_ref())?);
    }
    for rev in p.trim.clone() {
        batch.remove(history_key(rev));
    }
    batch.insert(STATE, encode(&(p.revision, &p.counters))?);
    batch.insert(APPLIED, encode(&p.applied)?);
    tree.apply_batch(batch)?;
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: StateImage,
}

fn data_key(key: &str) -> Vec<u8> {
    let mut k = b"d/".to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

fn history_key(revision: u64) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(&revision.to_be_bytes());
    k
}

fn encode_value(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + v.data.len());
    out.extend_from_slice(&v.mod_revision.to_be_bytes());
    out.extend_from_slice(&v.data);
    out
}

fn decode_value(b: &[u8]) -> Option<Value> {
    let (rev, data) = b.split_at_checked(8)?;
    Some(Value {
        mod_revision: u64::from_be_bytes(rev.try_into().ok()?),
        data: Bytes::copy_from_slice(data),
    })
}

impl StateMachineStore {
    /// Opens the persisted state machine, finishing an interrupted snapshot install.
    pub fn open(db: &sled::Db, history_limit: usize) -> Result<Self, StorageError<NodeId>> {
        let tree = db.open_tree("sm").map_err(read_err)?;
        let snapshots = db.open_tree("sm_snapshot").map_err(read_err)?;
        let (signals, _) = broadcast::channel(1024);
        let writer = Writer::start(tree.clone());
        let store = Self {
            writer: writer.clone(),
            shared: Arc::new(Shared {
                writer,
                state: RwLock::new(State::new(history_limit)),
                applied: RwLock::new((None, StoredMembership::default())),
                last_applied_index: AtomicU64::new(0),
                signals,
            }),
            tree,
            snapshots,
            history_limit,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            history_floor: Arc::new(AtomicU64::new(0)),
        };
        if store.tree.contains_key(INSTALLING).map_err(read_err)? {
            if let Some((meta, data)) = store.read_snapshot()? {
                store.install(&meta, &data)?;
            }
        } else {
            store.load()?;
        }
        Ok(store)
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn load(&self) -> Result<(), StorageError<NodeId>> {
        let mut entries = Vec::new();
        for kv in self.tree.scan_prefix(b"d/") {
            let (k, v) = kv.map_err(read_err)?;
            let key = String::from_utf8_lossy(&k[2..]).into_owned();
            if let Some(v) = decode_value(&v) {
                entries.push((key, v));
            }
        }
        let (revision, counters): (u64, Counters) = match self.tree.get(STATE).map_err(read_err)? {
            Some(b) => decode(&b).map_err(read_err)?,
            None => (0, State::new(1).counters().clone()),
        };
        let mut history = Vec::new();
        for kv in self.tree.scan_prefix(b"h/") {
            let (_, v) = kv.map_err(read_err)?;
            history.push(decode::<Change>(&v).map_err(read_err)?);
        }
        let mut state = State::from_image(
            StateImage {
                revision,
                counters,
                entries,
            },
            self.history_limit,
        );
        if let Some(first) = history.first() {
            self.history_floor.store(first.revision, Ordering::Relaxed);
        }
        state.restore_history(history);
        let applied: (Option<LogId>, StoredMembership) =
            match self.tree.get(APPLIED).map_err(read_err)? {
                Some(b) => decode(&b).map_err(read_err)?,
                None => (None, StoredMembership::default()),
            };
        self.set_applied(applied);
        *self.shared.state.write().expect("state lock") = state;
        Ok(())
    }

    fn set_applied(&self, applied: (Option<LogId>, StoredMembership)) {
        self.shared
            .last_applied_index
            .store(applied.0.map_or(0, |l| l.index), Ordering::Relaxed);
        *self.shared.applied.write().expect("applied lock") = applied;
    }

    fn read_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError<NodeId>> {
        match self.snapshots.get(CURRENT_SNAPSHOT).map_err(read_err)? {
            Some(b) => Ok(Some(decode(&b).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    /// Replaces the whole state with a snapshot's, on disk and in memory.
    fn install(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError<NodeId>> {
        let file: SnapshotFile = decode(data).map_err(read_err)?;
        // Batches still queued belong to the state being replaced; let them land first.
        self.writer.drain()?;
        self.tree.insert(INSTALLING, &[]).map_err(write_err)?;
        self.snapshots
            .insert(CURRENT_SNAPSHOT, encode(&(meta, data)).map_err(write_err)?)
            .map_err(write_err)?;
        let mut clear = sled::Batch::default();
        for kv in self.tree.iter() {
            let (k, _) = kv.map_err(read_err)?;
            if k.as_ref() != INSTALLING {
                clear.remove(k);
            }
        }
        self.tree.apply_batch(clear).map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for (k, v) in &file.image.entries {
            batch.insert(data_key(k), encode_value(v));
        }
        batch.insert(
            STATE,
            encode(&(file.image.revision, &file.image.counters)).map_err(write_err)?,
        );
        let applied = (meta.last_log_id, meta.last_membership.clone());
        batch.insert(APPLIED, encode(&applied).map_err(write_err)?);
        batch.remove(INSTALLING);
        self.tree.apply_batch(batch).map_err(write_err)?;
        self.set_applied(applied);
        self.history_floor
            .store(file.image.revision + 1, Ordering::Relaxed);
        *self.shared.state.write().expect("state lock") =
            State::from_image(file.image, self.history_limit);
        let _ = self.shared.signals.send(Signal::Reset);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError<NodeId>> {
        let (file, last_applied, membership) = {
            let state = self.shared.state.read().expect("state lock");
            let applied = self.shared.applied.read().expect("applied lock").clone();
            (
                SnapshotFile {
                    last_applied: applied.0,
                    membership: applied.1.clone(),
                    image: state.image(),
                },
                applied.0,
                applied.1,
            )
        };
        let data = encode(&file).map_err(write_err)?;
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.snapshots
            .insert(
                CURRENT_SNAPSHOT,
                encode(&(&meta, &data)).map_err(write_err)?,
            )
            .map_err(write_err)?;
        self.snapshots.flush_async().await.map_err(write_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<NodeId>> {
        Ok(self.shared.applied.read().expect("applied lock").clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut changes = Vec::new();
        let mut applied = self.shared.applied.read().expect("applied lock").clone();
        let (revision, counters, compact_revision) = {
            let mut state = self.shared.state.write().expect("state lock");
            for entry in entries {
                applied.0 = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => responses.push(Response::default()),
                    EntryPayload::Normal(req) => {
                        let (results, c) = state.apply(&req);
                        changes.extend(c);
                        responses.push(Response { results });
                    }
                    EntryPayload::Membership(m) => {
                        applied.1 = StoredMembership::new(Some(entry.log_id), m);
                        responses.push(Response::default());
                    }
                }
            }
            (
                state.revision(),
                state.counters().clone(),
                state.compact_revision(),
            )
        };

        let floor = self.history_floor.swap(compact_revision, Ordering::Relaxed);
        let changes = Arc::new(changes);
        self.writer.send(WriteOp::Apply(Box::new(Persist {
            changes: changes.clone(),
            applied: applied.clone(),
            revision,
            counters,
            trim: floor.min(compact_revision)..compact_revision,
        })))?;
        self.set_applied(applied);

        if !changes.is_empty() {
            let _ = self.shared.signals.send(Signal::Changes(changes));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.install(meta, snapshot.get_ref())?;
        self.tree.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError<NodeId>> {
        Ok(self.read_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

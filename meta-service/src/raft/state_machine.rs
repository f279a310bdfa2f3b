//! The Raft state machine: the in-memory [`State`] for fast reads, persisted in sled as the
//! latest snapshot plus the change batches applied since.
//!
//! Layout:
//! ```text
//! tree sm_snapshot: current        -> (SnapshotMeta, encoded SnapshotFile): the full image
//! tree sm:          c/{index BE}   -> ChangeBatch: what one apply call changed, with the
//!                                     applied log id, revision and counters after it
//! ```
//! Persisting one value per apply call (instead of one key per changed key) keeps sled's
//! copy-on-write B-tree small, which is where the CPU went. Recovery loads the snapshot and
//! replays the batches after it; building a snapshot deletes the batches it covers.
//!
//! Batches are written in order by a dedicated writer thread, off the reply path. The Raft
//! log, not this tree, is the durable source: after a crash the tree may be behind by whole
//! batches (never half of one), and Raft re-applies from the last persisted applied id.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{
    Entry, LogId, NodeId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, decode, encode,
    read_err, write_err,
};
use crate::store::{Change, Counters, Response, State, StateImage};

const CURRENT_SNAPSHOT: &[u8] = b"current";

type Applied = (Option<LogId>, StoredMembership);

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
    applied: RwLock<Applied>,
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
    writer: Writer,
}

/// One apply call's persisted record.
#[derive(Serialize, Deserialize)]
struct ChangeBatch {
    applied: Applied,
    counters: Counters,
    /// Shared with the history and the watchers (encoded as plain changes).
    #[serde(with = "shared_changes")]
    changes: Vec<Arc<Change>>,
}

/// Serde of `Vec<Arc<Change>>` as a sequence of changes.
mod shared_changes {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::store::Change;

    pub fn serialize<S: Serializer>(v: &[Arc<Change>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|c| c.as_ref()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<Change>>, D::Error> {
        Ok(Vec::<Change>::deserialize(d)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    image: StateImage,
}

fn batch_key(index: u64) -> Vec<u8> {
    let mut k = b"c/".to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Work for the writer thread, in apply order.
enum WriteOp {
    Batch(u64, Box<ChangeBatch>),
    /// Deletes the batches up to and including this log index (covered by a snapshot).
    Compact(u64),
    /// Answered once everything queued before it is written.
    Barrier(SyncSender<()>),
}

/// Persists applied batches on its own thread, in order.
#[derive(Clone)]
struct Writer {
    tx: SyncSender<WriteOp>,
    /// Set when a write failed: the next apply reports it, which stops Raft.
    failed: Arc<Mutex<Option<String>>>,
}

impl Writer {
    fn start(tree: sled::Tree) -> Self {
        // Bounded: a disk that falls behind slows apply down instead of queueing forever.
        let (tx, rx) = sync_channel::<WriteOp>(64);
        let failed = Arc::new(Mutex::new(None));
        let flag = failed.clone();
        std::thread::Builder::new()
            .name("sm-writer".into())
            .spawn(move || {
                for op in rx {
                    if let Err(e) = write_op(&tree, op) {
                        tracing::error!(error = %e, "persisting the state machine failed");
                        *flag.lock().expect("writer flag") = Some(e.to_string());
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
        let (done, wait) = sync_channel(1);
        self.send(WriteOp::Barrier(done))?;
        wait.recv()
            .map_err(|_| write_err(std::io::Error::other("the state machine writer stopped")))
    }
}

fn write_op(tree: &sled::Tree, op: WriteOp) -> Result<(), Box<dyn std::error::Error>> {
    match op {
        WriteOp::Batch(index, batch) => {
            tree.insert(batch_key(index), encode(&*batch)?)?;
        }
        WriteOp::Compact(upto) => {
            let mut batch = sled::Batch::default();
            for kv in tree.range(batch_key(0)..=batch_key(upto)) {
                batch.remove(kv?.0);
            }
            tree.apply_batch(batch)?;
        }
        WriteOp::Barrier(done) => {
            let _ = done.send(());
        }
    }
    Ok(())
}

impl StateMachineStore {
    /// Opens the persisted state machine: the latest snapshot plus the batches after it.
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
        };
        store.load()?;
        Ok(store)
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn load(&self) -> Result<(), StorageError<NodeId>> {
        let (mut state, mut applied) = match self.read_snapshot()? {
            Some((meta, data)) => {
                let file: SnapshotFile = decode(&data).map_err(read_err)?;
                (
                    State::from_image(file.image, self.history_limit),
                    (meta.last_log_id, meta.last_membership),
                )
            }
            None => (
                State::new(self.history_limit),
                (None, StoredMembership::default()),
            ),
        };
        let from = applied.0.map_or(0, |l| l.index + 1);
        let mut batches = Vec::new();
        for kv in self.tree.range(batch_key(from)..) {
            let (_, v) = kv.map_err(read_err)?;
            let b: ChangeBatch = decode(&v).map_err(read_err)?;
            applied = b.applied;
            batches.push((b.changes, b.counters));
        }
        state.replay(&batches);
        self.set_applied(applied);
        *self.shared.state.write().expect("state lock") = state;
        Ok(())
    }

    fn set_applied(&self, applied: Applied) {
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
        // Saving the snapshot first is what makes this crash-safe: applied entries are
        // committed and older than the snapshot, so every batch left behind is ignored on
        // load until the clear below removes it.
        self.snapshots
            .insert(CURRENT_SNAPSHOT, encode(&(meta, data)).map_err(write_err)?)
            .map_err(write_err)?;
        self.tree.clear().map_err(write_err)?;
        self.set_applied((meta.last_log_id, meta.last_membership.clone()));
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
        if let Some(l) = last_applied {
            self.writer.send(WriteOp::Compact(l.index))?;
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<Applied, StorageError<NodeId>> {
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
        let counters = {
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
            state.counters().clone()
        };
        let Some(last) = applied.0 else {
            return Ok(responses);
        };
        self.writer.send(WriteOp::Batch(
            last.index,
            Box::new(ChangeBatch {
                applied: applied.clone(),
                counters,
                changes: changes.clone(),
            }),
        ))?;
        self.set_applied(applied);
        if !changes.is_empty() {
            let _ = self.shared.signals.send(Signal::Changes(Arc::new(changes)));
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

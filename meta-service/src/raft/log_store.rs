//! The Raft log: entries in append-only segment files ([`super::segments`]), with an
//! in-memory index of where each one lives and a bounded cache of the newest entries; the
//! vote, the committed log id and the last purged log id in sled.
//!
//! Why not sled for the entries too: each append had to be followed by a sled flush, and
//! the flush (copy-on-write pages, its own threads) cost about a millisecond of CPU per Raft
//! entry on every node. A segment append is one `pwrite` plus one `fdatasync` shared by
//! all the appends queued at that moment.
//!
//! Replication and apply read the entries they need right after they were appended, so
//! those reads are served from the cache; older entries (a lagging follower, a restart) are
//! read back from the segments. An entry leaves the cache only once it is durable.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageError};
use tokio::sync::oneshot;

use super::segments::{self, Op, Writer, frame, open_segment, read_body, segment_path};
use super::{Entry, LogId, NodeId, TypeConfig, Vote, decode, encode, read_err, write_err};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// Sizes of the log's files and cache.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// A new segment is started once the newest one is this large.
    pub segment_bytes: u64,
    /// Encoded size of the entries kept in memory, beyond those not yet durable.
    pub cache_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            cache_bytes: 64 << 20,
        }
    }
}

struct Segment {
    file: Arc<File>,
    /// Bytes assigned so far (written, or queued for the writer).
    len: u64,
}

struct Slot {
    log_id: LogId,
    segment: u64,
    offset: u64,
    body_len: u32,
    entry: Option<Entry>,
}

struct Inner {
    segments: BTreeMap<u64, Segment>,
    /// Index of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
    last_purged: Option<LogId>,
    /// Entries from this index on are cached.
    cache_from: u64,
    cached_bytes: usize,
    limits: LogLimits,
}

impl Inner {
    fn next_index(&self) -> u64 {
        self.first + self.slots.len() as u64
    }

    fn slot(&self, index: u64) -> Option<&Slot> {
        let i = index.checked_sub(self.first)?;
        self.slots.get(usize::try_from(i).ok()?)
    }

    /// Drops cached entries, oldest first, while over budget and below `durable`.
    fn evict(&mut self, durable: u64) {
        while self.cached_bytes > self.limits.cache_bytes && self.cache_from < durable {
            let index = self.cache_from;
            let Some(i) = index.checked_sub(self.first) else {
                self.cache_from = self.first;
                continue;
            };
            let Some(slot) = self.slots.get_mut(i as usize) else {
                break;
            };
            if slot.entry.take().is_some() {
                self.cached_bytes -= slot.body_len as usize;
            }
            self.cache_from += 1;
        }
    }
}

#[derive(Clone)]
pub struct LogStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    inner: Arc<Mutex<Inner>>,
    writer: Writer,
    /// Latest committed index seen by this node (for readiness), shared with the admin API.
    committed: Arc<AtomicU64>,
}

fn io_err(e: sled::Error) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    /// Opens the log in `dir`, with its metadata in `db`. A log left in `db` by the
    /// sled-only store of earlier versions is moved into segments first.
    pub fn open(db: &sled::Db, dir: &Path, committed: Arc<AtomicU64>) -> io::Result<Self> {
        Self::open_with(db, dir, committed, LogLimits::default())
    }

    pub fn open_with(
        db: &sled::Db,
        dir: &Path,
        committed: Arc<AtomicU64>,
        limits: LogLimits,
    ) -> io::Result<Self> {
        let meta = db.open_tree("raft_meta").map_err(io_err)?;
        migrate_sled_log(db, dir)?;
        let last_purged: Option<LogId> = match meta.get(LAST_PURGED).map_err(io_err)? {
            Some(v) => Some(decode(&v).map_err(io::Error::other)?),
            None => None,
        };
        let purged_upto = last_purged.map(|l| l.index);
        let mut segments = BTreeMap::new();
        let mut slots: VecDeque<Slot> = VecDeque::new();
        let mut first = purged_upto.map_or(0, |i| i + 1);
        for seg in segments::recover(dir)? {
            for r in seg.records {
                if purged_upto.is_some_and(|p| r.log_id.index <= p) {
                    continue;
                }
                let expected = first + slots.len() as u64;
                if slots.is_empty() {
                    first = r.log_id.index;
                } else if r.log_id.index != expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "Raft log segment {} holds index {} where {expected} was expected",
                            seg.id, r.log_id.index
                        ),
                    ));
                }
                slots.push_back(Slot {
                    log_id: r.log_id,
                    segment: seg.id,
                    offset: r.offset,
                    body_len: r.body_len,
                    entry: None,
                });
            }
            segments.insert(
                seg.id,
                Segment {
                    file: Arc::new(seg.file),
                    len: seg.len,
                },
            );
        }
        let next = first + slots.len() as u64;
        let writer = Writer::start(dir.to_path_buf(), next)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            db: db.clone(),
            meta,
            inner: Arc::new(Mutex::new(Inner {
                segments,
                first,
                slots,
                last_purged,
                cache_from: next,
                cached_bytes: 0,
                limits,
            })),
            writer,
            committed,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("raft log lock")
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode(&v).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
    ) -> Result<(), StorageError<NodeId>> {
        self.meta
            .insert(key, encode(v).map_err(write_err)?)
            .map_err(write_err)?;
        self.db.flush_async().await.map_err(write_err)?;
        Ok(())
    }

    /// Adds entries to the index and the cache, and queues their write; `done` is called
    /// once they are durable.
    fn enqueue(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        done: segments::Done,
    ) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let mut entries = entries.into_iter().peekable();
        let Some(first) = entries.peek().map(|e| e.log_id.index) else {
            drop(inner);
            done(Ok(()));
            return Ok(());
        };
        if inner.slots.is_empty() {
            inner.first = first;
            inner.cache_from = first;
        } else if first != inner.next_index() {
            return Err(write_err(io::Error::other(format!(
                "append at index {first}, but the log ends before {}",
                inner.next_index()
            ))));
        }
        // A batch goes into one segment; a new one starts when the newest is full.
        let full = inner.limits.segment_bytes;
        let tail = inner
            .segments
            .last_key_value()
            .filter(|(_, s)| s.len < full)
            .map(|(id, _)| *id);
        let (segment, new_segment) = match tail {
            Some(id) => (id, false),
            None => {
                let file = open_segment(&self.dir, first).map_err(write_err)?;
                file.set_len(0).map_err(write_err)?;
                inner.segments.insert(
                    first,
                    Segment {
                        file: Arc::new(file),
                        len: 0,
                    },
                );
                (first, true)
            }
        };
        let start = inner.segments[&segment].len;
        let mut bytes = Vec::new();
        let mut last_index = first;
        for e in entries {
            let body = encode(&e).map_err(write_err)?;
            let offset = start + bytes.len() as u64;
            frame(&body, &mut bytes);
            last_index = e.log_id.index;
            inner.cached_bytes += body.len();
            inner.slots.push_back(Slot {
                log_id: e.log_id,
                segment,
                offset,
                body_len: body.len() as u32,
                entry: Some(e),
            });
        }
        let seg = inner.segments.get_mut(&segment).expect("tail segment");
        seg.len += bytes.len() as u64;
        let file = seg.file.clone();
        inner.evict(self.writer.durable.load(Ordering::Acquire));
        drop(inner);
        self.writer
            .send(Op::Append {
                file,
                offset: start,
                bytes,
                new_segment,
                last_index,
                done,
            })
            .map_err(write_err)
    }
}

/// Moves the entries of the old `raft_log` sled tree into a first segment (same entry
/// encoding), syncs it, then empties the tree.
fn migrate_sled_log(db: &sled::Db, dir: &Path) -> io::Result<()> {
    let tree = db.open_tree("raft_log").map_err(io_err)?;
    let Some((_, first)) = tree.first().map_err(io_err)? else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    let first: Entry = decode(&first).map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    let mut moved = 0usize;
    for kv in tree.iter() {
        let (_, v) = kv.map_err(io_err)?;
        frame(&v, &mut bytes);
        moved += 1;
    }
    let file = open_segment(dir, first.log_id.index)?;
    file.set_len(0)?;
    std::io::Write::write_all(&mut &file, &bytes)?;
    file.sync_data()?;
    File::open(dir)?.sync_all()?;
    tree.clear().map_err(io_err)?;
    db.flush().map_err(io_err)?;
    tracing::info!(
        entries = moved,
        "moved the Raft log from sled into segment files"
    );
    Ok(())
}

fn start_index(b: Bound<&u64>) -> u64 {
    match b {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

fn end_index(b: Bound<&u64>) -> u64 {
    match b {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    }
}

/// An entry to return: cached, or to be read from its segment.
enum Fetch {
    Cached(Entry),
    Disk(Arc<File>, u64, u32),
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let fetches: Vec<Fetch> = {
            let inner = self.lock();
            let start = start_index(range.start_bound()).max(inner.first);
            let end = end_index(range.end_bound()).min(inner.next_index());
            (start..end)
                .filter_map(|i| inner.slot(i))
                .map(|s| match &s.entry {
                    Some(e) => Fetch::Cached(e.clone()),
                    None => Fetch::Disk(
                        inner.segments[&s.segment].file.clone(),
                        s.offset,
                        s.body_len,
                    ),
                })
                .collect()
        };
        // Segment files stay readable through their handles even if purged meanwhile.
        fetches
            .into_iter()
            .map(|f| match f {
                Fetch::Cached(e) => Ok(e),
                Fetch::Disk(file, offset, len) => {
                    let body = read_body(&file, offset, len).map_err(read_err)?;
                    decode::<Entry>(&body).map_err(read_err)
                }
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last_log_id = inner.slots.back().map(|s| s.log_id).or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        // Not flushed: losing it only means re-deriving it from a quorum after a crash.
        self.meta
            .insert(COMMITTED, encode(&committed).map_err(write_err)?)
            .map_err(write_err)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        let c: Option<Option<LogId>> = self.get_meta(COMMITTED)?;
        Ok(c.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.enqueue(entries, Box::new(move |r| callback.log_io_completed(r)))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        let (done, wait) = oneshot::channel();
        {
            let mut inner = self.lock();
            let Some(slot) = inner.slot(log_id.index) else {
                return Ok(());
            };
            let (segment, offset) = (slot.segment, slot.offset);
            let keep = (log_id.index - inner.first) as usize;
            for s in inner.slots.drain(keep..).collect::<Vec<_>>() {
                if s.entry.is_some() {
                    inner.cached_bytes -= s.body_len as usize;
                }
            }
            inner.cache_from = inner.cache_from.min(log_id.index);
            let later: Vec<u64> = inner
                .segments
                .range(segment + 1..)
                .map(|(id, _)| *id)
                .collect();
            let mut remove = Vec::new();
            for id in later.into_iter().rev() {
                inner.segments.remove(&id);
                remove.push(segment_path(&self.dir, id));
            }
            let seg = inner.segments.get_mut(&segment).expect("segment of a slot");
            seg.len = offset;
            self.writer
                .send(Op::Truncate {
                    file: seg.file.clone(),
                    len: offset,
                    remove,
                    from_index: log_id.index,
                    done,
                })
                .map_err(write_err)?;
        }
        wait.await
            .map_err(|_| write_err(io::Error::other("the Raft log writer stopped")))?
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash before the files are gone leaves entries
        // that are merely skipped on recovery, never a hole.
        self.put_meta(LAST_PURGED, &log_id).await?;
        let (done, wait) = oneshot::channel();
        {
            let mut inner = self.lock();
            inner.last_purged = Some(log_id);
            while inner
                .slots
                .front()
                .is_some_and(|s| s.log_id.index <= log_id.index)
            {
                let s = inner.slots.pop_front().expect("front slot");
                if s.entry.is_some() {
                    inner.cached_bytes -= s.body_len as usize;
                }
                inner.first = s.log_id.index + 1;
            }
            if inner.slots.is_empty() {
                inner.first = inner.first.max(log_id.index + 1);
            }
            inner.cache_from = inner.cache_from.max(inner.first);
            // A segment whose successor starts at or below the purge point holds only
            // purged entries. The newest segment stays: appends continue there.
            let ids: Vec<u64> = inner.segments.keys().copied().collect();
            let mut paths = Vec::new();
            for pair in ids.windows(2) {
                if pair[1] <= log_id.index + 1 {
                    inner.segments.remove(&pair[0]);
                    paths.push(segment_path(&self.dir, pair[0]));
                }
            }
            self.writer
                .send(Op::Remove { paths, done })
                .map_err(write_err)?;
        }
        wait.await
            .map_err(|_| write_err(io::Error::other("the Raft log writer stopped")))?
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Command, Request};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Request::new(
                index,
                vec![Command::KvDelete {
                    key: format!("k{index}-{}", "x".repeat(100)),
                }],
            )),
        }
    }

    fn open(dir: &Path, limits: LogLimits) -> (sled::Db, LogStore) {
        let db = sled::Config::new()
            .path(dir.join("meta"))
            .open()
            .expect("sled");
        let log = LogStore::open_with(&db, &dir.join("segments"), Arc::default(), limits)
            .expect("open log");
        (db, log)
    }

    async fn append(log: &LogStore, entries: impl IntoIterator<Item = Entry>) {
        let (tx, rx) = oneshot::channel();
        log.enqueue(
            entries,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        )
        .expect("append");
        rx.await.expect("writer").expect("durable");
    }

    async fn read_all(log: &mut LogStore) -> Vec<(u64, u64, u64)> {
        log.try_get_log_entries(..)
            .await
            .expect("read")
            .into_iter()
            .map(|e| {
                let now = match &e.payload {
                    EntryPayload::Normal(r) => r.now_ms,
                    _ => u64::MAX,
                };
                (e.log_id.leader_id.term, e.log_id.index, now)
            })
            .collect()
    }

    /// Tiny segments and no cache: every read after an append goes to the files.
    const TINY: LogLimits = LogLimits {
        segment_bytes: 600,
        cache_bytes: 0,
    };

    #[tokio::test]
    async fn reopening_after_truncate_and_purge_gives_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        let expected = {
            let (_db, mut log) = open(dir.path(), TINY);
            for i in 1..=30 {
                append(&log, [entry(1, i)]).await;
            }
            assert!(log.lock().segments.len() > 3, "segments rolled");
            log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 21))
                .await
                .unwrap();
            log.purge(LogId::new(CommittedLeaderId::new(1, 1), 12))
                .await
                .unwrap();
            append(&log, (21..=25).map(|i| entry(2, i))).await;
            let all = read_all(&mut log).await;
            let want: Vec<(u64, u64, u64)> = (13..=20)
                .map(|i| (1, i, i))
                .chain((21..=25).map(|i| (2, i, i)))
                .collect();
            assert_eq!(all, want);
            // Only segments that still hold unpurged entries are left.
            let first_seg = *log.lock().segments.keys().next().unwrap();
            assert!(
                first_seg > 1 && first_seg <= 13,
                "first segment {first_seg}"
            );
            want
        };
        let (_db, mut log) = open(dir.path(), TINY);
        assert_eq!(read_all(&mut log).await, expected);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(12));
        assert_eq!(
            state.last_log_id.map(|l| (l.leader_id.term, l.index)),
            Some((2, 25))
        );
        // Appends continue where the reopened log ends.
        append(&log, [entry(2, 26)]).await;
        assert_eq!(read_all(&mut log).await.last(), Some(&(2, 26, 26)));
    }

    #[tokio::test]
    async fn a_log_purged_past_its_end_restarts_at_the_next_index() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, log) = open(dir.path(), LogLimits::default());
            append(&log, (1..=5).map(|i| entry(1, i))).await;
            // As after installing a snapshot that is ahead of the log.
            let mut log = log;
            log.purge(LogId::new(CommittedLeaderId::new(3, 1), 40))
                .await
                .unwrap();
            assert!(read_all(&mut log).await.is_empty());
            append(&log, (41..=42).map(|i| entry(3, i))).await;
        }
        let (_db, mut log) = open(dir.path(), LogLimits::default());
        assert_eq!(read_all(&mut log).await, vec![(3, 41, 41), (3, 42, 42)]);
    }

    #[tokio::test]
    async fn a_gap_in_appends_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, log) = open(dir.path(), LogLimits::default());
        append(&log, [entry(1, 1)]).await;
        assert!(log.enqueue([entry(1, 3)], Box::new(|_| {})).is_err());
    }

    #[tokio::test]
    async fn entries_of_the_sled_log_are_moved_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new()
                .path(dir.path().join("meta"))
                .open()
                .unwrap();
            let tree = db.open_tree("raft_log").unwrap();
            for i in 4u64..=6 {
                tree.insert(i.to_be_bytes(), encode(&entry(1, i)).unwrap())
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let (db, mut log) = open(dir.path(), LogLimits::default());
        assert_eq!(
            read_all(&mut log).await,
            vec![(1, 4, 4), (1, 5, 5), (1, 6, 6)]
        );
        assert!(db.open_tree("raft_log").unwrap().is_empty());
    }
}

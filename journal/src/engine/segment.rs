//! The segment engine: a shard log in segment files on the local disk, with group commit.
//!
//! With fsync=always, appends go through the shard's writer thread
//! ([`super::group_commit`]). The writer takes every request waiting in the queue as one
//! group, writes the group's batches with one vectored write straight from the request
//! buffers (patching each baseOffset), and then issues one fdatasync for the whole group
//! before acknowledging any of them. While that fdatasync runs, new requests queue up and become the next group:
//! concurrent appenders share fsyncs, and an acknowledged append is always durable. With
//! `interval` a timer task syncs; with `never` nothing does. With those two policies there
//! is no fdatasync to share, so an append is written by its own caller, on its task, under
//! the same commit code (no hand-off to the writer thread). The high watermark (what
//! readers see) advances only when an append is acknowledged.
//!
//! Reads at the tail are served from the shard's tail cache ([`super::tail_cache`]) inline
//! on the reader's task. Other reads go to the blocking pool: they take the state lock
//! briefly to plan, then read the files outside it on cloned handles, straight into the
//! buffer they return. Every batch read from disk is checked (framing, base offset,
//! CRC-32C), so a corrupted byte in an old segment surfaces as [`JournalError::Corrupt`];
//! cached batches were checked when they were appended. Retention and truncation take the
//! state lock, then the cache's, and keep both consistent.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::group_commit::{self, GroupQueue, Request};
use super::tail_cache::{Stager, TailCache, TailRead};
use super::{
    AppendOutcome, EngineHooks, LogStats, ReadChunk, ShardLog, cut_batches, validate_batches,
};
use crate::batch::{self, BatchHeader};
use crate::error::{JournalError, Result};
use crate::log::recycle::{self, Pool};
use crate::log::segment::Segment;
use crate::log::zero_ahead::ZeroWorker;
use crate::shard::{EngineKind, FsyncPolicy, ShardId, ShardSpec};

struct State {
    segments: BTreeMap<u64, Segment>,
    log_start: u64,
    log_end: u64,
    hw: u64,
    size: u64,
    /// Set after a failed write or fsync: the file state is unknown until recovery runs
    /// again (a restart), so the shard refuses appends rather than guess.
    failed: Option<String>,
    closed: bool,
    /// Segment files retired by retention, for the next rolls (see `log::recycle`).
    pool: Pool,
}

struct Inner {
    shard: ShardId,
    dir: PathBuf,
    spec: ShardSpec,
    hooks: EngineHooks,
    state: Mutex<State>,
    /// Locked after `state` when both are needed; readers at the tail take only this one.
    tail: Mutex<TailCache>,
    hw_tx: watch::Sender<u64>,
    /// Zero-fills ahead of the active segment's end (fsync=always only; see
    /// `log::zero_ahead`). Its thread exits when this is dropped.
    zeroer: Option<ZeroWorker>,
    /// The log end the interval syncer last made durable, so an idle shard costs no
    /// fdatasync per tick. Starts at `u64::MAX`: what recovery found may still be only
    /// in the page cache after a process crash, so the first tick syncs it.
    synced_end: AtomicU64,
}

/// A shard log stored in segment files under one directory.
pub struct SegmentLog {
    inner: Arc<Inner>,
    queue: Arc<GroupQueue>,
    /// With fsync `interval` or `never`, appends are committed on the caller's task
    /// through this stager (see `append`); `None` with fsync `always`.
    inline: Option<Mutex<Stager>>,
    /// Completes when the writer thread has exited; taken by the first `close`.
    writer_exited: Mutex<Option<oneshot::Receiver<()>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

/// Facts about a recovery, for the log line that reports it.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub log_start: u64,
    pub log_end: u64,
    /// Bytes cut from the active segment's tail, and why.
    pub truncated: Option<(u64, String)>,
    /// Bytes of stale batches cut after the data of an active segment in a recycled file
    /// (expected after a crash; not damage, see `log::recycle`), and where the scan
    /// stopped.
    pub recycled_tail: Option<(u64, String)>,
    /// Retired segment files found in the pool.
    pub pool_files: usize,
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, running recovery, and starts the shard's writer
    /// thread. Must run inside a tokio runtime (recovery and the interval syncer use it).
    pub async fn open(
        shard: ShardId,
        dir: PathBuf,
        spec: ShardSpec,
        hooks: EngineHooks,
    ) -> Result<(SegmentLog, RecoveryReport)> {
        let s2 = shard.clone();
        let d2 = dir.clone();
        let interval = spec.index_interval_bytes;
        let (state, report) = tokio::task::spawn_blocking(move || recover(&s2, &d2, interval))
            .await
            .map_err(|e| {
                JournalError::io(&shard, "joining recovery", std::io::Error::other(e))
            })??;
        let hw = state.hw;
        let cache_bytes = usize::try_from(spec.tail_cache_bytes).unwrap_or(usize::MAX);
        let tail = TailCache::new(cache_bytes, state.log_start, hw);
        let zeroer = (spec.fsync == FsyncPolicy::Always)
            .then(ZeroWorker::start)
            .transpose()
            .map_err(|e| JournalError::io(&shard, "starting the zero-fill thread", e))?;
        let inner = Arc::new(Inner {
            shard,
            dir,
            spec,
            hooks,
            state: Mutex::new(state),
            tail: Mutex::new(tail),
            hw_tx: watch::channel(hw).0,
            zeroer,
            synced_end: AtomicU64::new(u64::MAX),
        });
        let queue = GroupQueue::new(inner.shard.clone(), inner.spec.fsync == FsyncPolicy::Always);
        let (committer, on_panic) = (inner.clone(), inner.clone());
        let mut stager = Stager::new(cache_bytes);
        let writer_exited = group_commit::spawn_writer(
            queue.clone(),
            Box::new(move |group: &[Request]| committer.commit_group(group, &mut stager)),
            Box::new(move |why| {
                tracing::error!(shard = %on_panic.shard, panic = %why, "group commit panicked");
                lock(&on_panic.state).failed = Some(format!("writer panicked: {why}"));
            }),
        )
        .map_err(|e| JournalError::io(&inner.shard, "starting the writer thread", e))?;
        let syncer = inner
            .spec
            .fsync
            .interval()
            .map(|every| tokio::spawn(interval_sync_loop(Arc::downgrade(&inner), every)));
        Ok((
            SegmentLog {
                inline: (inner.spec.fsync != FsyncPolicy::Always)
                    .then(|| Mutex::new(Stager::new(cache_bytes))),
                inner,
                queue,
                writer_exited: Mutex::new(Some(writer_exited)),
                syncer: Mutex::new(syncer),
            },
            report,
        ))
    }

    /// The shard's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation of the state completes before anything that could panic, so a
    // poisoned lock still guards consistent data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Lists the segment files, drops leftovers of interrupted index writes, opens sealed
/// segments with their indexes and scans the active one, cutting a torn tail.
fn recover(shard: &ShardId, dir: &Path, interval: u64) -> Result<(State, RecoveryReport)> {
    let io = |ctx: &str, e| JournalError::io(shard, format!("{ctx} in {}", dir.display()), e);
    fs::create_dir_all(dir).map_err(|e| io("creating the shard directory", e))?;
    let mut bases = Vec::new();
    let mut markers = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io("listing segments", e))? {
        let entry = entry.map_err(|e| io("listing segments", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        } else if name.ends_with(".recycled") {
            markers.push(entry.path());
        } else if recycle::is_pool_name(name) {
            // Not a segment: `Pool::load` takes these.
        } else if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut segments = BTreeMap::new();
    let mut report = RecoveryReport::default();
    if bases.is_empty() {
        let seg = Segment::create(dir, 0).map_err(|e| io("creating the first segment", e))?;
        sync_dir(dir).map_err(|e| io("syncing the directory", e))?;
        segments.insert(0, seg);
    }
    for (i, &base) in bases.iter().enumerate() {
        let seg = if let Some(&next) = bases.get(i + 1) {
            Segment::open_sealed(dir, base, next, interval)
                .map_err(|e| io(&format!("opening sealed segment {base}"), e))?
        } else {
            let (seg, stale, cut) = Segment::open_active(dir, base, interval)
                .map_err(|e| io(&format!("recovering active segment {base}"), e))?;
            report.truncated = cut;
            report.recycled_tail = stale;
            seg
        };
        segments.insert(base, seg);
    }
    // The active segment read its marker; after recovery's cut, every segment is only data.
    for m in markers {
        let _ = fs::remove_file(m);
    }
    let pool = Pool::load(dir).map_err(|e| io("listing recycled segment files", e))?;
    report.pool_files = pool.len();
    let log_start = segments.keys().next().copied().unwrap_or(0);
    let log_end = segments.values().next_back().map_or(0, |s| s.next_offset);
    let size = segments.values().map(|s| s.size).sum();
    report.segments = segments.len();
    report.log_start = log_start;
    report.log_end = log_end;
    Ok((
        State {
            segments,
            log_start,
            log_end,
            // What survived on disk is as committed as it will ever be.
            hw: log_end,
            size,
            failed: None,
            closed: false,
            pool,
        },
        report,
    ))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

async fn interval_sync_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let _ = tokio::task::spawn_blocking(move || inner.sync_active()).await;
    }
}

impl Inner {
    fn out_of_range(&self, st: &State, offset: u64) -> JournalError {
        JournalError::OffsetOutOfRange {
            shard: self.shard.clone(),
            offset,
            log_start: st.log_start,
            log_end: st.hw,
        }
    }

    fn corrupt(&self, path: &Path, position: u64, offset: u64, reason: String) -> JournalError {
        JournalError::Corrupt {
            shard: self.shard.clone(),
            path: path.to_path_buf(),
            position,
            offset,
            reason,
        }
    }

    fn observe_fsync(&self, started: Instant) {
        if let Some(h) = &self.hooks.fsync_seconds {
            h.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Seals the active segment and starts a new one at the log end.
    fn roll(&self, st: &mut State) -> std::io::Result<()> {
        let sync = self.spec.fsync != FsyncPolicy::Never;
        if let Some(active) = st.segments.values_mut().next_back() {
            let started = Instant::now();
            active.seal(&self.dir, sync)?;
            if sync {
                self.observe_fsync(started);
            }
        }
        let base = st.log_end;
        let seg = match st.pool.take(&self.dir, base)? {
            // Overwriting a retired file's written blocks keeps metadata out of the
            // fdatasyncs below its old length (see `log::recycle`).
            Some((file, len)) => Segment::recycled(&self.dir, base, file, len),
            None => Segment::create(&self.dir, base)?,
        };
        if sync {
            sync_dir(&self.dir)?;
        }
        st.segments.insert(seg.base, seg);
        Ok(())
    }

    /// Writes one group of appends and, with fsync=always, makes it durable; then makes it
    /// readable (high watermark, tail cache). Returns one outcome per request.
    fn commit_group(&self, group: &[Request], stager: &mut Stager) -> Vec<Result<AppendOutcome>> {
        let mut st = lock(&self.state);
        if st.closed || st.failed.is_some() {
            return group.iter().map(|_| Err(self.refusal(&st))).collect();
        }
        let mut outcomes = Vec::with_capacity(group.len());
        if let Err(e) = self.write_group(&mut st, group, &mut outcomes) {
            st.failed = Some(format!("write failed: {e}"));
            return group
                .iter()
                .map(|_| Err(JournalError::io(&self.shard, "appending", e.kind().into())))
                .collect();
        }
        let end = st.log_end;
        let sync = (self.spec.fsync == FsyncPolicy::Always)
            .then(|| st.segments.values().next_back().map(|s| s.file.clone()));
        // Copy the group for the tail cache and sync outside the lock, so that readers
        // and the next group's bookkeeping wait on neither.
        drop(st);
        stager.stage(group, &outcomes);
        if let Some(file) = sync {
            let started = Instant::now();
            let synced = file.map_or(Ok(()), |f| f.sync_data());
            self.observe_fsync(started);
            if let Err(e) = synced {
                stager.discard();
                lock(&self.state).failed = Some(format!("fdatasync failed: {e}"));
                return group
                    .iter()
                    .map(|_| Err(JournalError::io(&self.shard, "fdatasync", e.kind().into())))
                    .collect();
            }
        }
        let mut st = lock(&self.state);
        // A truncation may have run while the lock was released: never expose more than
        // the log holds.
        let hw = end.min(st.log_end).max(st.hw);
        st.hw = hw;
        lock(&self.tail).publish(stager, hw, st.log_end);
        let zero = self.zeroer.as_ref().and_then(|w| {
            let s = st.segments.values().next_back()?;
            Some((w, s.zero.clone(), s.file.clone(), s.size))
        });
        drop(st);
        self.hw_tx.send_replace(hw);
        if let Some((worker, zero, file, size)) = zero {
            // Keep zeros written ahead of the end, so that the next groups' fdatasyncs
            // have no size or extent change to write (see `log::zero_ahead`).
            let bytes = group
                .iter()
                .flat_map(|r| &r.batches)
                .map(|b| b.len() as u64)
                .sum();
            zero.after_group(worker, &file, size, bytes, self.spec.segment_bytes);
        }
        outcomes.into_iter().map(Ok).collect()
    }

    fn refusal(&self, st: &State) -> JournalError {
        match &st.failed {
            Some(why) => JournalError::io(
                &self.shard,
                format!("appending to a shard that failed earlier ({why}); restart to recover"),
                std::io::Error::other("shard failed"),
            ),
            None => JournalError::Closed {
                shard: self.shard.clone(),
            },
        }
    }

    fn write_group(
        &self,
        st: &mut State,
        group: &[Request],
        outcomes: &mut Vec<AppendOutcome>,
    ) -> std::io::Result<()> {
        let spec = &self.spec;
        if let Some(active) = st.segments.values().next_back()
            && active.size > 0
            && spec.segment_ms > 0
            && active.opened_at.elapsed() >= Duration::from_millis(spec.segment_ms)
        {
            self.roll(st)?;
        }
        // Batches are written straight from the request buffers with one vectored write
        // per segment; only each batch's 8-byte baseOffset comes from here. No copy of
        // the group is made.
        let mut parts: Vec<(&[u8], u64, BatchHeader)> = Vec::new();
        let mut pending_bytes = 0u64;
        let mut next = st.log_end;
        for req in group {
            let base_offset = next;
            for (b, h) in req.batches.iter().zip(&req.headers) {
                let (active_size, active_base) = st
                    .segments
                    .values()
                    .next_back()
                    .map_or((0, next), |s| (s.size, s.base));
                let filled = active_size + pending_bytes;
                let too_big = filled > 0 && filled + b.len() as u64 > spec.segment_bytes;
                // Relative offsets in the index are 32-bit.
                let too_many = next + h.offset_count() - active_base > u32::MAX as u64;
                if too_big || too_many {
                    self.flush(st, &mut parts, next)?;
                    pending_bytes = 0;
                    self.roll(st)?;
                }
                parts.push((b, next, *h));
                pending_bytes += b.len() as u64;
                next += h.offset_count();
            }
            outcomes.push(AppendOutcome {
                base_offset,
                log_end: next,
            });
        }
        self.flush(st, &mut parts, next)
    }

    /// Writes the pending batches to the active segment and advances the log end.
    fn flush(
        &self,
        st: &mut State,
        parts: &mut Vec<(&[u8], u64, BatchHeader)>,
        next: u64,
    ) -> std::io::Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let interval = self.spec.index_interval_bytes;
        let active = st
            .segments
            .values_mut()
            .next_back()
            .ok_or_else(|| std::io::Error::other("no active segment"))?;
        let before = active.size;
        if let Err(e) = active.append_batches(parts, interval) {
            // Best effort: do not leave a partial batch behind for recovery to find.
            let _ = active.file.set_len(before);
            return Err(e);
        }
        st.size += active.size - before;
        st.log_end = next;
        parts.clear();
        Ok(())
    }

    fn sync_active(&self) {
        let (file, end) = {
            let st = lock(&self.state);
            let file = st.segments.values().next_back().map(|s| s.file.clone());
            (file, st.log_end)
        };
        if self.synced_end.load(Ordering::Relaxed) == end {
            return;
        }
        if let Some(f) = file {
            let started = Instant::now();
            if let Err(e) = f.sync_data() {
                tracing::error!(shard = %self.shard, error = %e, "interval fdatasync failed");
                lock(&self.state).failed = Some(format!("fdatasync failed: {e}"));
            } else {
                self.synced_end.store(end, Ordering::Relaxed);
            }
            self.observe_fsync(started);
        }
    }

    fn read_sync(&self, offset: u64, max_bytes: usize) -> Result<ReadChunk> {
        // Plan under the lock: where to start, and which files to continue into.
        let (plan, hw, log_start) = {
            let st = lock(&self.state);
            if offset < st.log_start || offset > st.hw {
                return Err(self.out_of_range(&st, offset));
            }
            if offset == st.hw {
                return Ok(ReadChunk {
                    records: Bytes::new(),
                    next_offset: offset,
                    high_watermark: st.hw,
                    log_start: st.log_start,
                });
            }
            let mut plan = Vec::new();
            let mut first = true;
            for seg in st
                .segments
                .range(..=offset)
                .next_back()
                .into_iter()
                .map(|x| x.1)
                .chain(
                    st.segments
                        .range(offset + 1..)
                        .map(|x| x.1)
                        .take_while(|s| s.base < st.hw),
                )
            {
                let (pos, base) = if first {
                    first = false;
                    let found = seg.find(offset).map_err(|e| {
                        JournalError::io(&self.shard, format!("seeking offset {offset}"), e)
                    })?;
                    let Some(p) = found else {
                        return Err(self.corrupt(
                            &seg.path,
                            0,
                            offset,
                            "unreadable batch header while seeking the offset".into(),
                        ));
                    };
                    (p.pos, p.batch_base)
                } else {
                    (0, seg.base)
                };
                plan.push((seg.file.clone(), seg.path.clone(), pos, seg.size, base));
            }
            (plan, st.hw, st.log_start)
        };

        // Batches are read straight into the buffer that is returned: no staging buffer,
        // no second copy.
        let mut out: Vec<u8> = Vec::new();
        let mut next = offset;
        let mut first = true;
        'segments: for (file, path, mut pos, size, base) in plan {
            if first {
                // The first position is the start of the batch holding `offset`.
                first = false;
                next = base;
            } else if next != base {
                // The previous segment did not end where this one starts.
                return Err(self.corrupt(
                    &path,
                    0,
                    base,
                    format!("segment starts at {base}, but the previous one ended at {next}"),
                ));
            }
            let read_at = |buf: &mut [u8], at: u64| {
                file.read_exact_at(buf, at).map_err(|e| {
                    JournalError::io(&self.shard, format!("reading {}", path.display()), e)
                })
            };
            while pos < size && next < hw {
                let budget = max_bytes.saturating_sub(out.len());
                if budget == 0 && !out.is_empty() {
                    break 'segments;
                }
                let min_one = out.is_empty();
                let mut want = (budget.max(batch::HEADER_LEN) as u64).min(size - pos) as usize;
                let at = out.len();
                if at == 0 {
                    // A zeroed allocation: fresh pages need no memset.
                    out = vec![0u8; want];
                } else {
                    out.resize(at + want, 0);
                }
                read_at(&mut out[at..], pos)?;
                if let Some((_, total)) = batch::peek_offset_and_len(&out[at..])
                    && total > want
                {
                    if !min_one {
                        out.truncate(at);
                        break 'segments;
                    }
                    if total as u64 > size - pos {
                        return Err(self.corrupt(
                            &path,
                            pos,
                            next,
                            format!(
                                "batch declares {total} bytes, only {} remain in the segment",
                                size - pos
                            ),
                        ));
                    }
                    // The first batch alone is larger than the budget: read the rest of it.
                    out.resize(at + total, 0);
                    read_at(&mut out[at + want..], pos + want as u64)?;
                    want = total;
                }
                let (n, after) = cut_batches(&out[at..], next, hw, budget.max(1), min_one, true)
                    .map_err(|(p, off, why)| self.corrupt(&path, pos + p as u64, off, why))?;
                out.truncate(at + n);
                if n == 0 {
                    if min_one && next < hw {
                        return Err(self.corrupt(
                            &path,
                            pos,
                            next,
                            "no whole batch where one was expected".into(),
                        ));
                    }
                    break 'segments;
                }
                pos += n as u64;
                next = after;
                if n < want && pos < size {
                    // Stopped by the budget or the high watermark inside this buffer.
                    break 'segments;
                }
            }
        }
        if out.capacity() > 2 * out.len() + 4096 {
            // The read stopped well short of what was read (at the high watermark, with a
            // large group still being synced): do not hand the reader a mostly empty buffer.
            out.shrink_to_fit();
        }
        Ok(ReadChunk {
            records: Bytes::from(out),
            next_offset: next,
            high_watermark: hw,
            log_start,
        })
    }

    fn offset_for_timestamp_sync(&self, ts: i64) -> Result<Option<u64>> {
        let st = lock(&self.state);
        for seg in st.segments.values() {
            if seg.index.max_timestamp.is_none_or(|m| m < ts) {
                continue;
            }
            let start_rel = seg.index.time_lookup(ts).unwrap_or(0);
            let from = seg.base + start_rel as u64;
            let found = seg
                .find(from)
                .map_err(|e| JournalError::io(&self.shard, "seeking a timestamp", e))?;
            let Some(p) = found else {
                return Err(self.corrupt(&seg.path, 0, from, "unreadable batch header".into()));
            };
            let (mut pos, mut base) = (p.pos, p.batch_base);
            let mut head = [0u8; batch::HEADER_LEN];
            while pos < seg.size && base < st.hw {
                seg.file
                    .read_exact_at(&mut head, pos)
                    .map_err(|e| JournalError::io(&self.shard, "reading a batch header", e))?;
                let h = batch::parse_header(&head, false)
                    .map_err(|e| self.corrupt(&seg.path, pos, base, e.to_string()))?;
                if h.max_timestamp >= ts {
                    return Ok(Some(base));
                }
                pos += h.total_len as u64;
                base += h.offset_count();
            }
        }
        Ok(None)
    }

    fn truncate_sync(&self, offset: u64) -> Result<()> {
        let mut st = lock(&self.state);
        if offset < st.log_start || offset > st.log_end {
            return Err(JournalError::BadTruncate {
                shard: self.shard.clone(),
                offset,
                reason: format!("outside the log [{}, {}]", st.log_start, st.log_end),
            });
        }
        if offset == st.log_end {
            return Ok(());
        }
        let io = |e| JournalError::io(&self.shard, format!("truncating to {offset}"), e);
        let keep = st
            .segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| *b)
            .unwrap_or(st.log_start);
        let later: Vec<u64> = st.segments.range(keep + 1..).map(|(b, _)| *b).collect();
        for b in later {
            if let Some(seg) = st.segments.remove(&b) {
                seg.delete_files(&self.dir).map_err(io)?;
                st.size -= seg.size;
            }
        }
        let interval = self.spec.index_interval_bytes;
        let seg = st
            .segments
            .get_mut(&keep)
            .ok_or_else(|| io(std::io::Error::other("segment vanished")))?;
        let p = seg
            .find(offset)
            .map_err(io)?
            .ok_or_else(|| self.corrupt(&seg.path, 0, offset, "unreadable batch header".into()))?;
        let old = seg.size;
        seg.truncate_to(p.pos, p.batch_base, interval, &self.dir)
            .map_err(io)?;
        st.size -= old - p.pos;
        st.log_end = p.batch_base;
        // New data may grow the log back to the old synced end between two ticks.
        self.synced_end.store(u64::MAX, Ordering::Relaxed);
        st.hw = st.hw.min(st.log_end);
        let hw = st.hw;
        lock(&self.tail).truncate(st.log_end, hw);
        drop(st);
        self.hw_tx.send_replace(hw);
        Ok(())
    }

    fn retention_sync(&self, now_ms: i64) -> Result<u64> {
        let mut st = lock(&self.state);
        let io = |e| JournalError::io(&self.shard, "applying retention", e);
        if self.spec.retention_ms > 0 {
            let cutoff = now_ms.saturating_sub(self.spec.retention_ms as i64);
            while let Some(first) = st.segments.values().next() {
                let expired = first.index.max_timestamp.is_none_or(|m| m < cutoff);
                if !expired || first.size == 0 {
                    break;
                }
                if st.segments.len() == 1 {
                    // Everything is expired: start an empty segment so that the old one can
                    // go, but only once it is all committed.
                    if st.hw < st.log_end {
                        break;
                    }
                    self.roll(&mut st).map_err(io)?;
                    continue;
                }
                if first.next_offset > st.hw {
                    break;
                }
                self.delete_first(&mut st).map_err(io)?;
            }
        }
        if self.spec.retention_bytes > 0 {
            while st.segments.len() > 1 && st.size > self.spec.retention_bytes {
                let Some(first) = st.segments.values().next() else {
                    break;
                };
                if first.next_offset > st.hw {
                    break;
                }
                self.delete_first(&mut st).map_err(io)?;
            }
        }
        Ok(st.log_start)
    }

    fn delete_first(&self, st: &mut State) -> std::io::Result<()> {
        if let Some((_, seg)) = st.segments.pop_first() {
            let (base, size) = (seg.base, seg.size);
            let recycled = seg.retire(&self.dir, &mut st.pool)?;
            st.size -= size;
            st.log_start = st.segments.keys().next().copied().unwrap_or(st.log_end);
            lock(&self.tail).trim_front(st.log_start);
            tracing::info!(shard = %self.shard, segment = base, log_start = st.log_start,
                recycled, "retention deleted a segment");
        }
        Ok(())
    }
}

#[async_trait]
impl ShardLog for SegmentLog {
    fn shard(&self) -> &ShardId {
        &self.inner.shard
    }

    fn engine(&self) -> EngineKind {
        EngineKind::Segment
    }

    async fn append(&self, batches: Vec<Bytes>) -> Result<AppendOutcome> {
        let shard = &self.inner.shard;
        // Validation (CRC-32C) runs here, on the appender's task, not on the writer's
        // critical path.
        let headers = validate_batches(shard, &batches)?;
        if let Some(stager) = &self.inline {
            // Without a per-append fdatasync there is nothing for concurrent appends to
            // share, so the write (into the page cache, microseconds) runs right here
            // instead of a hand-off to the writer thread and a wake-up back, two context
            // switches per append. Holding the stager's lock from the write to the
            // publication keeps concurrent appends in order, as the tail cache needs.
            let req = Request::detached(batches, headers);
            let mut stager = lock(stager);
            return self
                .inner
                .commit_group(std::slice::from_ref(&req), &mut stager)
                .pop()
                .unwrap_or_else(|| {
                    Err(JournalError::Closed {
                        shard: shard.clone(),
                    })
                });
        }
        self.queue.submit(batches, headers).await
    }

    async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadChunk> {
        let cached = lock(&self.inner.tail).read(offset, max_bytes);
        match cached {
            TailRead::Served(chunk) => return Ok(chunk),
            TailRead::Gather {
                parts,
                total,
                chunk,
            } => return Ok(TailRead::gather(parts, total, chunk)),
            TailRead::OutOfRange { log_start, hw } => {
                return Err(JournalError::OffsetOutOfRange {
                    shard: self.inner.shard.clone(),
                    offset,
                    log_start,
                    log_end: hw,
                });
            }
            TailRead::Miss => {}
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.read_sync(offset, max_bytes))
            .await
            .map_err(|e| {
                JournalError::io(
                    &self.inner.shard,
                    "joining a read",
                    std::io::Error::other(e),
                )
            })?
    }

    async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.offset_for_timestamp_sync(ts))
            .await
            .map_err(|e| {
                JournalError::io(
                    &self.inner.shard,
                    "joining a lookup",
                    std::io::Error::other(e),
                )
            })?
    }

    async fn truncate(&self, offset: u64) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.truncate_sync(offset))
            .await
            .map_err(|e| {
                JournalError::io(
                    &self.inner.shard,
                    "joining a truncation",
                    std::io::Error::other(e),
                )
            })?
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<u64> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.retention_sync(now_ms))
            .await
            .map_err(|e| {
                JournalError::io(
                    &self.inner.shard,
                    "joining retention",
                    std::io::Error::other(e),
                )
            })?
    }

    fn stats(&self) -> LogStats {
        let st = lock(&self.inner.state);
        LogStats {
            log_start: st.log_start,
            high_watermark: st.hw,
            log_end: st.log_end,
            size_bytes: st.size,
            segments: st.segments.len() as u32,
        }
    }

    fn watch_high_watermark(&self) -> watch::Receiver<u64> {
        self.inner.hw_tx.subscribe()
    }

    async fn close(&self) -> Result<()> {
        // The writer commits what is queued, then stops.
        self.queue.close();
        let exited = lock(&self.writer_exited).take();
        if let Some(w) = exited {
            let _ = w.await;
        }
        if let Some(s) = lock(&self.syncer).take() {
            s.abort();
        }
        let inner = self.inner.clone();
        let sync = inner.spec.fsync != FsyncPolicy::Never;
        let i2 = inner.clone();
        // A closed log's active segment ends at its data: the zero-filled tail is cut
        // (after the zero-fill helper stops), then the file is synced.
        tokio::task::spawn_blocking(move || {
            let mut st = lock(&i2.state);
            st.closed = true;
            let Some(active) = st.segments.values().next_back() else {
                return Ok(());
            };
            active.cut_to_data(sync)
        })
        .await
        .map_err(|e| {
            JournalError::io(
                &inner.shard,
                "joining the final sync",
                std::io::Error::other(e),
            )
        })?
        .map_err(|e| JournalError::io(&inner.shard, "final fdatasync", e))?;
        Ok(())
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        // Lets the writer thread commit what is queued and exit.
        self.queue.close();
        if let Some(s) = lock(&self.syncer).take() {
            s.abort();
        }
    }
}

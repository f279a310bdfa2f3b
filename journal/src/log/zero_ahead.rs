//! Zero-filling ahead of the active segment's end, so that the fdatasync that makes a small
//! group durable has no file metadata to write.
//!
//! An fdatasync after an append that grows the file must also write the inode (the new size)
//! and, once the file has more than four extents, an extent-tree block: one or two small
//! synchronous writes before the device flush, on every group. Block traces on this project's
//! ext4 showed them on every fdatasync of a growing file, and an append-and-fdatasync loop
//! over a region that was already written (zeros) and synced measured 25-40% faster per
//! fdatasync at 16 KiB, counting the zeroing's own cost. PostgreSQL zero-fills its WAL
//! segments for the same reason.
//!
//! So while groups are small, a helper keeps up to [`LEAD`] bytes past the segment's end
//! written with zeros and synced, in [`CHUNK`]-byte steps; the shard's writer then
//! overwrites zeros instead of growing the file. The helper is a [`ZeroWorker`]: one thread
//! per shard log, started with it and fed steps over a channel, so that no thread is
//! created on the data path; it exits when the log drops its handle. Durability does not depend on the helper:
//! the writer's own fdatasync still covers whatever its group changed (if it overtakes the
//! zeroed region, its fdatasync writes the metadata, as it always did). With large groups
//! (more than [`MAX_GROUP`] bytes) the metadata is a small part of the fdatasync and zeroing
//! would double the disk's write traffic, so no zeroing step is queued.
//!
//! The file's length can therefore exceed the data in it. Recovery cuts a tail of zeros
//! without calling it damage; sealing a segment, truncating it and closing the log cut the
//! file back to its data first (after waiting for a running helper), so sealed segments and
//! closed logs keep their exact length.
//!
//! Coordination: `ready` is the file length the helper has finished; the writer only writes
//! below it, or past it when no helper is running (it then moves `ready` to its own end).
//! The helper only writes at `ready` and beyond, so the two never write the same bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes zeroed by one helper run.
pub const CHUNK: u64 = 256 << 10;
/// A helper run starts when fewer than this many zeroed bytes are left past the end.
pub const LEAD: u64 = 512 << 10;
/// Groups larger than this do not start the helper (see the module docs).
pub const MAX_GROUP: u64 = 64 << 10;

#[derive(Debug)]
struct ZeroState {
    /// The file is `ready` bytes long as far as the writer is concerned: it may write below.
    ready: u64,
    /// A helper is zeroing `ready..ready + CHUNK`.
    busy: bool,
    /// A helper failed (or could not start): stop zeroing this segment.
    off: bool,
}

#[derive(Debug)]
struct Shared {
    st: Mutex<ZeroState>,
    idle: Condvar,
}

/// The zero-fill state of one segment file (cheap to clone; clones share it).
#[derive(Debug, Clone)]
pub struct ZeroAhead(Arc<Shared>);

fn lock(m: &Mutex<ZeroState>) -> MutexGuard<'_, ZeroState> {
    // Nothing that can panic runs while the lock is held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ZeroAhead {
    /// State for a file whose length is `len` (nothing zeroed ahead yet).
    pub fn new(len: u64) -> ZeroAhead {
        ZeroAhead(Arc::new(Shared {
            st: Mutex::new(ZeroState {
                ready: len,
                busy: false,
                off: false,
            }),
            idle: Condvar::new(),
        }))
    }

    fn wait_idle<'a>(&'a self, mut st: MutexGuard<'a, ZeroState>) -> MutexGuard<'a, ZeroState> {
        while st.busy {
            st = self.0.idle.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st
    }

    /// Called by the writer before it writes up to byte `end`: waits for a helper whose
    /// range it would write into (only when it overtook the zeroed region).
    pub fn claim(&self, end: u64) {
        let mut st = lock(&self.0.st);
        if end > st.ready {
            st = self.wait_idle(st);
            st.ready = st.ready.max(end);
        }
    }

    /// Waits for a running helper, then records that the file now ends at `len` (it was
    /// cut or is being cut back to its data).
    pub fn reset(&self, len: u64) {
        let mut st = self.wait_idle(lock(&self.0.st));
        st.ready = len;
    }

    /// Waits for a running helper and turns zeroing off for good (the segment is sealed or
    /// the log is closing).
    pub fn stop(&self) {
        let mut st = self.wait_idle(lock(&self.0.st));
        st.off = true;
    }

    /// After a group of `group_bytes` ending at byte `end` was made durable: hands `worker`
    /// a zeroing step if the zeroed region ahead is short, the group was small and the file
    /// may still grow (zeroing stops at `limit`, the segment's size bound).
    pub fn after_group(
        &self,
        worker: &ZeroWorker,
        file: &Arc<File>,
        end: u64,
        group_bytes: u64,
        limit: u64,
    ) {
        let from = {
            let mut st = lock(&self.0.st);
            if st.busy
                || st.off
                || group_bytes > MAX_GROUP
                || st.ready >= limit
                || st.ready.saturating_sub(end) >= LEAD
            {
                return;
            }
            st.busy = true;
            st.ready
        };
        let step = Step {
            zero: self.clone(),
            file: file.clone(),
            from,
            len: CHUNK.min(limit - from),
        };
        if let Err(mpsc::SendError(step)) = worker.tx.send(step) {
            // The worker is gone (it cannot be, while its log holds it): stop zeroing.
            step.zero.finish(from, 0, false);
        }
    }

    fn finish(&self, from: u64, len: u64, ok: bool) {
        let mut st = lock(&self.0.st);
        st.busy = false;
        if ok && st.ready == from {
            st.ready = from + len;
        } else if !ok {
            // Whatever the helper left past `ready` is cut by recovery or sealing; the
            // writer goes on growing the file as it did before zero-filling.
            st.off = true;
        }
        drop(st);
        self.0.idle.notify_all();
    }

    /// The file length the writer may write below (for tests and sealing).
    pub fn ready(&self) -> u64 {
        lock(&self.0.st).ready
    }
}

/// One zeroing step: `len` bytes of `file` from `from`, for the segment `zero` describes
/// (which is marked busy until the step finishes).
struct Step {
    zero: ZeroAhead,
    file: Arc<File>,
    from: u64,
    len: u64,
}

/// The thread that runs a shard log's zeroing steps, one at a time. Dropping the handle
/// lets it finish the steps already sent, then exit.
#[derive(Debug)]
pub struct ZeroWorker {
    tx: mpsc::Sender<Step>,
}

impl ZeroWorker {
    /// Starts the worker thread.
    pub fn start() -> std::io::Result<ZeroWorker> {
        let (tx, rx) = mpsc::channel::<Step>();
        std::thread::Builder::new()
            .name("journal-zero".into())
            .stack_size(64 << 10)
            .spawn(move || {
                // One zeroed buffer for every step (a step is at most CHUNK bytes).
                let zeros = vec![0u8; CHUNK as usize];
                for step in rx {
                    let done = step
                        .file
                        .write_all_at(&zeros[..step.len as usize], step.from)
                        .and_then(|()| step.file.sync_data());
                    step.zero.finish(step.from, step.len, done.is_ok());
                }
            })?;
        Ok(ZeroWorker { tx })
    }
}

/// Whether the bytes of `file` from `from` to `to` are all zeros (a zero-filled tail, not
/// a torn write). Reads at most up to the first non-zero byte.
pub fn is_zero_tail(file: &File, from: u64, to: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn small_groups_get_zeros_ahead_and_large_groups_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(dir.path().join("f"))
                .expect("open"),
        );
        let w = ZeroWorker::start().expect("worker");
        let z = ZeroAhead::new(0);
        z.after_group(&w, &file, 0, MAX_GROUP + 1, 1 << 30);
        z.stop();
        assert_eq!(z.ready(), 0, "a large group started zeroing");

        let z = ZeroAhead::new(0);
        file.write_all_at(&[7u8; 1000], 0).expect("write");
        z.claim(1000);
        z.after_group(&w, &file, 1000, 1000, 1 << 30);
        wait_for(|| z.ready() == 1000 + CHUNK);
        assert_eq!(file.metadata().expect("meta").len(), 1000 + CHUNK);
        assert!(is_zero_tail(&file, 1000, 1000 + CHUNK).expect("read"));
        // Still short of LEAD ahead: the next group starts another run; the bound stops it.
        z.after_group(&w, &file, 1000, 1000, 1000 + CHUNK + 100);
        wait_for(|| z.ready() == 1000 + CHUNK + 100);
        z.after_group(&w, &file, 1000, 1000, 1000 + CHUNK + 100);
        z.stop();
        assert_eq!(z.ready(), 1000 + CHUNK + 100);
        let mut head = [0u8; 1000];
        file.read_exact_at(&mut head, 0).expect("read");
        assert!(head.iter().all(|&b| b == 7), "zeroing touched the data");
        assert!(!is_zero_tail(&file, 999, 1100).expect("read"));
    }

    #[test]
    fn a_dropped_worker_finishes_the_steps_it_was_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |name: &str| {
            Arc::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(dir.path().join(name))
                    .expect("open"),
            )
        };
        let (fa, fb) = (open("a"), open("b"));
        let w = ZeroWorker::start().expect("worker");
        let (a, b) = (ZeroAhead::new(0), ZeroAhead::new(0));
        // Two segments' steps on one worker, then the log lets go of it.
        a.after_group(&w, &fa, 0, 100, 1 << 30);
        b.after_group(&w, &fb, 0, 100, 1 << 30);
        drop(w);
        a.stop();
        b.stop();
        assert_eq!((a.ready(), b.ready()), (CHUNK, CHUNK));
        assert_eq!(fa.metadata().expect("meta").len(), CHUNK);
        assert_eq!(fb.metadata().expect("meta").len(), CHUNK);
    }

    #[test]
    fn a_writer_past_the_zeroed_region_moves_it_and_reset_cuts_it_back() {
        let z = ZeroAhead::new(100);
        z.claim(50);
        assert_eq!(z.ready(), 100);
        z.claim(300);
        assert_eq!(z.ready(), 300);
        z.reset(40);
        assert_eq!(z.ready(), 40);
    }
}

//! Group commit: turns a shard's concurrent appends into groups that share one write and one
//! fdatasync, on a writer thread of the shard's own.
//!
//! Appenders validate their batches on their own task, then push a request onto the shard's
//! queue and await a oneshot. The writer thread takes everything queued as one group, hands
//! it to the engine's commit function (which writes it and, with fsync=always, syncs it),
//! and only then completes the group's oneshots: an append is acknowledged with the outcome
//! of the commit that covered its bytes, never earlier.
//!
//! Why a thread and not a task: the commit blocks on the disk. Handing every group to the
//! blocking pool and back costs two cross-thread wake-ups per group, and that hand-off sat
//! on the critical path between one fdatasync and the next. The writer also parks on a
//! condition variable with microsecond timeouts, where tokio's timer has 1 ms resolution.
//!
//! Straggler wait: appenders acknowledged by the last group usually come straight back with
//! their next append. A group taken the instant the first of them arrives would split them
//! into two cohorts that alternate, each fsync covering half of them. So the writer waits
//! until as many requests are queued as the last group had (plus what was queued when it was
//! acknowledged), but no longer than half the last commit (50 us..2 ms): waiting a fraction
//! of an fsync to share it is cheaper than paying for another one. The last appender to
//! arrive wakes the writer, so a full group costs one wake-up, not one per request. Without
//! per-append fsyncs (policy `interval` or `never`) there is nothing to share: no waiting.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Semaphore, oneshot};

use super::AppendOutcome;
use crate::batch::BatchHeader;
use crate::error::{JournalError, Result};
use crate::shard::ShardId;

/// Most bytes one group carries; a longer queue is split over several groups.
const GROUP_MAX_BYTES: usize = 64 << 20;
/// Appends queued for the writer; callers beyond it wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// Bounds of the straggler wait (see the module docs).
const MIN_GROUP_WAIT: Duration = Duration::from_micros(50);
const MAX_GROUP_WAIT: Duration = Duration::from_millis(2);
/// The writer only runs the commit; its buffers are on the heap.
const WRITER_STACK: usize = 256 << 10;

/// One append waiting to be committed: validated batches and their parsed headers.
pub(crate) struct Request {
    pub batches: Vec<Bytes>,
    pub headers: Vec<BatchHeader>,
    done: oneshot::Sender<Ack>,
}

impl Request {
    /// A request committed by its own caller rather than the writer thread (nobody waits
    /// on its acknowledgement channel).
    pub(crate) fn detached(batches: Vec<Bytes>, headers: Vec<BatchHeader>) -> Request {
        let (done, _) = oneshot::channel();
        Request {
            batches,
            headers,
            done,
        }
    }
}

/// The commit's outcome for one request, with the request's buffers: they go back to the
/// appender to be freed on its own thread, off the writer's path to the next group (and
/// without a cross-thread free in the allocator).
struct Ack {
    outcome: Result<AppendOutcome>,
    _buffers: (Vec<Bytes>, Vec<BatchHeader>),
}

struct Pending {
    reqs: Vec<Request>,
    bytes: usize,
    /// While the writer is parked gathering a group: the queue length at which the arriving
    /// appender wakes it (0 when it is not parked).
    wake_at: usize,
    closed: bool,
}

/// A shard's append queue, shared by its appenders and its writer thread.
pub(crate) struct GroupQueue {
    shard: ShardId,
    pending: Mutex<Pending>,
    wake: Condvar,
    admit: Semaphore,
    shares_fsync: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing that can panic runs while the queue lock is held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupQueue {
    /// A queue for `shard`; `shares_fsync` (fsync=always) turns the straggler wait on.
    pub(crate) fn new(shard: ShardId, shares_fsync: bool) -> Arc<GroupQueue> {
        Arc::new(GroupQueue {
            shard,
            pending: Mutex::new(Pending {
                reqs: Vec::new(),
                bytes: 0,
                wake_at: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            admit: Semaphore::new(QUEUE_DEPTH),
            shares_fsync,
        })
    }

    fn closed(&self) -> JournalError {
        JournalError::Closed {
            shard: self.shard.clone(),
        }
    }

    /// Queues validated batches and waits for the commit that covers them.
    pub(crate) async fn submit(
        &self,
        batches: Vec<Bytes>,
        headers: Vec<BatchHeader>,
    ) -> Result<AppendOutcome> {
        // The writer returns the permit when it takes the request into a group.
        match self.admit.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => self
                .admit
                .acquire()
                .await
                .map_err(|_| self.closed())?
                .forget(),
        }
        let bytes = batches.iter().map(Bytes::len).sum::<usize>();
        let (done, rx) = oneshot::channel();
        let wake = {
            let mut p = lock(&self.pending);
            if p.closed {
                drop(p);
                self.admit.add_permits(1);
                return Err(self.closed());
            }
            p.reqs.push(Request {
                batches,
                headers,
                done,
            });
            p.bytes += bytes;
            let wake = p.wake_at != 0 && (p.reqs.len() >= p.wake_at || p.bytes >= GROUP_MAX_BYTES);
            if wake {
                p.wake_at = 0;
            }
            wake
        };
        if wake {
            self.wake.notify_one();
        }
        // A dropped sender means the writer died (panicked) with the request.
        rx.await.map_err(|_| self.closed())?.outcome
    }

    /// Refuses further appends; the writer commits what is queued, then exits.
    pub(crate) fn close(&self) {
        lock(&self.pending).closed = true;
        self.admit.close();
        self.wake.notify_one();
    }

    /// Waits for the next group and moves it into `group` (which is empty). Returns false
    /// once the queue is closed and drained.
    fn next_group(&self, group: &mut Vec<Request>, expect: usize, budget: Duration) -> bool {
        let mut p = lock(&self.pending);
        let deadline = Instant::now() + budget;
        loop {
            if p.reqs.len() >= expect || p.bytes >= GROUP_MAX_BYTES || p.closed {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                if !p.reqs.is_empty() {
                    break;
                }
                // Idle: the first arrival starts a group at once.
                p.wake_at = 1;
                p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            } else {
                p.wake_at = expect;
                p = self
                    .wake
                    .wait_timeout(p, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        p.wake_at = 0;
        if p.reqs.is_empty() {
            // Closed and drained.
            return false;
        }
        if p.bytes <= GROUP_MAX_BYTES {
            std::mem::swap(group, &mut p.reqs);
            p.bytes = 0;
        } else {
            // Keep the group under the cap (at least one request), leave the rest queued.
            let mut bytes = 0;
            let n = p
                .reqs
                .iter()
                .position(|r| {
                    bytes += r.batches.iter().map(Bytes::len).sum::<usize>();
                    bytes > GROUP_MAX_BYTES
                })
                .unwrap_or(p.reqs.len())
                .max(1);
            group.extend(p.reqs.drain(..n));
            p.bytes -= group
                .iter()
                .map(|r| r.batches.iter().map(Bytes::len).sum::<usize>())
                .sum::<usize>();
        }
        drop(p);
        self.admit.add_permits(group.len());
        true
    }

    fn queued(&self) -> usize {
        lock(&self.pending).reqs.len()
    }
}

/// Closes the queue and fails what is left in it if the writer thread unwinds, so that no
/// appender waits for a writer that is gone.
struct CloseOnExit(Arc<GroupQueue>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
        let left = std::mem::take(&mut lock(&self.0.pending).reqs);
        drop(left);
    }
}

/// What the writer thread calls for every group: write it (and sync it, if the policy says
/// so), returning one outcome per request, in order.
pub(crate) type CommitFn = Box<dyn FnMut(&[Request]) -> Vec<Result<AppendOutcome>> + Send>;

/// Starts the writer thread of `queue`. `on_panic` is told when a commit panicked; that
/// group's appenders see the shard as closed. The returned receiver completes with `Ok`
/// once the writer has committed the last group after `close` and exited.
pub(crate) fn spawn_writer(
    queue: Arc<GroupQueue>,
    commit: CommitFn,
    on_panic: Box<dyn Fn(String) + Send>,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (exited_tx, exited) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("journal-writer".into())
        .stack_size(WRITER_STACK)
        .spawn(move || {
            let guard = CloseOnExit(queue);
            writer_loop(&guard.0, commit, on_panic);
            drop(guard);
            let _ = exited_tx.send(());
        })?;
    Ok(exited)
}

/// How long a group may wait for `expect` requests (see the module docs).
fn straggler_budget(shares_fsync: bool, expect: usize, last_commit: Duration) -> Duration {
    if shares_fsync && expect > 1 {
        (last_commit / 2).clamp(MIN_GROUP_WAIT, MAX_GROUP_WAIT)
    } else {
        Duration::ZERO
    }
}

fn writer_loop(queue: &GroupQueue, mut commit: CommitFn, on_panic: Box<dyn Fn(String) + Send>) {
    let mut group = Vec::new();
    let mut expect = 1usize;
    let mut last_commit = Duration::ZERO;
    loop {
        let budget = straggler_budget(queue.shares_fsync, expect, last_commit);
        if !queue.next_group(&mut group, expect, budget) {
            return;
        }
        let started = Instant::now();
        let results = catch_unwind(AssertUnwindSafe(|| commit(&group)));
        last_commit = started.elapsed();
        match results {
            Ok(results) => {
                // Everyone acknowledged now, plus whoever queued meanwhile, is expected
                // back for the next group.
                expect = if queue.shares_fsync {
                    (group.len() + queue.queued()).max(1)
                } else {
                    1
                };
                for (req, outcome) in group.drain(..).zip(results) {
                    // The caller may have gone away (cancelled RPC); the data is committed
                    // regardless, as with any write whose ack is lost.
                    let _ = req.done.send(Ack {
                        outcome,
                        _buffers: (req.batches, req.headers),
                    });
                }
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                on_panic(why);
                // Dropping the senders tells the group's appenders.
                group.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn outcome(n: u64) -> AppendOutcome {
        AppendOutcome {
            base_offset: n,
            log_end: n + 1,
        }
    }

    /// A commit that records group sizes and takes `sync` per group, like an fdatasync.
    fn recording(sync: Duration) -> (CommitFn, Arc<Mutex<Vec<usize>>>) {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let s2 = sizes.clone();
        let mut next = 0u64;
        let commit: CommitFn = Box::new(move |group: &[Request]| {
            std::thread::sleep(sync);
            s2.lock().unwrap().push(group.len());
            group
                .iter()
                .map(|_| {
                    next += 1;
                    Ok(outcome(next - 1))
                })
                .collect()
        });
        (commit, sizes)
    }

    fn shard() -> ShardId {
        ShardId::new("t", 0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appenders_share_groups_and_get_their_own_outcomes() {
        let q = GroupQueue::new(shard(), true);
        let (commit, sizes) = recording(Duration::from_millis(2));
        let exited = spawn_writer(q.clone(), commit, Box::new(|_| {})).expect("spawn");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..20 {
                    got.push(q.submit(vec![], vec![]).await.expect("append").base_offset);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let got = t.await.expect("join");
            assert!(got.windows(2).all(|w| w[0] < w[1]), "not in order: {got:?}");
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..320).collect::<Vec<_>>(),
            "every append one outcome"
        );
        q.close();
        exited.await.expect("writer exits");
        let sizes = sizes.lock().unwrap().clone();
        // With a 2 ms commit the 16 appenders come back well within the straggler wait, so
        // after the first groups they travel together.
        let full = sizes.iter().filter(|&&n| n == 16).count();
        assert!(full * 2 > sizes.len(), "groups did not fill up: {sizes:?}");
    }

    #[test]
    fn the_straggler_wait_is_a_bounded_fraction_of_the_last_commit() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // A lone appender, or a policy without per-append fsyncs, never waits.
        assert_eq!(straggler_budget(true, 1, ms(5)), Duration::ZERO);
        assert_eq!(straggler_budget(false, 16, ms(5)), Duration::ZERO);
        assert_eq!(straggler_budget(true, 16, us(300)), us(150));
        assert_eq!(straggler_budget(true, 16, us(20)), MIN_GROUP_WAIT);
        assert_eq!(straggler_budget(true, 256, ms(40)), MAX_GROUP_WAIT);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_commits_what_is_queued_then_refuses() {
        let q = GroupQueue::new(shard(), true);
        let (commit, sizes) = recording(Duration::from_millis(30));
        let exited = spawn_writer(q.clone(), commit, Box::new(|_| {})).expect("spawn");
        let first = {
            let q = q.clone();
            tokio::spawn(async move { q.submit(vec![], vec![]).await })
        };
        // Let the first group start its (slow) commit, then queue more behind it.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.submit(vec![], vec![]).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        q.close();
        assert!(first.await.expect("join").is_ok());
        for t in queued {
            assert!(t.await.expect("join").is_ok(), "queued before close");
        }
        assert!(matches!(
            q.submit(vec![], vec![]).await,
            Err(JournalError::Closed { .. })
        ));
        exited.await.expect("writer exits");
        assert_eq!(sizes.lock().unwrap().iter().sum::<usize>(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_commit_fails_its_group_and_reports() {
        let q = GroupQueue::new(shard(), true);
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let commit: CommitFn = Box::new(move |group: &[Request]| {
            if c2.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("disk on fire");
            }
            group.iter().map(|_| Ok(outcome(0))).collect()
        });
        let reported = Arc::new(Mutex::new(None));
        let r2 = reported.clone();
        let exited = spawn_writer(
            q.clone(),
            commit,
            Box::new(move |why| *r2.lock().unwrap() = Some(why)),
        )
        .expect("spawn");
        assert!(matches!(
            q.submit(vec![], vec![]).await,
            Err(JournalError::Closed { .. })
        ));
        assert_eq!(reported.lock().unwrap().as_deref(), Some("disk on fire"));
        // The writer survives; refusing later appends is the engine's call (it marks the
        // shard failed in `on_panic`).
        assert!(q.submit(vec![], vec![]).await.is_ok());
        q.close();
        exited.await.expect("writer exits");
    }
}

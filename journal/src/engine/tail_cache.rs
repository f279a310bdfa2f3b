//! The segment engine's tail cache: the most recently committed batches of a shard, in
//! memory, exactly as stored (baseOffset patched), so that readers following the tail (MQTT
//! delivery, Kafka Fetch of caught-up consumers) are served inline on their own task: no
//! hand-off to the blocking pool, no file read, no CRC pass (every batch was checked on
//! append).
//!
//! The cache also mirrors the shard's log start and high watermark, so that the commonest
//! read of all, the empty read at the high watermark that a tailer makes before it waits,
//! needs only this lock and never the engine's state lock (which the writer holds across
//! its write syscall).
//!
//! Invariants (the engine keeps them, under its state lock and then this one):
//! - the cached batches are contiguous and end at the log end as of the last commit;
//! - `hw` and `log_start` equal the engine's at every moment a reader can see them;
//! - a read is served here only when it would return exactly what a disk read returns:
//!   the batch holding the offset is cached and the cache reaches the high watermark.
//!   Anything else is a [`TailRead::Miss`] and goes to disk.
//!
//! Batches are copied once, on the commit path, into a group buffer carved from a larger
//! chunk; a read that stays within one group is a slice of it (no copy), a read spanning
//! several groups copies once, after the lock is released.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::AppendOutcome;
use super::ReadChunk;
use super::group_commit::Request;
use crate::batch;

/// Size of the buffers groups are carved from: one allocation serves many small groups.
const CHUNK_BYTES: usize = 256 << 10;

/// One cached batch: `group[start..end]`, offsets `base..next`.
struct Cached {
    base: u64,
    next: u64,
    group: Bytes,
    start: u32,
    end: u32,
}

impl Cached {
    fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// What the batch costs the cache's bound: its bytes and its entry, so that a tail of
    /// tiny batches cannot hold much more memory than the bound says.
    fn cost(&self) -> usize {
        self.len() + std::mem::size_of::<Cached>()
    }
}

/// What the cache answers to a read.
#[derive(Debug)]
pub(crate) enum TailRead {
    /// The read's answer, from memory (possibly empty, at the high watermark).
    Served(ReadChunk),
    /// The answer spans several appended groups: `chunk` once its records are `parts`
    /// (`total` bytes) concatenated, by [`TailRead::gather`], outside the cache's lock.
    Gather {
        parts: Vec<Bytes>,
        total: usize,
        chunk: ReadChunk,
    },
    /// The offset is below the log start or above the high watermark.
    OutOfRange { log_start: u64, hw: u64 },
    /// Not cached: read from disk.
    Miss,
}

impl TailRead {
    /// Concatenates the parts of a [`TailRead::Gather`] into its chunk.
    pub(crate) fn gather(parts: Vec<Bytes>, total: usize, mut chunk: ReadChunk) -> ReadChunk {
        let mut out = BytesMut::with_capacity(total);
        for p in &parts {
            out.extend_from_slice(p);
        }
        chunk.records = out.freeze();
        chunk
    }
}

/// A shard's tail cache (see the module docs).
pub(crate) struct TailCache {
    cap: usize,
    batches: VecDeque<Cached>,
    /// Sum of the cached batches' [`Cached::cost`].
    bytes: usize,
    hw: u64,
    log_start: u64,
}

impl TailCache {
    /// An empty cache holding at most `cap` bytes of batches (0 turns caching off; the
    /// offsets are still mirrored).
    pub(crate) fn new(cap: usize, log_start: u64, hw: u64) -> TailCache {
        TailCache {
            cap,
            batches: VecDeque::new(),
            bytes: 0,
            hw,
            log_start,
        }
    }

    /// Serves a read from memory if it can (see [`TailRead`]).
    pub(crate) fn read(&self, offset: u64, max_bytes: usize) -> TailRead {
        let hw = self.hw;
        if offset < self.log_start || offset > hw {
            return TailRead::OutOfRange {
                log_start: self.log_start,
                hw,
            };
        }
        let chunk = |records: Bytes, next_offset: u64| {
            TailRead::Served(ReadChunk {
                records,
                next_offset,
                high_watermark: hw,
                log_start: self.log_start,
            })
        };
        if offset == hw {
            return chunk(Bytes::new(), offset);
        }
        let (Some(front), Some(back)) = (self.batches.front(), self.batches.back()) else {
            return TailRead::Miss;
        };
        if offset < front.base || back.next < hw {
            return TailRead::Miss;
        }
        let first = self.batches.partition_point(|b| b.next <= offset);
        let mut total = 0usize;
        let mut last = first;
        for b in self.batches.range(first..) {
            // Like a disk read: stop at the high watermark and at the budget, but always
            // serve the first batch whole.
            if b.next > hw || (last > first && total + b.len() > max_bytes) {
                break;
            }
            total += b.len();
            last += 1;
        }
        if last == first {
            // The batch holding `offset` is not wholly below the high watermark, which a
            // high watermark on a batch boundary rules out; let the disk path decide.
            return TailRead::Miss;
        }
        let (head, tail) = (&self.batches[first], &self.batches[last - 1]);
        if head.group.as_ptr() == tail.group.as_ptr() {
            // One group: batches are adjacent in its buffer.
            return chunk(
                head.group.slice(head.start as usize..tail.end as usize),
                tail.next,
            );
        }
        // Several groups: take one slice per group here and copy them after the lock is
        // released (a copy of up to `max_bytes` under it would hold up the writer).
        let mut parts: Vec<Bytes> = Vec::new();
        let mut run: Option<(&Cached, &Cached)> = None;
        for b in self.batches.range(first..last) {
            match &mut run {
                Some((start, end)) if start.group.as_ptr() == b.group.as_ptr() => *end = b,
                _ => {
                    if let Some((start, end)) = run {
                        parts.push(start.group.slice(start.start as usize..end.end as usize));
                    }
                    run = Some((b, b));
                }
            }
        }
        if let Some((start, end)) = run {
            parts.push(start.group.slice(start.start as usize..end.end as usize));
        }
        TailRead::Gather {
            parts,
            total,
            chunk: ReadChunk {
                records: Bytes::new(),
                next_offset: tail.next,
                high_watermark: hw,
                log_start: self.log_start,
            },
        }
    }

    /// Makes staged batches (a group that is now committed) readable, with the engine's
    /// new high watermark; `log_end` is the engine's log end now. Batches that a
    /// truncation removed meanwhile are dropped instead.
    pub(crate) fn publish(&mut self, staged: &mut Stager, hw: u64, log_end: u64) {
        self.hw = hw;
        let Some(first) = staged.batches.first() else {
            return;
        };
        let last_next = staged.batches.last().map_or(first.next, |b| b.next);
        if last_next > log_end {
            // A truncation cut into the group while it was being synced.
            staged.batches.clear();
            return;
        }
        if self.batches.back().is_some_and(|b| b.next != first.base) {
            // Not contiguous with what is cached (a group that did not fit, a truncation):
            // start over from this group.
            self.clear();
        }
        for b in staged.batches.drain(..) {
            self.bytes += b.cost();
            self.batches.push_back(b);
        }
        while self.bytes > self.cap {
            let Some(b) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= b.cost();
        }
    }

    /// After a truncation: drops the batches at or above the new log end.
    pub(crate) fn truncate(&mut self, log_end: u64, hw: u64) {
        while self.batches.back().is_some_and(|b| b.next > log_end) {
            if let Some(b) = self.batches.pop_back() {
                self.bytes -= b.cost();
            }
        }
        self.hw = hw;
    }

    /// After retention: drops the batches below the new log start.
    pub(crate) fn trim_front(&mut self, log_start: u64) {
        while self.batches.front().is_some_and(|b| b.base < log_start) {
            if let Some(b) = self.batches.pop_front() {
                self.bytes -= b.cost();
            }
        }
        self.log_start = log_start;
    }

    fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }
}

/// The commit path's side of the cache: copies a group's batches (with their assigned
/// base offsets) while the group is synced, outside every lock, for
/// [`TailCache::publish`].
pub(crate) struct Stager {
    cap: usize,
    chunk: BytesMut,
    batches: Vec<Cached>,
}

impl Stager {
    pub(crate) fn new(cap: usize) -> Stager {
        Stager {
            cap,
            chunk: BytesMut::new(),
            batches: Vec::new(),
        }
    }

    /// Copies the batches of `group`, which were written with the offsets in `outcomes`
    /// (one per request). Only the newest batches that fit in the cache are kept.
    pub(crate) fn stage(&mut self, group: &[Request], outcomes: &[AppendOutcome]) {
        self.batches.clear();
        if self.cap == 0 {
            return;
        }
        let total: usize = group
            .iter()
            .flat_map(|r| r.batches.iter())
            .map(Bytes::len)
            .sum();
        // Skip the oldest batches while the rest would not fit.
        let (mut skip, mut need, mut cost) = (total, 0usize, 0usize);
        for b in group.iter().rev().flat_map(|r| r.batches.iter().rev()) {
            cost += b.len() + std::mem::size_of::<Cached>();
            if cost > self.cap {
                break;
            }
            need += b.len();
            skip -= b.len();
        }
        if need == 0 {
            return;
        }
        if self.chunk.capacity() < need {
            self.chunk = BytesMut::with_capacity(CHUNK_BYTES.max(need));
        }
        let mut seen = 0usize;
        for (req, out) in group.iter().zip(outcomes) {
            let mut offset = out.base_offset;
            for (b, h) in req.batches.iter().zip(&req.headers) {
                let next = offset + h.offset_count();
                if seen >= skip {
                    let start = self.chunk.len();
                    self.chunk.extend_from_slice(b);
                    batch::set_base_offset(&mut self.chunk[start..], offset);
                    self.batches.push(Cached {
                        base: offset,
                        next,
                        group: Bytes::new(),
                        start: start as u32,
                        end: (start + b.len()) as u32,
                    });
                }
                seen += b.len();
                offset = next;
            }
        }
        let bytes = self.chunk.split().freeze();
        for b in &mut self.batches {
            b.group = bytes.clone();
        }
    }

    /// Forgets a staged group that will not be published (its commit failed).
    pub(crate) fn discard(&mut self) {
        self.batches.clear();
    }
}

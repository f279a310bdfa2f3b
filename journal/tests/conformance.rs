//! The journal conformance suite: one set of behaviours, run against every engine
//! (memory and segment). Each test is written once, generic over [`Env`], and instantiated
//! per engine by the `suite!` macro at the bottom; the segment engine runs it three times:
//! with its default tail cache, with a cache of a few batches (reads cross from disk into
//! memory) and with none (every read from disk).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{append_one, at_offset, decode, kafka_batch, now_ms, split_batches};
use journal::engine::memory::MemoryLog;
use journal::engine::segment::SegmentLog;
use journal::engine::{EngineHooks, ShardLog, read_wait};
use journal::{EngineKind, FsyncPolicy, JournalError, ShardId, ShardSpec};

/// An engine under test plus the place its data lives.
struct Env {
    engine: EngineKind,
    dir: tempfile::TempDir,
    spec: ShardSpec,
}

impl Env {
    fn new(engine: EngineKind) -> Env {
        Env {
            engine,
            dir: tempfile::tempdir().expect("tempdir"),
            spec: ShardSpec {
                engine,
                fsync: FsyncPolicy::Always,
                retention_ms: 0,
                retention_bytes: 0,
                segment_bytes: 1 << 20,
                segment_ms: 0,
                memory_max_bytes: 64 << 20,
                index_interval_bytes: 256,
                tail_cache_bytes: journal::DEFAULT_TAIL_CACHE_BYTES,
            },
        }
    }

    fn with(mut self, f: impl FnOnce(&mut ShardSpec)) -> Env {
        f(&mut self.spec);
        self
    }

    /// Does data survive `reopen`?
    fn durable(&self) -> bool {
        self.engine == EngineKind::Segment
    }

    async fn open(&self) -> Arc<dyn ShardLog> {
        let shard = ShardId::new("conformance", 0);
        match self.engine {
            EngineKind::Memory => Arc::new(MemoryLog::new(shard, &self.spec)),
            EngineKind::Segment => {
                let dir = self.dir.path().join(shard.dir_name());
                let (log, _) =
                    SegmentLog::open(shard, dir, self.spec.clone(), EngineHooks::default())
                        .await
                        .expect("open segment log");
                Arc::new(log)
            }
        }
    }

    /// Closes the log and opens it again, as a process restart would.
    async fn reopen(&self, log: Arc<dyn ShardLog>) -> Arc<dyn ShardLog> {
        log.close().await.expect("close");
        drop(log);
        self.open().await
    }
}

/// Reads from `from` to the high watermark in steps of `max_bytes`; returns the batches.
async fn read_all(log: &dyn ShardLog, from: u64, max_bytes: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut next = from;
    for _ in 0..100_000 {
        let chunk = log.read(next, max_bytes).await.expect("read");
        if chunk.records.is_empty() {
            assert_eq!(
                next, chunk.high_watermark,
                "empty read below the high watermark"
            );
            return out;
        }
        assert!(chunk.next_offset > next, "read made no progress at {next}");
        out.extend(split_batches(&chunk.records));
        next = chunk.next_offset;
    }
    panic!("read_all did not reach the tail");
}

async fn append_assigns_dense_offsets_and_serves_stored_bytes(env: Env) {
    let log = env.open().await;
    let (a, b, c) = (
        kafka_batch(1, 10, 1000, 1),
        kafka_batch(3, 10, 1000, 2),
        kafka_batch(2, 10, 1000, 3),
    );
    let out = log
        .append(vec![a.clone(), b.clone()])
        .await
        .expect("append two");
    assert_eq!((out.base_offset, out.log_end), (0, 4));
    let out = log.append(vec![c.clone()]).await.expect("append one");
    assert_eq!((out.base_offset, out.log_end), (4, 6));

    let chunk = log.read(0, 1 << 20).await.expect("read");
    let expected = [at_offset(&a, 0), at_offset(&b, 1), at_offset(&c, 4)].concat();
    assert_eq!(
        chunk.records.as_ref(),
        expected.as_slice(),
        "served bytes differ"
    );
    assert_eq!((chunk.next_offset, chunk.high_watermark), (6, 6));
    let offsets: Vec<i64> = split_batches(&chunk.records)
        .iter()
        .flat_map(|b| decode(b).into_iter().map(|(o, _)| o))
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4, 5]);
    let s = log.stats();
    assert_eq!((s.log_start, s.high_watermark, s.log_end), (0, 6, 6));
    assert_eq!(s.size_bytes as usize, expected.len());
}

async fn append_rejects_invalid_batches_and_changes_nothing(env: Env) {
    let log = env.open().await;
    let good = kafka_batch(1, 10, 0, 1);
    let mut bad = good.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = log
        .append(vec![good.clone(), Bytes::from(bad)])
        .await
        .expect_err("a corrupt batch must be refused");
    assert!(
        matches!(err, JournalError::InvalidBatch { index: 1, .. }),
        "unexpected error: {err}"
    );
    let mut magic = good.to_vec();
    magic[16] = 1;
    assert!(log.append(vec![Bytes::from(magic)]).await.is_err());
    assert!(log.append(vec![good.slice(..30)]).await.is_err());
    assert!(log.append(vec![]).await.is_err());
    assert_eq!(log.stats().log_end, 0, "a refused append changed the log");
    assert_eq!(append_one(log.as_ref(), &good).await, 0);
}

async fn read_at_offset_starts_at_the_containing_batch(env: Env) {
    let log = env.open().await;
    let batches: Vec<Bytes> = (0..5).map(|i| kafka_batch(3, 20, 0, i)).collect();
    for b in &batches {
        append_one(log.as_ref(), b).await;
    }
    // Offset 7 lies in the third batch (offsets 6..=8).
    let chunk = log.read(7, 1 << 20).await.expect("read");
    let got = split_batches(&chunk.records);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], at_offset(&batches[2], 6));
    assert_eq!(chunk.next_offset, 15);
    // A budget smaller than one batch still returns that batch, and nothing more.
    let chunk = log.read(3, 10).await.expect("read");
    assert_eq!(
        split_batches(&chunk.records),
        vec![at_offset(&batches[1], 3)]
    );
    assert_eq!(chunk.next_offset, 6);
    // Two batches' worth of budget returns exactly two.
    let chunk = log.read(0, batches[0].len() * 2 + 5).await.expect("read");
    assert_eq!(split_batches(&chunk.records).len(), 2);
}

async fn read_outside_the_log_is_out_of_range(env: Env) {
    let log = env.open().await;
    append_one(log.as_ref(), &kafka_batch(2, 5, 0, 1)).await;
    let err = log.read(3, 100).await.expect_err("past the end");
    assert!(
        matches!(
            err,
            JournalError::OffsetOutOfRange {
                offset: 3,
                log_start: 0,
                log_end: 2,
                ..
            }
        ),
        "unexpected: {err}"
    );
    let at_end = log.read(2, 100).await.expect("read at the end");
    assert!(at_end.records.is_empty());
    assert_eq!(at_end.next_offset, 2);
}

async fn read_across_segments(env: Env) {
    let env = env.with(|s| {
        s.segment_bytes = 2048;
        s.index_interval_bytes = 300;
    });
    let log = env.open().await;
    let mut expected = Vec::new();
    for i in 0..60u64 {
        let b = kafka_batch(1 + (i % 3) as usize, 150, 0, i);
        let off = append_one(log.as_ref(), &b).await;
        expected.push(at_offset(&b, off));
    }
    if env.engine == EngineKind::Segment {
        assert!(
            log.stats().segments > 3,
            "expected several segments: {:?}",
            log.stats()
        );
    }
    for max in [1usize, 700, 5000, 1 << 20] {
        let got = read_all(log.as_ref(), 0, max).await;
        assert_eq!(
            got.len(),
            expected.len(),
            "batch count with max_bytes {max}"
        );
        assert!(got == expected, "bytes differ with max_bytes {max}");
    }
    // Reads starting in the middle of a later segment, at every batch start.
    let mut offset = 0u64;
    for (i, b) in expected.iter().enumerate() {
        let got = read_all(log.as_ref(), offset, 500).await;
        assert_eq!(got.first(), Some(b), "read at offset {offset}");
        assert_eq!(got.len(), expected.len() - i);
        offset += decode(b).len() as u64;
    }
}

async fn read_at_the_tail_waits_for_data(env: Env) {
    let log = env.open().await;
    append_one(log.as_ref(), &kafka_batch(1, 10, 0, 1)).await;

    let started = Instant::now();
    let empty = read_wait(log.as_ref(), 1, 1 << 20, Duration::from_millis(200))
        .await
        .expect("read");
    assert!(empty.records.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "did not wait"
    );

    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let c = read_wait(log.as_ref(), 1, 1 << 20, Duration::from_secs(10)).await;
            (c, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = kafka_batch(2, 10, 0, 2);
    append_one(log.as_ref(), &b).await;
    let (chunk, waited) = reader.await.expect("join");
    let chunk = chunk.expect("read");
    assert_eq!(chunk.records, at_offset(&b, 1));
    assert!(waited < Duration::from_secs(5), "woke late: {waited:?}");
}

async fn truncation_cuts_the_tail_and_offsets_continue_from_there(env: Env) {
    let env = env.with(|s| s.segment_bytes = 1500);
    let log = env.open().await;
    let mut expected = Vec::new();
    for i in 0..20u64 {
        let b = kafka_batch(2, 100, 0, i);
        let off = append_one(log.as_ref(), &b).await;
        expected.push(at_offset(&b, off));
    }
    // Offset 15 is inside the batch 14..=15: that batch goes too.
    log.truncate(15).await.expect("truncate");
    let s = log.stats();
    assert_eq!((s.log_end, s.high_watermark), (14, 14));
    assert_eq!(
        read_all(log.as_ref(), 0, 1 << 20).await,
        expected[..7].to_vec()
    );
    // Truncating in an earlier segment removes the later ones.
    log.truncate(6).await.expect("truncate");
    assert_eq!(log.stats().log_end, 6);
    assert_eq!(
        read_all(log.as_ref(), 0, 1 << 20).await,
        expected[..3].to_vec()
    );
    let b = kafka_batch(1, 10, 0, 99);
    assert_eq!(append_one(log.as_ref(), &b).await, 6);
    assert_eq!(
        log.read(6, 100).await.expect("read").records,
        at_offset(&b, 6)
    );
    assert!(
        log.truncate(100).await.is_err(),
        "truncate past the end accepted"
    );
    let log = env.reopen(log).await;
    if env.durable() {
        let got = read_all(log.as_ref(), 0, 1 << 20).await;
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], at_offset(&b, 6));
        assert_eq!(log.stats().log_end, 7);
    }
}

async fn reopen_keeps_durable_data_and_offsets(env: Env) {
    let env = env.with(|s| s.segment_bytes = 4096);
    let log = env.open().await;
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let b = kafka_batch(2, 200, 0, i);
        let off = append_one(log.as_ref(), &b).await;
        expected.push(at_offset(&b, off));
    }
    let log = env.reopen(log).await;
    let next = kafka_batch(1, 10, 0, 1000);
    if env.durable() {
        assert_eq!(read_all(log.as_ref(), 0, 3000).await, expected);
        assert_eq!(log.stats().log_end, 80);
        assert_eq!(append_one(log.as_ref(), &next).await, 80);
    } else {
        // The memory engine is lost on restart, by design; it comes back empty and usable.
        let s = log.stats();
        assert_eq!((s.log_start, s.log_end, s.size_bytes), (0, 0, 0));
        assert_eq!(append_one(log.as_ref(), &next).await, 0);
    }
}

async fn retention_by_bytes_advances_the_log_start(env: Env) {
    let env = env.with(|s| {
        s.segment_bytes = 2048;
        s.retention_bytes = 6000;
        s.memory_max_bytes = 6000;
    });
    let log = env.open().await;
    let mut expected = Vec::new();
    for i in 0..100u64 {
        let b = kafka_batch(1, 150, now_ms(), i);
        let off = append_one(log.as_ref(), &b).await;
        expected.push((off, at_offset(&b, off)));
    }
    let start = log.enforce_retention(now_ms()).await.expect("retention");
    let s = log.stats();
    assert_eq!(start, s.log_start);
    assert!(s.log_start > 0, "nothing was deleted: {s:?}");
    assert!(s.size_bytes <= 6000 + 2048, "still {} bytes", s.size_bytes);
    match log.read(0, 100).await {
        Err(JournalError::OffsetOutOfRange { log_start, .. }) => assert_eq!(log_start, s.log_start),
        other => panic!("read below the start gave {other:?}"),
    }
    let rest = read_all(log.as_ref(), s.log_start, 1 << 20).await;
    let want: Vec<Bytes> = expected
        .iter()
        .filter(|(o, _)| *o >= s.log_start)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(
        rest, want,
        "what retention kept differs from what was written"
    );
    assert_eq!(s.log_end, 100, "retention must not change the log end");
}

async fn retention_by_time_deletes_old_data_only(env: Env) {
    let env = env.with(|s| {
        s.segment_bytes = 2048;
        s.retention_ms = 60_000;
    });
    let log = env.open().await;
    let old = now_ms() - 3_600_000;
    for i in 0..30u64 {
        append_one(log.as_ref(), &kafka_batch(1, 150, old, i)).await;
    }
    let mut fresh = Vec::new();
    for i in 0..10u64 {
        let b = kafka_batch(1, 150, now_ms(), 100 + i);
        let off = append_one(log.as_ref(), &b).await;
        fresh.push(at_offset(&b, off));
    }
    // Durable engines must judge reopened (sealed, index-file-backed) segments the same.
    let log = if env.durable() {
        env.reopen(log).await
    } else {
        log
    };
    let start = log.enforce_retention(now_ms()).await.expect("retention");
    assert!(
        start > 0 && start <= 30,
        "log start {start} after time retention"
    );
    let kept = read_all(log.as_ref(), start, 1 << 20).await;
    assert!(kept.ends_with(&fresh), "fresh batches were deleted");
    // Everything expires once the clock moves past all of it; offsets are not reused.
    let start = log
        .enforce_retention(now_ms() + 3_600_000)
        .await
        .expect("retention");
    assert_eq!(start, 40);
    assert_eq!(
        append_one(log.as_ref(), &kafka_batch(1, 5, now_ms(), 7)).await,
        40
    );
}

async fn offset_for_timestamp_finds_the_first_batch_at_or_after(env: Env) {
    let env = env.with(|s| s.segment_bytes = 1024);
    let log = env.open().await;
    for i in 0..30u64 {
        append_one(log.as_ref(), &kafka_batch(2, 100, 1000 + i as i64 * 10, i)).await;
    }
    assert_eq!(log.offset_for_timestamp(0).await.expect("lookup"), Some(0));
    assert_eq!(
        log.offset_for_timestamp(1000).await.expect("lookup"),
        Some(0)
    );
    assert_eq!(
        log.offset_for_timestamp(1001).await.expect("lookup"),
        Some(2)
    );
    assert_eq!(
        log.offset_for_timestamp(1155).await.expect("lookup"),
        Some(32)
    );
    assert_eq!(
        log.offset_for_timestamp(1290).await.expect("lookup"),
        Some(58)
    );
    assert_eq!(log.offset_for_timestamp(1291).await.expect("lookup"), None);
}

async fn concurrent_appends_get_distinct_dense_offsets(env: Env) {
    let log = env.open().await;
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..20u64 {
                let b = kafka_batch(1 + (i % 2) as usize, 64, 0, t * 1000 + i);
                let out = log.append(vec![b.clone()]).await.expect("append");
                mine.push((out.base_offset, b));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort_by_key(|(o, _)| *o);
    let served = read_all(log.as_ref(), 0, 1 << 20).await;
    assert_eq!(served.len(), all.len());
    let mut next = 0;
    for ((off, b), got) in all.iter().zip(&served) {
        assert_eq!(*off, next, "offsets are not dense");
        assert_eq!(*got, at_offset(b, *off));
        next += decode(b).len() as u64;
    }
}

/// A segment spec whose tail cache holds only a few small batches, so that reads cross
/// from disk into the cache.
fn small_cache(s: &mut ShardSpec) {
    s.tail_cache_bytes = 700;
}

/// A segment spec without a tail cache: every read goes to disk.
fn no_cache(s: &mut ShardSpec) {
    s.tail_cache_bytes = 0;
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Env::new(journal::EngineKind::Memory)).await }
            )*
        }
        mod segment {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Env::new(journal::EngineKind::Segment)).await }
            )*
        }
        mod segment_small_tail_cache {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Env::new(journal::EngineKind::Segment).with(super::small_cache)).await
            }
            )*
        }
        mod segment_no_tail_cache {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Env::new(journal::EngineKind::Segment).with(super::no_cache)).await
            }
            )*
        }
    };
}

suite!(
    append_assigns_dense_offsets_and_serves_stored_bytes,
    append_rejects_invalid_batches_and_changes_nothing,
    read_at_offset_starts_at_the_containing_batch,
    read_outside_the_log_is_out_of_range,
    read_across_segments,
    read_at_the_tail_waits_for_data,
    truncation_cuts_the_tail_and_offsets_continue_from_there,
    reopen_keeps_durable_data_and_offsets,
    retention_by_bytes_advances_the_log_start,
    retention_by_time_deletes_old_data_only,
    offset_for_timestamp_finds_the_first_batch_at_or_after,
    concurrent_appends_get_distinct_dense_offsets,
);

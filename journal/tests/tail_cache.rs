//! The segment engine's tail cache serves exactly what a disk read serves: the same logs
//! are written to shards with a small cache, with no cache and with a cache that holds
//! everything, and every read (each offset, several budgets) must agree, across the cache
//! boundary, at the tail, after truncation, after retention and after a reopen. Also: reads
//! at the tail really come from memory, and concurrent tailers under fsync=always see only
//! committed bytes, identical to what is on disk.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{at_offset, kafka_batch};
use journal::engine::segment::SegmentLog;
use journal::engine::{EngineHooks, ShardLog, read_wait};
use journal::{FsyncPolicy, ShardId, ShardSpec};

fn spec(tail_cache_bytes: u64, fsync: FsyncPolicy) -> ShardSpec {
    ShardSpec {
        fsync,
        retention_ms: 0,
        retention_bytes: 9000,
        segment_bytes: 4096,
        segment_ms: 0,
        index_interval_bytes: 256,
        tail_cache_bytes,
        ..ShardSpec::default()
    }
}

async fn open(dir: &Path, tail_cache_bytes: u64) -> SegmentLog {
    open_with(dir, tail_cache_bytes, FsyncPolicy::Always).await
}

async fn open_with(dir: &Path, tail_cache_bytes: u64, fsync: FsyncPolicy) -> SegmentLog {
    // One shard id for every log, so that errors (which name the shard) compare equal.
    let (log, _) = SegmentLog::open(
        ShardId::new("tail", 0),
        dir.to_path_buf(),
        spec(tail_cache_bytes, fsync),
        EngineHooks::default(),
    )
    .await
    .expect("open");
    log
}

/// The three shards under comparison: the one without a cache reads only from disk.
struct Trio {
    dirs: [tempfile::TempDir; 3],
    fsync: FsyncPolicy,
    logs: Vec<SegmentLog>,
}

const CACHES: [u64; 3] = [0, 1500, 64 << 20];

impl Trio {
    async fn new(fsync: FsyncPolicy) -> Trio {
        let dirs = [0, 1, 2].map(|_| tempfile::tempdir().expect("tempdir"));
        let mut logs = Vec::new();
        for (d, c) in dirs.iter().zip(CACHES) {
            logs.push(open_with(d.path(), c, fsync).await);
        }
        Trio { dirs, fsync, logs }
    }

    /// Appends the same batches to every shard, which must assign the same offsets.
    async fn append(&self, batches: Vec<Bytes>) {
        let mut base = None;
        for log in &self.logs {
            let out = log.append(batches.clone()).await.expect("append");
            assert_eq!(*base.get_or_insert(out.base_offset), out.base_offset);
        }
    }

    async fn truncate(&self, offset: u64) {
        for log in &self.logs {
            log.truncate(offset).await.expect("truncate");
        }
    }

    async fn reopen(&mut self) {
        for log in self.logs.drain(..) {
            log.close().await.expect("close");
        }
        for (d, c) in self.dirs.iter().zip(CACHES) {
            self.logs.push(open_with(d.path(), c, self.fsync).await);
        }
    }

    /// Every read, at every offset around the log and with several budgets, is the same on
    /// the three shards.
    async fn agree(&self, when: &str) {
        let s = self.logs[0].stats();
        for log in &self.logs[1..] {
            assert_eq!(log.stats(), s, "{when}: shards differ");
        }
        let from = s.log_start.saturating_sub(2);
        for offset in from..=s.high_watermark + 2 {
            for max in [1usize, 150, 700, 2600, 1 << 20] {
                let disk = format!("{:?}", self.logs[0].read(offset, max).await);
                for (log, cache) in self.logs[1..].iter().zip(&CACHES[1..]) {
                    let got = format!("{:?}", log.read(offset, max).await);
                    assert_eq!(
                        got, disk,
                        "{when}: read({offset}, {max}) with a {cache}-byte cache differs from disk"
                    );
                }
            }
        }
    }
}

fn mixed_batches(round: u64, n: u64) -> Vec<Vec<Bytes>> {
    (0..n)
        .map(|i| {
            let seed = round * 1000 + i;
            (0..1 + seed % 3)
                .map(|j| {
                    kafka_batch(
                        1 + ((seed + j) % 4) as usize,
                        20 + ((seed * 37 + j) % 180) as usize,
                        0,
                        seed * 10 + j,
                    )
                })
                .collect()
        })
        .collect()
}

/// Appends go through the writer thread with fsync=always and are committed on the
/// caller's task otherwise: both feed the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_and_disk_reads_agree_through_truncation_retention_and_reopen() {
    agree_through_everything(FsyncPolicy::Always).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_and_disk_reads_agree_without_per_append_fsync() {
    agree_through_everything(FsyncPolicy::Never).await;
}

async fn agree_through_everything(fsync: FsyncPolicy) {
    let mut t = Trio::new(fsync).await;
    for b in mixed_batches(1, 60) {
        t.append(b).await;
    }
    assert!(t.logs[0].stats().segments >= 3, "{:?}", t.logs[0].stats());
    t.agree("after appends").await;

    // Inside what the small cache holds, then below it, then appends again.
    let end = t.logs[0].stats().log_end;
    t.truncate(end - 3).await;
    t.agree("after a truncation at the tail").await;
    t.truncate(end / 3).await;
    t.agree("after a truncation into an old segment").await;
    for b in mixed_batches(2, 25) {
        t.append(b).await;
    }
    t.agree("after appends following truncation").await;

    for log in &t.logs {
        log.enforce_retention(0).await.expect("retention");
    }
    assert!(t.logs[0].stats().log_start > 0, "retention deleted nothing");
    t.agree("after retention").await;

    t.reopen().await;
    t.agree("after reopen").await;
    for b in mixed_batches(3, 15) {
        t.append(b).await;
    }
    t.agree("after appends following reopen").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_the_tail_are_served_from_memory_without_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 64 << 20).await;
    let group: Vec<Bytes> = (0..3).map(|i| kafka_batch(2, 100, 0, i)).collect();
    log.append(group.clone()).await.expect("append");
    let stored: Vec<Bytes> = [0u64, 2, 4]
        .iter()
        .zip(&group)
        .map(|(o, b)| at_offset(b, *o))
        .collect();

    // Damage the bytes of the second batch on disk: cached reads do not look at them.
    let file = dir.path().join("00000000000000000000.log");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open");
    let pos = stored[0].len() as u64 + 70;
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 16], pos).expect("write");

    let a = log.read(2, 1 << 20).await.expect("read");
    let b = log.read(2, 1 << 20).await.expect("read");
    assert_eq!(a.records, stored[1..].concat());
    // Two reads of one appended group are slices of the same buffer.
    assert_eq!(
        a.records.as_ptr(),
        b.records.as_ptr(),
        "a cached read copied"
    );
    // Reads spanning two groups are served too (one copy).
    let next = kafka_batch(1, 10, 0, 9);
    log.append(vec![next.clone()]).await.expect("append");
    let c = log.read(2, 1 << 20).await.expect("read");
    assert_eq!(
        c.records,
        [&stored[1..], &[at_offset(&next, 6)]].concat().concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tailers_see_only_committed_bytes_identical_to_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path(), 4096).await);
    let total: u64 = 4 * 40;
    let mut tailers = Vec::new();
    for _ in 0..2 {
        let log = log.clone();
        tailers.push(tokio::spawn(async move {
            let (mut next, mut got) = (0u64, Vec::new());
            for _ in 0..100_000 {
                if next >= total {
                    break;
                }
                let c = read_wait(log.as_ref(), next, 1500, Duration::from_secs(5))
                    .await
                    .expect("read");
                assert!(c.next_offset <= c.high_watermark, "served above the hw");
                assert!(
                    log.stats().high_watermark >= c.next_offset,
                    "served bytes the log has not committed"
                );
                got.push(c.records);
                next = c.next_offset;
            }
            (next, got.concat())
        }));
    }
    let mut appenders = Vec::new();
    for a in 0..4u64 {
        let log = log.clone();
        appenders.push(tokio::spawn(async move {
            for i in 0..40 {
                let b = kafka_batch(1, 50 + (i % 7) as usize * 30, 0, a * 100 + i);
                log.append(vec![b]).await.expect("append");
            }
        }));
    }
    for a in appenders {
        a.await.expect("join");
    }
    let mut seen = Vec::new();
    for t in tailers {
        let (next, bytes) = t.await.expect("join");
        assert_eq!(next, total);
        seen.push(bytes);
    }
    log.close().await.expect("close");
    drop(log);
    let disk = open(dir.path(), 0).await;
    let all = disk.read(0, 1 << 30).await.expect("read from disk");
    assert_eq!(all.next_offset, total);
    for s in seen {
        assert!(
            s == all.records,
            "a tailer saw other bytes than the disk holds"
        );
    }
}

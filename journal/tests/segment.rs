//! Segment-engine behaviours beyond the shared conformance suite: rolling by age, index
//! files written at seal and rebuilt when lost, and the fsync policies' effect on what is
//! acknowledged and visible.

mod common;

use std::time::Duration;

use common::{append_one, at_offset, kafka_batch, now_ms, split_batches};
use journal::engine::segment::{RecoveryReport, SegmentLog};
use journal::engine::{EngineHooks, ShardLog};
use journal::{FsyncPolicy, ShardId, ShardSpec};
use prometheus_client::metrics::histogram::Histogram;

fn spec(f: impl FnOnce(&mut ShardSpec)) -> ShardSpec {
    let mut s = ShardSpec {
        retention_ms: 0,
        index_interval_bytes: 256,
        ..ShardSpec::default()
    };
    f(&mut s);
    s
}

async fn open(dir: &std::path::Path, spec: ShardSpec, hooks: EngineHooks) -> SegmentLog {
    SegmentLog::open(ShardId::new("s", 0), dir.to_path_buf(), spec, hooks)
        .await
        .expect("open")
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(
        dir.path(),
        spec(|s| s.segment_ms = 100),
        EngineHooks::default(),
    )
    .await;
    log.append(vec![kafka_batch(1, 10, now_ms(), 1)])
        .await
        .expect("append");
    log.append(vec![kafka_batch(1, 10, now_ms(), 2)])
        .await
        .expect("append");
    assert_eq!(log.stats().segments, 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let out = log
        .append(vec![kafka_batch(1, 10, now_ms(), 3)])
        .await
        .expect("append");
    assert_eq!(
        log.stats().segments,
        2,
        "the old segment did not roll by age"
    );
    assert!(
        dir.path()
            .join(format!("{:020}.log", out.base_offset))
            .exists()
    );
    // The sealed segment got its index files.
    assert!(dir.path().join(format!("{:020}.index", 0)).exists());
    assert!(dir.path().join(format!("{:020}.timeindex", 0)).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_or_damaged_index_files_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(
        dir.path(),
        spec(|s| s.segment_bytes = 2048),
        EngineHooks::default(),
    )
    .await;
    let mut expected = Vec::new();
    for i in 0..40u64 {
        let b = kafka_batch(2, 100, 1000 + i as i64, i);
        let off = append_one(&log, &b).await;
        expected.push(at_offset(&b, off));
    }
    log.close().await.expect("close");
    drop(log);
    let ix = dir.path().join(format!("{:020}.index", 0));
    std::fs::remove_file(&ix).expect("remove index");
    std::fs::write(dir.path().join(format!("{:020}.timeindex", 0)), [1u8, 2, 3]).expect("damage");
    let log = open(
        dir.path(),
        spec(|s| s.segment_bytes = 2048),
        EngineHooks::default(),
    )
    .await;
    assert!(ix.exists(), "index file not rebuilt");
    let mut got = Vec::new();
    let mut next = 0;
    while next < log.stats().high_watermark {
        let c = log.read(next, 700).await.expect("read");
        got.extend(split_batches(&c.records));
        next = c.next_offset;
    }
    assert_eq!(got, expected);
    assert_eq!(
        log.offset_for_timestamp(1003).await.expect("lookup"),
        Some(6)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_policies_sync_when_they_say() {
    for (policy, min_syncs, max_syncs) in [
        (FsyncPolicy::Always, 20, u64::MAX),
        (FsyncPolicy::Never, 0, 0),
        (FsyncPolicy::Interval { ms: 50 }, 1, 19),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = Histogram::new([0.001, 0.01, 0.1]);
        let hooks = EngineHooks {
            fsync_seconds: Some(h.clone()),
        };
        let log = open(dir.path(), spec(|s| s.fsync = policy), hooks).await;
        for i in 0..20u64 {
            let out = log
                .append(vec![kafka_batch(1, 10, 0, i)])
                .await
                .expect("append");
            // Whatever the policy, an acknowledged append is visible at once.
            assert_eq!(log.stats().high_watermark, out.log_end);
        }
        // The interval syncer runs on its own clock; on a loaded machine its first tick
        // may come late, so wait for it (bounded) instead of sleeping a fixed time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        tokio::time::sleep(Duration::from_millis(120)).await;
        while fsync_count(&h) < min_syncs && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let count = fsync_count(&h);
        assert!(
            (min_syncs..=max_syncs).contains(&count),
            "{policy:?}: {count} fsyncs, expected {min_syncs}..={max_syncs}"
        );
        if let FsyncPolicy::Interval { .. } = policy {
            // Once synced, an idle shard's ticks cost no fdatasync.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(fsync_count(&h), count, "an idle shard kept syncing");
        }
        drop(log);
    }
}

/// How many fsyncs the histogram has observed.
fn fsync_count(h: &Histogram) -> u64 {
    let mut text = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register("f", "fsyncs", h.clone());
    prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
    text.lines()
        .find_map(|l| l.strip_prefix("f_count "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("count")
}

/// Sizes of the shard's segment files, by base offset.
fn log_file_lengths(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let base = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((base, e.metadata().ok()?.len()))
        })
        .collect();
    v.sort();
    v
}

/// The active (last) segment file: its path, its length and a handle open for writing.
fn active_segment(dir: &std::path::Path) -> (std::path::PathBuf, u64, std::fs::File) {
    let (&(active, len), _) = log_file_lengths(dir).split_last().expect("segments");
    let path = dir.join(format!("{active:020}.log"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    (path, len, f)
}

/// Reopens the log, returning what recovery reported.
async fn reopen(dir: &std::path::Path, spec: ShardSpec) -> (SegmentLog, RecoveryReport) {
    SegmentLog::open(
        ShardId::new("s", 0),
        dir.to_path_buf(),
        spec,
        EngineHooks::default(),
    )
    .await
    .expect("reopen")
}

async fn read_all(log: &SegmentLog) -> Vec<bytes::Bytes> {
    let mut got = Vec::new();
    let mut next = 0;
    while next < log.stats().high_watermark {
        let c = log.read(next, 64 << 10).await.expect("read");
        got.extend(split_batches(&c.records));
        next = c.next_offset;
    }
    got
}

/// With fsync=always, zeros are written ahead of the active segment's end (so that a small
/// group's fdatasync has no size or extent change to write), but the files never show it to
/// recovery or readers: sealed segments and a closed log end at their data, and a zero tail
/// left by a crash is cut at recovery without being reported as damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_written_ahead_never_show_in_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = || spec(|s| s.segment_bytes = 96 << 10);
    let log = open(dir.path(), small(), EngineHooks::default()).await;
    let mut expected = Vec::new();
    let mut append = async |log: &SegmentLog, i: u64| {
        let b = kafka_batch(1, 900, 1000 + i as i64, i);
        let off = append_one(log, &b).await;
        expected.push(at_offset(&b, off));
    };
    for i in 0..150 {
        append(&log, i).await;
    }
    assert!(log.stats().segments > 1, "expected the log to roll");
    // The helper runs on its own thread: wait (bounded) for zeros past the data.
    let data = log.stats().size_bytes;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log_file_lengths(dir.path())
        .iter()
        .map(|x| x.1)
        .sum::<u64>()
        <= data
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was zero-filled ahead: {:?}",
            log_file_lengths(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    log.close().await.expect("close");
    assert_eq!(
        log_file_lengths(dir.path())
            .iter()
            .map(|x| x.1)
            .sum::<u64>(),
        data,
        "a closed log's files are longer than its data"
    );
    drop(log);

    // A crash leaves the zeros: recovery cuts them silently and appends go on from the end.
    let (path, len, f) = active_segment(dir.path());
    f.set_len(len + 300_000).expect("extend with zeros");
    drop(f);
    let (log, report) = reopen(dir.path(), small()).await;
    assert!(
        report.truncated.is_none(),
        "a zero tail reported as damage: {:?}",
        report.truncated
    );
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), len);
    for i in 150..200 {
        append(&log, i).await;
    }
    assert_eq!(read_all(&log).await, expected);
    let end = log.stats().log_end;
    log.close().await.expect("close");
    drop(log);

    // Zeros followed by anything else are damage, and are reported.
    let (_, len, f) = active_segment(dir.path());
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[1], len + 5000).expect("write");
    drop(f);
    let (log, report) = reopen(dir.path(), small()).await;
    let (cut, _) = report.truncated.expect("damage not reported");
    assert_eq!(cut, 5001);
    assert_eq!(log.stats().log_end, end);
    assert_eq!(read_all(&log).await, expected);
}

/// Reads every batch from the log start to the high watermark.
async fn read_from_start(log: &SegmentLog) -> Vec<bytes::Bytes> {
    let mut got = Vec::new();
    let mut next = log.stats().log_start;
    while next < log.stats().high_watermark {
        let c = log.read(next, 64 << 10).await.expect("read");
        got.extend(split_batches(&c.records));
        next = c.next_offset;
    }
    got
}

/// Appends one batch (recorded in `sent` with its offset) and applies retention; returns
/// whether the append rolled into a recycled file.
async fn recycle_step(
    log: &SegmentLog,
    d: &std::path::Path,
    sent: &mut Vec<(u64, bytes::Bytes)>,
    i: u64,
) -> bool {
    let b = kafka_batch(1, 900, 1000 + i as i64, i);
    let off = append_one(log, &b).await;
    sent.push((off, at_offset(&b, off)));
    log.enforce_retention(now_ms()).await.expect("retention");
    let (&(active, _), _) = log_file_lengths(d).split_last().expect("segments");
    active == off && d.join(format!("{active:020}.recycled")).exists()
}

/// Segment files retired by retention are kept (at most two, inside the shard directory)
/// and reused by later rolls; a recycled file's stale batches never show: closing cuts
/// them, and after a crash recovery cuts them and reports a recycled tail, not damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retired_segment_files_are_recycled_and_their_stale_batches_never_show() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // No zero-fill helper (fsync=always only), so that file lengths are exact when read.
    let small = || {
        spec(|s| {
            s.fsync = FsyncPolicy::Never;
            s.segment_bytes = 8192;
            s.retention_bytes = 16384;
        })
    };
    let log = open(d, small(), EngineHooks::default()).await;
    let mut sent: Vec<(u64, bytes::Bytes)> = Vec::new();
    let marker = |base: u64| d.join(format!("{base:020}.recycled"));
    let mut i = 0;
    let mut rolled_into_recycled = false;
    while !rolled_into_recycled {
        assert!(i < 200, "no roll took a recycled file");
        rolled_into_recycled = recycle_step(&log, d, &mut sent, i).await && i > 40;
        i += 1;
    }
    assert!(d.join("recycle-0.log").exists() || d.join("recycle-1.log").exists());
    let pool = |d: &std::path::Path| {
        std::fs::read_dir(d)
            .expect("dir")
            .filter(|e| {
                let n = e.as_ref().expect("entry").file_name();
                n.to_str().is_some_and(|n| n.starts_with("recycle-"))
            })
            .count()
    };
    assert!(pool(d) <= 2, "the pool holds more than two files");
    // The active segment is a recycled file: longer than its one batch of data.
    let (path, len, _) = active_segment(d);
    let data = sent.last().expect("sent").1.len() as u64;
    assert!(len > data, "the recycled file was not reused in place");
    let expected = |sent: &[(u64, bytes::Bytes)], start: u64| -> Vec<bytes::Bytes> {
        sent.iter()
            .filter(|(o, _)| *o >= start)
            .map(|x| x.1.clone())
            .collect()
    };
    assert_eq!(
        read_from_start(&log).await,
        expected(&sent, log.stats().log_start)
    );

    // Crash (no close): recovery cuts the stale tail silently and serves only new batches.
    let start = log.stats().log_start;
    drop(log);
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), len);
    let (log, report) = reopen(d, small()).await;
    assert!(
        report.truncated.is_none(),
        "a recycled tail reported as damage: {:?}",
        report.truncated
    );
    let (stale, why) = report.recycled_tail.expect("no recycled tail reported");
    assert_eq!(stale, len - data);
    assert!(
        why.contains("base offset"),
        "stopped for another reason: {why}"
    );
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), data);
    assert!(!marker(sent.last().expect("sent").0).exists());
    assert_eq!(log.stats().log_start, start);
    let got = read_from_start(&log).await;
    assert_eq!(got, expected(&sent, start));
    // Appends go on, and a pool that survived the restart still feeds rolls.
    let before = pool(d);
    assert_eq!(report.pool_files, before);
    for _ in 0..40 {
        recycle_step(&log, d, &mut sent, i).await;
        i += 1;
    }
    assert_eq!(
        read_from_start(&log).await,
        expected(&sent, log.stats().log_start)
    );

    // Closing cuts a recycled file to its data, like a zero tail.
    while !recycle_step(&log, d, &mut sent, i).await {
        i += 1;
    }
    i += 1;
    log.close().await.expect("close");
    let (path, len, _) = active_segment(d);
    assert_eq!(len, sent.last().expect("sent").1.len() as u64);
    drop(log);
    let (log, report) = reopen(d, small()).await;
    assert!(report.truncated.is_none() && report.recycled_tail.is_none());
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), len);
    // Truncating into a recycled segment cuts its stale tail too.
    while !recycle_step(&log, d, &mut sent, i).await {
        i += 1;
    }
    let b = kafka_batch(1, 900, 5000, 9999);
    let off = append_one(&log, &b).await;
    let (path, _, _) = active_segment(d);
    log.truncate(off).await.expect("truncate");
    let data = sent.last().expect("sent").1.len() as u64;
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), data);
    assert_eq!(
        read_from_start(&log).await,
        expected(&sent, log.stats().log_start)
    );
    log.close().await.expect("close");
}

/// The pool lives in the shard's directory: a restart through the shard registry opens the
/// shard with its pool files (not taken for segments), and deleting the shard removes them
/// with the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recycle_pool_survives_a_restart_and_goes_with_the_shard() {
    use journal::registry::{Origin, ShardManager};
    let data = tempfile::tempdir().expect("tempdir");
    let small = spec(|s| {
        s.segment_bytes = 8192;
        s.retention_bytes = 16384;
    });
    let id = ShardId::new("t", 0);
    let dir = data.path().join(id.dir_name());
    let mgr = ShardManager::new(
        1,
        data.path().to_path_buf(),
        small.clone(),
        Default::default(),
    );
    let h = mgr
        .create(id.clone(), small.clone(), 0, 1, Origin::Local)
        .await
        .expect("create");
    let mut sent = Vec::new();
    for i in 0..40 {
        let b = kafka_batch(1, 900, 1000 + i as i64, i);
        let off = append_one(h.log.as_ref(), &b).await;
        sent.push((off, at_offset(&b, off)));
        h.log.enforce_retention(now_ms()).await.expect("retention");
    }
    let pool_files = || {
        ["recycle-0.log", "recycle-1.log"]
            .iter()
            .filter(|n| dir.join(n).exists())
            .count()
    };
    let pooled = pool_files();
    assert!(pooled >= 1, "retention kept no files for reuse");
    let stats = h.log.stats();
    drop(h);
    mgr.close_all().await;
    drop(mgr);

    let mgr = ShardManager::new(
        1,
        data.path().to_path_buf(),
        small.clone(),
        Default::default(),
    );
    assert_eq!(mgr.open_existing().await.expect("restart"), 1);
    let h = mgr.get(&id).expect("shard");
    let after = h.log.stats();
    assert_eq!(
        (after.log_start, after.log_end, after.segments),
        (stats.log_start, stats.log_end, stats.segments)
    );
    assert_eq!(pool_files(), pooled);
    let c = h.log.read(after.log_start, 1 << 20).await.expect("read");
    let want: Vec<_> = sent
        .iter()
        .filter(|(o, _)| *o >= after.log_start)
        .map(|x| x.1.clone())
        .collect();
    assert_eq!(split_batches(&c.records), want);
    drop(h);
    mgr.delete(&id).await.expect("delete");
    assert!(
        !dir.exists(),
        "the shard directory (and its pool) survived deletion"
    );
}

//! Damage on disk: a flipped byte in an old (sealed) segment is reported on read as a
//! `Corrupt` error naming the file, position and offset, never a panic or bad data; a torn
//! or corrupt tail of the active segment is cut by recovery at start-up.

mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use common::{append_one, at_offset, kafka_batch};
use journal::engine::segment::SegmentLog;
use journal::engine::{EngineHooks, ShardLog};
use journal::{FsyncPolicy, JournalError, ShardId, ShardSpec};

fn spec() -> ShardSpec {
    ShardSpec {
        segment_bytes: 2048,
        retention_ms: 0,
        fsync: FsyncPolicy::Always,
        index_interval_bytes: 256,
        ..ShardSpec::default()
    }
}

async fn open(dir: &Path) -> (SegmentLog, journal::engine::segment::RecoveryReport) {
    SegmentLog::open(
        ShardId::new("c", 0),
        dir.to_path_buf(),
        spec(),
        EngineHooks::default(),
    )
    .await
    .expect("open")
}

async fn fill(log: &SegmentLog, n: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    for i in 0..n {
        let b = kafka_batch(2, 150, 0, i);
        let off = append_one(log, &b).await;
        out.push(at_offset(&b, off));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_in_an_old_segment_is_a_clear_error_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path()).await;
    let batches = fill(&log, 40).await;
    assert!(log.stats().segments >= 3);
    log.close().await.expect("close");
    drop(log);

    // Flip one byte inside the records of the second batch of the first segment.
    let first = dir.path().join("00000000000000000000.log");
    let pos = (batches[0].len() + 100) as u64;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&first)
        .expect("open");
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, pos).expect("read");
    f.write_all_at(&[byte[0] ^ 0x20], pos).expect("write");
    drop(f);

    let (log, report) = open(dir.path()).await;
    assert!(
        report.truncated.is_none(),
        "a sealed segment must not be cut at start-up"
    );
    // The first batch is intact and still served on its own.
    let ok = log.read(0, 10).await.expect("read the intact batch");
    assert_eq!(ok.records, batches[0]);
    let err = log
        .read(0, 1 << 20)
        .await
        .expect_err("corrupt batch served");
    match &err {
        JournalError::Corrupt {
            path,
            offset,
            position,
            reason,
            ..
        } => {
            assert_eq!(path, &first);
            assert_eq!(*offset, 2, "the damaged batch starts at offset 2");
            assert_eq!(*position, batches[0].len() as u64);
            assert!(reason.contains("CRC"), "reason: {reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("00000000000000000000.log") && msg.contains("offset 2"),
        "{msg}"
    );
    // Data in other segments is still served.
    let later = log.read(30, 1 << 20).await.expect("read a later segment");
    assert!(!later.records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_base_offset_field_is_detected_although_the_crc_skips_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path()).await;
    let batches = fill(&log, 30).await;
    log.close().await.expect("close");
    drop(log);
    let first = dir.path().join("00000000000000000000.log");
    let pos = batches[0].len() as u64 + 7;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .expect("open");
    f.write_all_at(&[0x55], pos).expect("write");
    drop(f);
    let (log, _) = open(dir.path()).await;
    match log.read(0, 1 << 20).await {
        Err(JournalError::Corrupt { reason, .. }) => {
            assert!(reason.contains("base offset"), "reason: {reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_cuts_a_torn_or_corrupt_tail_of_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) = open(dir.path()).await;
    let batches = fill(&log, 25).await;
    let end = log.stats().log_end;
    let active = log.dir().join(format!("{:020}.log", {
        let mut bases: Vec<u64> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()
            })
            .collect();
        bases.sort();
        *bases.last().expect("segment")
    }));
    log.close().await.expect("close");
    drop(log);

    // A complete batch with a bad CRC, then half a batch: both must go.
    let mut bad = at_offset(&kafka_batch(1, 50, 0, 900), end).to_vec();
    let n = bad.len();
    bad[n - 3] ^= 1;
    let torn = at_offset(&kafka_batch(2, 80, 0, 901), end + 1);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .expect("open");
    f.write_all(&bad).expect("write");
    f.write_all(&torn[..torn.len() - 10]).expect("write");
    drop(f);
    let before = std::fs::metadata(&active).expect("meta").len();

    let (log, report) = open(dir.path()).await;
    let (cut, why) = report.truncated.expect("recovery did not cut anything");
    assert_eq!(cut as usize, bad.len() + torn.len() - 10);
    assert!(why.contains("CRC"), "reason: {why}");
    assert_eq!(
        std::fs::metadata(&active).expect("meta").len(),
        before - cut
    );
    assert_eq!(log.stats().log_end, end);
    let mut served = Vec::new();
    let mut next = 0;
    while next < end {
        let c = log.read(next, 1 << 20).await.expect("read");
        served.extend(common::split_batches(&c.records));
        next = c.next_offset;
    }
    assert_eq!(served, batches);
    let b = kafka_batch(1, 10, 0, 5);
    assert_eq!(log.append(vec![b]).await.expect("append").base_offset, end);
}

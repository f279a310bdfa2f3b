//! Append benchmark of the segment engine with fsync=always (group commit), side by side
//! with the device's raw limit measured in the same run.
//!
//! For every batch size and number of concurrent appenders C:
//! - journal: C tasks append one RecordBatch v2 each per call to one shard and wait for the
//!   acknowledgement (durable); throughput and per-append latency p50/p99.
//! - raw group-commit limit: one blocking-pool thread appends C batches' worth of bytes to a file with one
//!   write and one fdatasync, in a loop — the best any group commit of C waiters can do on
//!   this device (each waiter's latency is one write + fdatasync).
//! - raw over a pre-zeroed file: the same loop, but overwriting a region that was written
//!   with zeros and synced before the round (not counted in its time), so that its
//!   fdatasyncs have no size or extent change to write. The journal zero-fills ahead of its
//!   end for that reason (`log::zero_ahead`), so this is the device's limit for what the
//!   journal does; the goal is judged against the higher of the two raw references.
//!
//! With `--steady`, the journal's shard is in steady state instead of fresh: small segments
//! ([`STEADY_SEGMENT`]), retention by bytes (two segments' worth) applied every
//! [`STEADY_RETENTION_EVERY`] while the rounds run, and a warm-up (untimed) of several
//! segments' worth with retention after every step, so that retention has retired segments
//! before the timed rounds start and the rounds roll as a long-running shard does (into
//! recycled files where the build recycles them, see `log::recycle`). The raw sides are
//! unchanged.
//!
//! Run on demand (not in CI):
//! `cargo run --release -p journal --example append_bench -- [--seconds 6] [--rounds 3] [--dir PATH]
//! [--sizes 1024,65536] [--appenders 1,16,256] [--steady]`

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use journal::engine::segment::SegmentLog;
use journal::engine::{EngineHooks, ShardLog};
use journal::{FsyncPolicy, ShardId, ShardSpec};

mod common;
use common::{flag, flag_or, process_cpu};

/// One valid batch of exactly `size` bytes (a single record).
fn batch(size: usize) -> Bytes {
    let encode = common::one_record_batch;
    // The record's varint lengths grow with the value; converge on the exact size.
    let mut value_len = size - 80;
    for _ in 0..8 {
        let b = encode(value_len);
        if b.len() == size {
            return b;
        }
        value_len = (value_len as i64 + size as i64 - b.len() as i64) as usize;
    }
    encode(value_len)
}

struct Result {
    mb_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ops: usize,
}

fn summarize(bytes: u64, elapsed: Duration, mut lat: Vec<Duration>) -> Result {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Result {
        mb_s: bytes as f64 / elapsed.as_secs_f64() / 1e6,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        ops: lat.len(),
    }
}

/// Totals of one side of a case over its rounds.
#[derive(Default)]
struct Acc {
    bytes: u64,
    elapsed: Duration,
    lat: Vec<Duration>,
    /// CPU time of the whole process (user + system) during this side's rounds.
    cpu: Duration,
}

/// One round of write + fdatasync of `conc` batches at a time, appending to `f` at `pos`.
fn raw_round(
    f: &std::fs::File,
    pos: &mut u64,
    group: &[u8],
    conc: usize,
    secs: f64,
    acc: &mut Acc,
) {
    let (start, cpu) = (Instant::now(), process_cpu());
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all_at(group, *pos).expect("write");
        f.sync_data().expect("fdatasync");
        *pos += group.len() as u64;
        acc.bytes += group.len() as u64;
        // Every one of the group's `conc` writers waits this long.
        acc.lat.extend(std::iter::repeat_n(t.elapsed(), conc));
    }
    acc.elapsed += start.elapsed();
    acc.cpu += process_cpu() - cpu;
}

/// Bytes zeroed and synced before each pre-zeroed raw round: the round overwrites them
/// from the start and wraps around (overwriting written blocks writes no metadata either).
const ZEROED_REGION: u64 = 64 << 20;

/// Writes zeros over `0..len` of `f` and syncs it (before a pre-zeroed round, not timed).
fn zero_fill(f: &std::fs::File, len: u64) {
    let zeros = vec![0u8; 4 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(zeros.len() as u64);
        f.write_all_at(&zeros[..n as usize], pos)
            .expect("zero fill");
        pos += n;
    }
    f.sync_all().expect("sync the zero fill");
}

/// One round of write + fdatasync of `conc` batches at a time over the zeroed region of
/// `f`, from its start, wrapping around at its end.
fn raw_zeroed_round(f: &std::fs::File, group: &[u8], conc: usize, secs: f64, acc: &mut Acc) {
    let region = ZEROED_REGION.max(4 * group.len() as u64);
    zero_fill(f, region);
    let mut pos = 0u64;
    let (start, cpu) = (Instant::now(), process_cpu());
    while start.elapsed().as_secs_f64() < secs {
        if pos + group.len() as u64 > region {
            pos = 0;
        }
        let t = Instant::now();
        f.write_all_at(group, pos).expect("write");
        f.sync_data().expect("fdatasync");
        pos += group.len() as u64;
        acc.bytes += group.len() as u64;
        acc.lat.extend(std::iter::repeat_n(t.elapsed(), conc));
    }
    acc.elapsed += start.elapsed();
    acc.cpu += process_cpu() - cpu;
}

/// One round of `conc` tasks appending `b` to `log` for `secs`.
async fn journal_round(log: &Arc<SegmentLog>, b: &Bytes, conc: usize, secs: f64, acc: &mut Acc) {
    // Every append is one batch of one record; counted by offsets, since retention may
    // shrink the log's size meanwhile.
    let before = log.stats().log_end;
    let (start, cpu) = (Instant::now(), process_cpu());
    let deadline = start + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (log, b) = (log.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                log.append(vec![b.clone()]).await.expect("append");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    for t in tasks {
        acc.lat.extend(t.await.expect("join"));
    }
    acc.elapsed += start.elapsed();
    acc.cpu += process_cpu() - cpu;
    acc.bytes += (log.stats().log_end - before) * b.len() as u64;
}

/// Segment size of a `--steady` shard (its retention keeps two segments' worth).
const STEADY_SEGMENT: u64 = 16 << 20;
/// How often a `--steady` shard's retention runs during the timed rounds.
const STEADY_RETENTION_EVERY: Duration = Duration::from_millis(50);
/// Segments' worth written by a `--steady` shard's warm-up.
const STEADY_WARMUP_SEGMENTS: u64 = 8;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Brings a `--steady` shard to steady state (untimed): writes several segments' worth in
/// 1 MiB appends, applying retention after each, so that every roll after the first few
/// finds retired segments.
async fn steady_warmup(log: &SegmentLog) {
    let chunk: Vec<Bytes> = std::iter::repeat_n(batch(64 << 10), 16).collect();
    let mut written = 0;
    while written < STEADY_WARMUP_SEGMENTS * STEADY_SEGMENT {
        log.append(chunk.clone()).await.expect("warm-up append");
        written += 1 << 20;
        log.enforce_retention(now_ms()).await.expect("retention");
    }
}

/// How many fdatasyncs the histogram saw, and their total seconds.
fn fsync_totals(h: &prometheus_client::metrics::histogram::Histogram) -> (f64, f64) {
    let mut text = String::new();
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register("f", "fsyncs", h.clone());
    let _ = prometheus_client::encoding::text::encode(&mut text, &reg);
    let get = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (get("f_count "), get("f_sum "))
}

/// Runs raw, raw over zeros and journal in alternating rounds, so that drift in the device's speed hits
/// all sides alike.
async fn case(dir: &Path, b: &Bytes, conc: usize, secs: f64, rounds: usize, steady: bool) -> Case {
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .expect("open raw file")
    };
    let path = dir.join(format!("raw-{}-{conc}.dat", b.len()));
    let zpath = dir.join(format!("raw-zeroed-{}-{conc}.dat", b.len()));
    let f = open(&path);
    let zf = Arc::new(open(&zpath));
    let group: Vec<u8> = b.iter().copied().cycle().take(b.len() * conc).collect();
    let mut pos = 0u64;

    let shard = ShardId::new(format!("bench-{}-{conc}", b.len()), 0);
    let sdir = dir.join(shard.dir_name());
    let _ = std::fs::remove_dir_all(&sdir);
    let spec = if steady {
        ShardSpec {
            fsync: FsyncPolicy::Always,
            retention_ms: 0,
            segment_bytes: STEADY_SEGMENT,
            retention_bytes: 2 * STEADY_SEGMENT,
            ..ShardSpec::default()
        }
    } else {
        ShardSpec {
            fsync: FsyncPolicy::Always,
            retention_ms: 0,
            segment_bytes: 1 << 30,
            ..ShardSpec::default()
        }
    };
    let fsyncs = prometheus_client::metrics::histogram::Histogram::new([0.001]);
    let hooks = EngineHooks {
        fsync_seconds: Some(fsyncs.clone()),
    };
    let (log, _) = SegmentLog::open(shard, sdir.clone(), spec, hooks)
        .await
        .expect("open");
    let log = Arc::new(log);
    if steady {
        steady_warmup(&log).await;
    }
    let warmup_fsyncs = fsync_totals(&fsyncs);
    // Retention runs beside the rounds, as the registry's retention task does.
    let retention = steady.then(|| {
        let log = log.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STEADY_RETENTION_EVERY).await;
                log.enforce_retention(now_ms()).await.expect("retention");
            }
        })
    });

    let (mut r, mut z, mut j) = (Acc::default(), Acc::default(), Acc::default());
    let slice = secs / rounds as f64;
    // The raw loop runs on a blocking-pool thread, the same kind of thread that runs the
    // journal's writes and fdatasyncs, so that both sides see the same scheduling.
    let f = Arc::new(f);
    let group = Arc::new(group);
    for _ in 0..rounds {
        let (f2, g2, mut acc, mut p) = (f.clone(), group.clone(), std::mem::take(&mut r), pos);
        (acc, p) = tokio::task::spawn_blocking(move || {
            raw_round(&f2, &mut p, &g2, conc, slice, &mut acc);
            (acc, p)
        })
        .await
        .expect("raw round");
        (r, pos) = (acc, p);
        let (zf2, g2, mut acc) = (zf.clone(), group.clone(), std::mem::take(&mut z));
        z = tokio::task::spawn_blocking(move || {
            raw_zeroed_round(&zf2, &g2, conc, slice, &mut acc);
            acc
        })
        .await
        .expect("raw zeroed round");
        journal_round(&log, b, conc, slice, &mut j).await;
    }
    if let Some(t) = retention {
        t.abort();
        let _ = t.await;
    }
    log.close().await.expect("close");
    let (n_fsync, fsync_secs) = fsync_totals(&fsyncs);
    let (n_fsync, fsync_secs) = (n_fsync - warmup_fsyncs.0, fsync_secs - warmup_fsyncs.1);
    eprintln!(
        "  journal: {} appends in {n_fsync} fsyncs ({:.1} per fsync); per group {:.0} us in fdatasync, {:.0} us elsewhere; process CPU {:.2} us per append (raw: {:.2} us per batch, raw0: {:.2})",
        j.lat.len(),
        j.lat.len() as f64 / n_fsync.max(1.0),
        fsync_secs / n_fsync.max(1.0) * 1e6,
        (j.elapsed.as_secs_f64() - fsync_secs) / n_fsync.max(1.0) * 1e6,
        j.cpu.as_secs_f64() * 1e6 / j.lat.len().max(1) as f64,
        r.cpu.as_secs_f64() * 1e6 / r.lat.len().max(1) as f64,
        z.cpu.as_secs_f64() * 1e6 / z.lat.len().max(1) as f64,
    );
    drop((f, zf));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&zpath);
    let _ = std::fs::remove_dir_all(&sdir);
    let per_fsync = j.lat.len() as f64 / n_fsync.max(1.0);
    Case {
        journal: summarize(j.bytes, j.elapsed, j.lat),
        raw: summarize(r.bytes, r.elapsed, r.lat),
        zeroed: summarize(z.bytes, z.elapsed, z.lat),
        per_fsync,
    }
}

/// A case's three sides, and the journal's appends per fdatasync.
struct Case {
    journal: Result,
    raw: Result,
    zeroed: Result,
    per_fsync: f64,
}

#[tokio::main]
async fn main() {
    let secs: f64 = flag_or("--seconds", 6.0);
    let rounds: usize = flag_or("--rounds", 3);
    let dir = PathBuf::from(flag("--dir").unwrap_or_else(|| "target/journal-bench".into()));
    // Subsets of the cases, for profiling one of them.
    let list = |name: &str, default: &[usize]| -> Vec<usize> {
        flag(name).map_or_else(
            || default.to_vec(),
            |v| {
                v.split(',')
                    .map(|x| x.trim().parse().expect("a list of numbers"))
                    .collect()
            },
        )
    };
    let sizes = list("--sizes", &[1024, 64 * 1024]);
    let appenders = list("--appenders", &[1, 16, 256]);
    let steady = std::env::args().any(|a| a == "--steady");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", loadavg().trim());
    println!(
        "dir: {}, {secs} s per side per case in {rounds} alternating rounds, fsync=always, journal shard: {}",
        dir.display(),
        if steady {
            "steady (16 MiB segments, retention 32 MiB, warmed up)"
        } else {
            "fresh"
        }
    );
    // "raw" grows its file like a plain append loop; "raw0" overwrites a pre-zeroed region.
    // The goal is judged against the better of the two: journal/best.
    println!(
        "| batch | appenders | journal MB/s | journal p50 ms | journal p99 ms | raw MB/s | raw p50 ms | raw p99 ms | raw0 MB/s | raw0 p50 ms | raw0 p99 ms | journal/raw | journal/raw0 | journal/best | appends/fdatasync |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &sizes {
        let b = batch(size);
        for &conc in &appenders {
            let Case {
                journal: j,
                raw: r,
                zeroed: z,
                per_fsync,
            } = case(&dir, &b, conc, secs, rounds, steady).await;
            let pct = |x: f64| 100.0 * j.mb_s / x;
            println!(
                "| {} B | {conc} | {:.1} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.0}% | {:.0}% | {:.0}% | {per_fsync:.1} |",
                b.len(),
                j.mb_s,
                j.p50_ms,
                j.p99_ms,
                r.mb_s,
                r.p50_ms,
                r.p99_ms,
                z.mb_s,
                z.p50_ms,
                z.p99_ms,
                pct(r.mb_s),
                pct(z.mb_s),
                pct(r.mb_s.max(z.mb_s)),
            );
            eprintln!(
                "  ({} journal appends, {} raw and {} raw0 writer-waits)",
                j.ops, r.ops, z.ops
            );
        }
    }
    println!("load average at end: {}", loadavg().trim());
}

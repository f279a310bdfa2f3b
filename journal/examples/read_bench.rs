//! Read benchmark of the segment engine: a tailer following the tail, and a catch-up read of
//! a backlog.
//!
//! - tail: `--appenders` tasks append single-record batches of `--size` bytes (paced to
//!   `--rate` batches/s in total, 0 = as fast as they can) while `--tailers` tasks each follow
//!   the shard with `read_wait`, as the broker's MQTT delivery and Kafka Fetch do. Reports
//!   reads/s, MB/s read, batches per read, and the process CPU per append and per batch read
//!   (appends included: they cost the same on both sides of a before/after comparison;
//!   `--tailers 0` measures them alone).
//! - catch-up: appends a backlog of `--backlog-mb` MB, then reads it from offset 0 to the
//!   end in `--max-bytes` reads; reports MB/s and process CPU per MB.
//! - recent: reads the newest `--recent-mb` MB one batch per read (a budget of 1 byte), the
//!   read path alone at a tailer's granularity: reads/s and process CPU per read.
//!
//! Run on demand (not in CI):
//! `cargo run --release -p journal --example read_bench -- [--seconds 5] [--size 256]
//! [--rate 20000] [--appenders 1] [--tailers 1] [--fsync interval|always|never]
//! [--backlog-mb 128] [--recent-mb 4] [--max-bytes 1048576] [--dir PATH]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use journal::engine::segment::SegmentLog;
use journal::engine::{EngineHooks, ShardLog, read_wait};
use journal::{FsyncPolicy, ShardId, ShardSpec};

mod common;
use common::{flag, flag_or, process_cpu};

/// One valid batch of about `size` bytes (a single record).
fn batch(size: usize) -> Bytes {
    common::one_record_batch(size.saturating_sub(80).max(1))
}

/// Voluntary + involuntary context switches of this process so far (all threads).
fn context_switches() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut n = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                n += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

async fn open(dir: &Path, name: &str, fsync: FsyncPolicy) -> Arc<SegmentLog> {
    let shard = ShardId::new(name, 0);
    let sdir = dir.join(shard.dir_name());
    let _ = std::fs::remove_dir_all(&sdir);
    let spec = ShardSpec {
        fsync,
        retention_ms: 0,
        segment_bytes: 64 << 20,
        ..ShardSpec::default()
    };
    let (log, _) = SegmentLog::open(shard, sdir, spec, EngineHooks::default())
        .await
        .expect("open");
    Arc::new(log)
}

struct TailArgs {
    secs: f64,
    size: usize,
    rate: u64,
    appenders: usize,
    tailers: usize,
    max_bytes: usize,
    fsync: FsyncPolicy,
}

async fn tail_case(dir: &Path, a: &TailArgs) {
    let log = open(dir, "read-bench-tail", a.fsync).await;
    let b = batch(a.size);
    // Where the tailers stop: unknown (MAX) until the appenders are done.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let give_up = Instant::now() + Duration::from_secs_f64(a.secs + 20.0);
    let mut tailers = Vec::new();
    for _ in 0..a.tailers {
        let (log, target) = (log.clone(), target.clone());
        let max_bytes = a.max_bytes;
        tailers.push(tokio::spawn(async move {
            let (mut next, mut reads, mut bytes) = (0u64, 0u64, 0u64);
            while next < target.load(Ordering::Relaxed) && Instant::now() < give_up {
                let c = read_wait(log.as_ref(), next, max_bytes, Duration::from_millis(50))
                    .await
                    .expect("read");
                if !c.records.is_empty() {
                    reads += 1;
                    bytes += c.records.len() as u64;
                    next = c.next_offset;
                }
            }
            (reads, bytes, next)
        }));
    }
    // Let the tailers park at the tail before the clock starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (cpu0, cs0, start) = (process_cpu(), context_switches(), Instant::now());
    let deadline = start + Duration::from_secs_f64(a.secs);
    let mut appenders = Vec::new();
    for _ in 0..a.appenders {
        let (log, b) = (log.clone(), b.clone());
        // Pacing: each appender appends its share of `rate` per 1 ms tick.
        let per_ms = a.rate as f64 / 1000.0 / a.appenders as f64;
        appenders.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut owed = 0.0f64;
            while Instant::now() < deadline {
                if per_ms > 0.0 {
                    tick.tick().await;
                    owed += per_ms;
                    while owed >= 1.0 {
                        log.append(vec![b.clone()]).await.expect("append");
                        owed -= 1.0;
                        n += 1;
                    }
                } else {
                    log.append(vec![b.clone()]).await.expect("append");
                    n += 1;
                }
            }
            n
        }));
    }
    let mut appended = 0;
    for t in appenders {
        appended += t.await.expect("join");
    }
    // The tailers stop once they have read everything appended.
    let end = log.stats().high_watermark;
    target.store(end, Ordering::Relaxed);
    let mut results = Vec::new();
    for t in tailers {
        results.push(t.await.expect("join"));
    }
    let elapsed = start.elapsed();
    let (cpu, cs) = (process_cpu() - cpu0, context_switches() - cs0);
    let reads: u64 = results.iter().map(|r| r.0).sum();
    let bytes: u64 = results.iter().map(|r| r.1).sum();
    let behind = results.iter().filter(|r| r.2 < end).count();
    let batches_read = appended * a.tailers as u64;
    let s = elapsed.as_secs_f64();
    println!(
        "| tail | {} B | {} | {} | {:.0} | {:.2} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {behind} |",
        b.len(),
        a.appenders,
        a.tailers,
        appended as f64 / s,
        cpu.as_secs_f64() * 1e6 / appended.max(1) as f64,
        reads as f64 / s,
        bytes as f64 / s / 1e6,
        batches_read as f64 / reads.max(1) as f64,
        cpu.as_secs_f64() * 1e6 / batches_read.max(1) as f64,
        cs as f64 / batches_read.max(1) as f64,
    );
    log.close().await.expect("close");
}

async fn catch_up_case(
    dir: &Path,
    backlog_mb: usize,
    recent_mb: usize,
    size: usize,
    max_bytes: usize,
    rounds: usize,
) {
    let log = open(dir, "read-bench-backlog", FsyncPolicy::Never).await;
    let b = batch(size);
    let total = backlog_mb << 20;
    let per_call = 64;
    let mut written = 0;
    while written < total {
        log.append(vec![b.clone(); per_call]).await.expect("append");
        written += b.len() * per_call;
    }
    let hw = log.stats().high_watermark;
    // Where the newest `recent_mb` MB start (every batch is one offset of the same size).
    let recent_from = {
        let want = (recent_mb << 20) as u64;
        let per_batch = b.len() as u64;
        hw.saturating_sub(want / per_batch)
    };
    for _ in 0..if recent_mb > 0 { rounds } else { 0 } {
        let (cpu0, start) = (process_cpu(), Instant::now());
        let mut reads = 0u64;
        // Passes over the range until a second has gone by: CPU time comes in 10 ms ticks.
        while start.elapsed() < Duration::from_secs(1) {
            let mut next = recent_from;
            while next < hw {
                let c = log.read(next, 1).await.expect("read");
                next = c.next_offset;
                reads += 1;
            }
        }
        let (s, cpu) = (start.elapsed().as_secs_f64(), process_cpu() - cpu0);
        println!(
            "| recent, 1 batch per read | {} B | {} MB | {} | {:.0} reads/s | {:.2} us/read | {:.2} |",
            b.len(),
            recent_mb,
            reads,
            reads as f64 / s,
            cpu.as_secs_f64() * 1e6 / reads.max(1) as f64,
            s * 1e3,
        );
    }
    for _ in 0..rounds {
        let (cpu0, start) = (process_cpu(), Instant::now());
        let (mut next, mut bytes, mut reads) = (0u64, 0u64, 0u64);
        while next < hw {
            let c = log.read(next, max_bytes).await.expect("read");
            bytes += c.records.len() as u64;
            next = c.next_offset;
            reads += 1;
        }
        let (s, cpu) = (start.elapsed().as_secs_f64(), process_cpu() - cpu0);
        println!(
            "| catch-up | {} B | {} MB | {} | {:.0} MB/s | {:.2} ms/MB | {:.2} |",
            b.len(),
            bytes >> 20,
            reads,
            bytes as f64 / s / 1e6,
            cpu.as_secs_f64() * 1e3 / (bytes as f64 / 1e6),
            s * 1e3,
        );
    }
    log.close().await.expect("close");
}

#[tokio::main]
async fn main() {
    let num = |name: &str, d: usize| flag_or(name, d);
    let secs: f64 = flag_or("--seconds", 5.0);
    let dir = PathBuf::from(flag("--dir").unwrap_or_else(|| "target/journal-read-bench".into()));
    let fsync = match flag("--fsync").as_deref().unwrap_or("interval") {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        _ => FsyncPolicy::Interval { ms: 100 },
    };
    let max_bytes = num("--max-bytes", 1 << 20);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", loadavg().trim());
    let tail = TailArgs {
        secs,
        size: num("--size", 256),
        rate: num("--rate", 20_000) as u64,
        appenders: num("--appenders", 1).max(1),
        tailers: num("--tailers", 1),
        max_bytes,
        fsync,
    };
    println!(
        "tail: {secs} s, fsync {fsync:?}, rate {} batches/s (0 = unpaced), max_bytes {max_bytes}",
        tail.rate
    );
    println!(
        "| case | batch | appenders | tailers | appends/s | CPU us/append | reads/s | MB/s read | batches/read | CPU us/batch read | ctx switches/batch read | tailers behind |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    if tail.secs > 0.0 {
        tail_case(&dir, &tail).await;
    }
    let backlog_mb = num("--backlog-mb", 128);
    if backlog_mb > 0 {
        println!("| case | batch | data | reads | rate | process CPU | ms |");
        println!("|---|---|---|---|---|---|---|");
        catch_up_case(
            &dir,
            backlog_mb,
            num("--recent-mb", 4),
            num("--size", 256),
            max_bytes,
            num("--rounds", 3),
        )
        .await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("load average at end: {}", loadavg().trim());
}

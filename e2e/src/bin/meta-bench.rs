//! Meta-service write benchmark: starts a 3-node `robustmq-meta` cluster on loopback and
//! measures the throughput and p50/p99 latency of topic creations and offset commits at
//! several concurrencies. Not a test: run on demand, release build:
//!
//! ```text
//! cargo build --release -p meta-service -p e2e --bin meta-bench
//! ROBUSTMQ_BIN_DIR=target/release target/release/meta-bench 20000 1,64,1024
//! ```
//! Arguments: operations per run (default 20000), concurrencies (default 1,64,1024).
//! `META_BENCH_CONFIG=file.yaml` passes a config file to every node.
//!
//! Besides throughput and latency, each row gives the CPU time spent per write by the
//! leader, by the two followers together and by this client (from `/proc/<pid>/stat`), so
//! that runs on a shared, noisy machine can still be compared by cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use e2e::meta::{MetaCluster, client};
use robustmq_proto::meta::meta_service_client::MetaServiceClient;
use robustmq_proto::meta::*;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug)]
enum Workload {
    CreateTopic,
    CommitOffset,
}

const PARTITIONS: u32 = 64;
const CHANNELS: usize = 8;

async fn one(
    c: &mut MetaServiceClient<Channel>,
    w: Workload,
    task: usize,
    i: usize,
    run: usize,
) -> Result<()> {
    match w {
        Workload::CreateTopic => {
            c.create_topic(Topic {
                name: format!("b{run}-{task}-{i}"),
                shards: 1,
                storage_policy: "bench".into(),
                ..Default::default()
            })
            .await?;
        }
        Workload::CommitOffset => {
            c.commit_offsets(CommitOffsetsRequest {
                group: format!("g{}", task % 256),
                offsets: vec![PartitionOffset {
                    topic: "bench".into(),
                    partition: (i as u32) % PARTITIONS,
                    offset: i as i64,
                    ..Default::default()
                }],
            })
            .await?;
        }
    }
    Ok(())
}

/// User plus system CPU time of a process so far (`/proc/<pid>/stat`, in USER_HZ ticks).
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// CPU time of the leader, of the followers together and of this client.
fn cpu_split(leader: u32, followers: &[u32]) -> [Duration; 3] {
    [
        cpu_time(leader),
        followers.iter().map(|p| cpu_time(*p)).sum(),
        cpu_time(std::process::id()),
    ]
}

struct Report {
    ops: usize,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

async fn run(
    clients: &[MetaServiceClient<Channel>],
    w: Workload,
    concurrency: usize,
    ops: usize,
    run_id: usize,
) -> Report {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let mut c = clients[task % clients.len()].clone();
        let next = next.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    return lat;
                }
                let t = Instant::now();
                if one(&mut c, w, task, i, run_id).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(ops);
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    Report {
        ops: all.len(),
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ops: usize = args.get(1).map_or(Ok(20_000), |s| s.parse())?;
    let concurrencies: Vec<usize> = args
        .get(2)
        .map_or("1,64,1024", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;

    // META_BENCH_CONFIG: a robustmq-meta YAML config for every node (e.g. raft settings).
    let config = std::env::var("META_BENCH_CONFIG").ok();
    let extra: Vec<&str> = match &config {
        Some(path) => vec!["--config", path.as_str()],
        None => vec![],
    };
    let cluster = MetaCluster::start("bench", 3, &extra).await?;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let addr = cluster.node(leader).grpc.clone();
    let mut clients = Vec::new();
    for _ in 0..CHANNELS {
        clients.push(client(&addr).await?);
    }
    let leader_pid = cluster.node(leader).process.pid().unwrap_or(0);
    let follower_pids: Vec<u32> = cluster
        .nodes
        .values()
        .filter(|n| n.id != leader)
        .filter_map(|n| n.process.pid())
        .collect();
    let mut c = clients[0].clone();
    c.create_policy(StoragePolicy {
        name: "bench".into(),
        engine: Engine::Memory as i32,
        ..Default::default()
    })
    .await?;
    c.create_topic(Topic {
        name: "bench".into(),
        shards: PARTITIONS,
        storage_policy: "bench".into(),
        ..Default::default()
    })
    .await?;

    println!(
        "| workload | concurrency | ops | writes/s | p50 ms | p99 ms | errors | CPU us/write leader | followers | client |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (run_id, &conc) in concurrencies.iter().enumerate() {
        for w in [Workload::CreateTopic, Workload::CommitOffset] {
            // Concurrency 1 measures latency; fewer operations keep it short.
            let n = if conc == 1 { ops.min(2000) } else { ops };
            let before = cpu_split(leader_pid, &follower_pids);
            let r = run(&clients, w, conc, n, run_id).await;
            let after = cpu_split(leader_pid, &follower_pids);
            let per_write = |i: usize| {
                after[i].saturating_sub(before[i]).as_secs_f64() * 1e6 / r.ops.max(1) as f64
            };
            println!(
                "| {w:?} | {conc} | {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.0} | {:.0} |",
                r.ops,
                r.ops as f64 / r.secs,
                r.p50_ms,
                r.p99_ms,
                r.errors,
                per_write(0),
                per_write(1),
                per_write(2),
            );
        }
    }
    // How the leader batched: mean commands per Raft entry and mean proposal latency.
    let (_, metrics) = e2e::harness::http_get(&cluster.node(leader).admin, "/metrics")?;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let batches = value("robustmq_meta_proposal_batch_commands_count");
    println!(
        "\nleader: {batches:.0} Raft entries, {:.1} commands per entry, {:.2} ms mean proposal latency",
        value("robustmq_meta_proposal_batch_commands_sum") / batches.max(1.0),
        1000.0 * value("robustmq_meta_proposal_duration_seconds_sum") / batches.max(1.0)
    );
    cluster.pass();
    Ok(())
}

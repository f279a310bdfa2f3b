//! `robustmq-bench`: on-demand benchmarks of RobustMQ against its peers (not run in CI).
//!
//! ```text
//! cargo build --release -p broker --bin robustmq -p e2e --bin robustmq-bench
//! e2e/bench/install-peers.sh
//! target/release/robustmq-bench mqtt                    # every peer, every scenario
//! target/release/robustmq-bench mqtt --peers robustmq,mosquitto --shapes pairs --qos 1
//! ```
//!
//! Modes: `mqtt` (RobustMQ standalone, mosquitto, rumqttd). See `e2e/bench/README.md`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use e2e::bench::mqtt::MqttBench;
use e2e::bench::mqtt::load::Shape;
use e2e::bench::peer::{PeerKind, PeerSetup};
use e2e::bench::table;

#[derive(Parser)]
#[command(
    name = "robustmq-bench",
    about = "Benchmarks RobustMQ against its peers"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// MQTT: one load generator, run against each broker in turn.
    Mqtt(Box<MqttArgs>),
    /// Kafka: Apache Kafka's perf tools against Apache Kafka, RobustMQ standalone and
    /// RobustMQ split, in turn.
    Kafka(Box<KafkaArgs>),
    /// One part of a split MQTT load (started by `mqtt --split-check`).
    #[command(hide = true)]
    MqttWorker { spec: String },
}

#[derive(Parser)]
struct MqttArgs {
    /// Brokers to compare; the first is the reference for the ratios.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "robustmq,mosquitto,rumqttd"
    )]
    peers: Vec<PeerKind>,
    #[arg(long, value_delimiter = ',', default_value = "fan-in,fan-out,pairs")]
    shapes: Vec<Shape>,
    #[arg(long, value_delimiter = ',', default_value = "0,1", value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Vec<u8>,
    /// Payload sizes in bytes (at least 28: the header).
    #[arg(long, value_delimiter = ',', default_value = "64,1024")]
    payloads: Vec<usize>,
    /// Publishers in the fan-in shape (one subscriber).
    #[arg(long, default_value_t = 999)]
    fan_in: usize,
    /// Subscribers in the fan-out shape (one publisher).
    #[arg(long, default_value_t = 999)]
    fan_out: usize,
    /// Publisher/subscriber pairs in the pairs shape (2 connections each).
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    /// Deliveries on their way at once per scenario (closed loop): each publisher's
    /// window is this over (publishers x subscribers per message), at least 1. 1000 keeps
    /// a fan-in subscriber's queue within every peer's 1000-message limit, so no broker
    /// has to drop QoS 0 messages to keep up.
    #[arg(long, default_value_t = 1000)]
    inflight: u32,
    /// Open loop: total messages per second offered by all publishers together.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured per scenario and broker.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds subscribers keep reading after publishers stop (for loss counts).
    #[arg(long, default_value_t = 1.5)]
    drain: f64,
    /// Pin each broker to these CPUs (`taskset -c` list), e.g. 1.
    #[arg(long)]
    broker_cpus: Option<String>,
    /// Pin the generator to these CPUs (`taskset -c` list), e.g. 0.
    #[arg(long)]
    gen_cpus: Option<String>,
    /// Run the generator, and so the brokers it starts, at this nice value (e.g. -10,
    /// needs root), so that other work on a shared machine takes less CPU from them.
    #[arg(long, allow_hyphen_values = true)]
    nice: Option<i32>,
    /// Generator runtime threads (default: one per CPU it may use).
    #[arg(long)]
    gen_threads: Option<usize>,
    /// Also run each pairs scenario with the generator split across two processes.
    #[arg(long)]
    split_check: bool,
    /// Also write the Markdown tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum()
}

/// Pins this process (all its threads so far, and so every thread started later) to `cpus`.
fn pin_self(cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset")?;
    anyhow::ensure!(status.success(), "taskset -c {cpus} failed: {status}");
    Ok(())
}

/// Sets this process's nice value, and its autogroup's. Nice is per thread on Linux: set
/// before the runtime starts, its threads (and the brokers started later) inherit it.
/// With autogroups (`kernel.sched_autogroup_enabled`), CPU is first shared between
/// sessions and nice only ranks threads within one, so the session's autogroup gets
/// the same nice value (this raises every process of the session; run the bench under
/// `setsid` to give it a session of its own).
fn renice_self(n: i32) -> Result<()> {
    if std::path::Path::new("/proc/self/autogroup").exists() {
        std::fs::write("/proc/self/autogroup", n.to_string())
            .context("setting the autogroup nice value (/proc/self/autogroup)")?;
    }
    let status = std::process::Command::new("renice")
        .args(["-n", &n.to_string(), "-p", &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running renice")?;
    anyhow::ensure!(status.success(), "renice -n {n} failed: {status}");
    Ok(())
}

/// The machine, for the report: CPUs, CPU model, kernel, load average.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{} CPUs available ({model}), kernel {kernel}, load average {}",
        cpus,
        load.join(" ")
    )
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        Mode::Kafka(a) => run_kafka(*a),
        Mode::MqttWorker { spec } => runtime(None)?.block_on(e2e::bench::mqtt::worker(&spec)),
        Mode::Mqtt(a) => {
            // Before pinning, which narrows what this process sees as available.
            let machine = machine();
            if let Some(cpus) = &a.gen_cpus {
                pin_self(cpus)?;
            }
            if let Some(n) = a.nice {
                renice_self(n)?;
            }
            let threads = a
                .gen_threads
                .or_else(|| a.gen_cpus.as_deref().map(cpu_count));
            let bench = MqttBench {
                peers: a.peers,
                shapes: a.shapes,
                qos: a.qos,
                payloads: a.payloads,
                fan_in: a.fan_in,
                fan_out: a.fan_out,
                pairs: a.pairs,
                inflight: a.inflight,
                rate: a.rate,
                warmup_ms: (a.warmup * 1000.0) as u64,
                duration_ms: (a.duration * 1000.0) as u64,
                drain_ms: (a.drain * 1000.0) as u64,
                split_check: a.split_check,
                setup: PeerSetup::from_env(a.broker_cpus.clone()),
                worker_exe: std::env::current_exe()?,
            };
            let mut header = format!("machine: {machine}\n");
            header += &format!(
                "generator: {} runtime thread(s), CPUs {}; brokers on CPUs {}; nice {}\n",
                threads.map_or("default".into(), |t| t.to_string()),
                a.gen_cpus.as_deref().unwrap_or("any"),
                a.broker_cpus.as_deref().unwrap_or("any"),
                a.nice.unwrap_or(0),
            );
            header += &format!(
                "load: {}, {} deliveries in flight per scenario, warm-up {} s, measured {} s\n",
                match a.rate {
                    Some(r) => format!("open loop at {r} msg/s"),
                    None => "closed loop".into(),
                },
                a.inflight,
                a.warmup,
                a.duration
            );
            for p in &bench.peers {
                header += &format!("{}: {}\n", p.name(), bench.setup.version(*p));
            }
            eprint!("{header}");
            let reference = bench.peers.first().map_or("", |p| p.name()).to_string();
            let rows = runtime(threads)?.block_on(until_signal(bench.run(|r| match &r.error {
                Some(e) => eprintln!("{} | {}: FAILED {e}", r.scenario, r.peer),
                None => eprintln!(
                    "{} | {}: {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, lost {}, dup {}, generator {:.2} cores ({:.2} waiting), broker {} cores ({} waiting)",
                    r.scenario,
                    r.peer,
                    r.msgs_per_sec,
                    r.p50_ms.unwrap_or(f64::NAN),
                    r.p99_ms.unwrap_or(f64::NAN),
                    r.lost,
                    r.duplicates,
                    r.gen_cores,
                    r.gen_waiting,
                    r.broker_cores.map_or("-".into(), |c| format!("{c:.2}")),
                    r.broker_waiting.map_or("-".into(), |c| format!("{c:.2}")),
                ),
            })))??;
            let md = format!(
                "```text\n{header}```\n\n{}",
                table::markdown(&rows, &reference)
            );
            let mut stdout = std::io::stdout();
            stdout.write_all(md.as_bytes())?;
            if let Some(path) = a.out {
                std::fs::write(&path, &md)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
    }
}

/// Runs `f` until it ends or SIGINT/SIGTERM arrives. On a signal `f` is dropped, which
/// stops the broker it was running (each peer is stopped by its pid when dropped).
async fn until_signal<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = f => Ok(r),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = term.recv() => anyhow::bail!("terminated"),
    }
}

fn runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = threads {
        b.worker_threads(t.max(1));
    }
    b.enable_all().build().context("building the tokio runtime")
}

#[derive(Parser)]
struct KafkaArgs {
    /// Servers to compare; the first is the reference for the ratios.
    #[arg(long, value_delimiter = ',', default_value = "apache,standalone,split")]
    peers: Vec<e2e::bench::kafka::KafkaPeer>,
    /// Records ProducerPerformance sends and ConsumerPerformance reads.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Records EndToEndLatency sends, one at a time.
    #[arg(long, default_value_t = 5_000)]
    latency_records: u64,
    /// Run the whole peer list this many times, interleaved; ratios are taken within a
    /// round and their median reported.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Also write the Markdown tables to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn run_kafka(a: KafkaArgs) -> Result<()> {
    let bench = e2e::bench::kafka::KafkaBench {
        peers: a.peers,
        records: a.records,
        record_size: a.record_size,
        partitions: a.partitions,
        latency_records: a.latency_records,
        rounds: a.rounds,
    };
    let header = format!("machine: {}\n", machine());
    eprint!("{header}");
    let rows = runtime(None)?.block_on(bench.run(|r| match &r.error {
        Some(e) => eprintln!("round {} {}: FAILED {e}", r.round, r.peer),
        None => eprintln!(
            "round {} {}: produce {:.1} MB/s p99 {:.0} ms, consume {:.1} MB/s, end-to-end p50 {:.0} ms p99 {:.0} ms",
            r.round, r.peer, r.produce_mb_s, r.produce_p99_ms, r.consume_mb_s, r.e2e_p50_ms, r.e2e_p99_ms
        ),
    }));
    let md = format!(
        "```text\n{header}```\n\n{}",
        e2e::bench::kafka::markdown(&rows, &bench)
    );
    std::io::stdout().write_all(md.as_bytes())?;
    if let Some(path) = a.out {
        std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

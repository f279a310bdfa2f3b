//! `robustmq-bench kafka`: Apache Kafka's own performance tools (ProducerPerformance,
//! ConsumerPerformance, EndToEndLatency, from the Maven jars `e2e/clients/install.sh`
//! copies) against Apache Kafka 4.x (one KRaft node), RobustMQ standalone and RobustMQ
//! split (one meta, one journal, one broker), each on loopback with a fresh data directory
//! and stopped by its pid.
//!
//! Every peer gets the same load: one topic with the same partitions, 1 KB records,
//! acks=all. Durability is stated, not assumed: Apache Kafka is told to fsync its logs
//! once a second (`log.flush.interval.ms=1000`), the interval RobustMQ's `interval` fsync
//! policy uses; RobustMQ's policies are printed from `robustmq ctl policy list`.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::harness::{TestDir, wait_for};
use crate::kafka::apache::{ApacheKafka, ApacheOptions};
use crate::kafka::clients::{java_tool, run, tail};
use crate::kafka::wire::Wire;
use crate::kafka::{Server, ServerOptions, Target};
use crate::robustmq::{Split, ctl};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KafkaPeer {
    /// Apache Kafka, one KRaft node (broker and controller in one JVM).
    Apache,
    /// `robustmq standalone`.
    Standalone,
    /// `robustmq-meta` + `robustmq-journal` + one `robustmq-broker`.
    Split,
}

impl KafkaPeer {
    pub fn name(self) -> &'static str {
        match self {
            KafkaPeer::Apache => "Apache Kafka",
            KafkaPeer::Standalone => "RobustMQ standalone",
            KafkaPeer::Split => "RobustMQ split",
        }
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct KafkaBench {
    pub peers: Vec<KafkaPeer>,
    pub records: u64,
    pub record_size: usize,
    pub partitions: i32,
    pub latency_records: u64,
    /// How many times the whole peer list runs, interleaved (peer A, B, C, then A, B, C
    /// again), so that each round's ratios compare neighbours in time on a noisy machine.
    pub rounds: u32,
}

/// One peer's figures.
#[derive(Clone, Debug, Default)]
pub struct KafkaRow {
    pub peer: String,
    /// 1-based round this row was measured in.
    pub round: u32,
    pub produce_mb_s: f64,
    pub produce_p99_ms: f64,
    /// ConsumerPerformance's fetch.MB.sec (group join time excluded).
    pub consume_mb_s: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    /// Storage policies in force (RobustMQ), for the report.
    pub durability: String,
    pub error: Option<String>,
}

impl KafkaBench {
    /// Runs every peer in turn, `rounds` times; a peer that fails gets a row with its error.
    pub async fn run(&self, mut each: impl FnMut(&KafkaRow)) -> Vec<KafkaRow> {
        let mut rows = Vec::new();
        for round in 1..=self.rounds.max(1) {
            for &peer in &self.peers {
                let mut row = match self.run_peer(peer).await {
                    Ok(row) => row,
                    Err(e) => KafkaRow {
                        peer: peer.name().into(),
                        error: Some(format!("{e:#}")),
                        ..KafkaRow::default()
                    },
                };
                row.round = round;
                each(&row);
                rows.push(row);
            }
        }
        rows
    }

    async fn run_peer(&self, peer: KafkaPeer) -> Result<KafkaRow> {
        if peer != KafkaPeer::Apache && std::env::var_os("ROBUSTMQ_BIN_DIR").is_none() {
            bail!(
                "set ROBUSTMQ_BIN_DIR to the directory of the robustmq binaries (e.g. target/release)"
            );
        }
        let dir = TestDir::new(&format!("bench-kafka-{peer:?}").to_lowercase());
        let mut server = match peer {
            KafkaPeer::Apache => {
                let o = ApacheOptions {
                    heap: "1g".into(),
                    partitions: self.partitions as u32,
                    extra: vec![
                        "log.flush.interval.ms=1000".into(),
                        "log.flush.scheduler.interval.ms=1000".into(),
                    ],
                    ..ApacheOptions::default()
                };
                Server::Apache(ApacheKafka::start(dir.path(), &o).await?)
            }
            KafkaPeer::Standalone => {
                Server::start(Target::RobustMq, &dir, &ServerOptions::default()).await?
            }
            KafkaPeer::Split => Server::Split(Split::start(&dir, 1).await?),
        };
        let result = self.measure(peer, &server).await;
        server.stop();
        let row = result?;
        dir.pass();
        Ok(row)
    }

    async fn measure(&self, peer: KafkaPeer, server: &Server) -> Result<KafkaRow> {
        let addr = server.bootstrap();
        let topic = "bench";
        let partitions = self.partitions;
        wait_for("the Kafka listener", Duration::from_secs(60), || {
            let addr = addr.clone();
            async move {
                let code = Wire::connect(&addr)?.create_topic(topic, partitions)?;
                match code {
                    0 | 36 => Ok(Some(())),
                    code => bail!("CreateTopics: error {code}"),
                }
            }
        })
        .await?;
        let durability = match server.meta() {
            Some(meta) => ctl(meta, &["policy", "list"])
                .unwrap_or_else(|e| format!("(policy list failed: {e})"))
                .trim()
                .to_string(),
            None => "log.flush.interval.ms=1000 (fsync once a second)".into(),
        };
        let limit = Duration::from_secs(900);

        let mut produce = java_tool("org.apache.kafka.tools.ProducerPerformance");
        produce.args(["--topic", topic, "--num-records", &self.records.to_string()]);
        produce.args([
            "--record-size",
            &self.record_size.to_string(),
            "--throughput",
            "-1",
        ]);
        produce.args([
            "--producer-props",
            &format!("bootstrap.servers={addr}"),
            "acks=all",
            "linger.ms=5",
            "batch.size=131072",
        ]);
        let out = tool_output(&mut produce, limit, "ProducerPerformance")?;
        let (produce_mb_s, produce_p99_ms) = parse_producer(&out)
            .with_context(|| format!("ProducerPerformance output:\n{}", tail(&out, 10)))?;

        let mut consume = java_tool("org.apache.kafka.tools.ConsumerPerformance");
        consume.args(["--bootstrap-server", &addr, "--topic", topic]);
        consume.args([
            "--messages",
            &self.records.to_string(),
            "--timeout",
            "60000",
        ]);
        let out = tool_output(&mut consume, limit, "ConsumerPerformance")?;
        let consume_mb_s = parse_consumer(&out, self.records)
            .with_context(|| format!("ConsumerPerformance output:\n{}", tail(&out, 10)))?;

        let mut e2e = java_tool("org.apache.kafka.tools.EndToEndLatency");
        e2e.args([
            addr.as_str(),
            "bench-latency",
            &self.latency_records.to_string(),
            "all",
            &self.record_size.to_string(),
        ]);
        let out = tool_output(&mut e2e, limit, "EndToEndLatency")?;
        let (e2e_p50_ms, e2e_p99_ms) = parse_latency(&out)
            .with_context(|| format!("EndToEndLatency output:\n{}", tail(&out, 10)))?;
        Ok(KafkaRow {
            peer: peer.name().into(),
            produce_mb_s,
            produce_p99_ms,
            consume_mb_s,
            e2e_p50_ms,
            e2e_p99_ms,
            durability,
            error: None,
            ..KafkaRow::default()
        })
    }
}

fn tool_output(cmd: &mut Command, limit: Duration, name: &str) -> Result<String> {
    let out = run(cmd, None, limit)?;
    if !out.ok {
        bail!(
            "{name} failed:\n{}\n{}",
            tail(&out.stdout, 10),
            tail(&out.stderr, 20)
        );
    }
    Ok(out.stdout)
}

/// ProducerPerformance's summary line:
/// `N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency,
/// P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.` → (MB/s, p99 ms).
fn parse_producer(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().rev().find(|l| l.contains("records sent"))?;
    let mb = line
        .split_once('(')?
        .1
        .split_once(" MB/sec")?
        .0
        .trim()
        .parse()
        .ok()?;
    let p99 = line
        .split(", ")
        .find(|p| p.trim_end_matches('.').ends_with(" ms 99th"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((mb, p99))
}

/// ConsumerPerformance's CSV (a header line naming the columns, then one line of values):
/// fetch.MB.sec, after checking that every record was consumed.
fn parse_consumer(out: &str, records: u64) -> Option<f64> {
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| l.contains("fetch.MB.sec"))?;
    let names: Vec<&str> = lines[at].split(',').map(str::trim).collect();
    let values: Vec<&str> = lines.get(at + 1)?.split(',').map(str::trim).collect();
    let col = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i))
            .and_then(|v| v.parse::<f64>().ok())
    };
    (col("data.consumed.in.nMsg")? as u64 >= records).then_some(())?;
    col("fetch.MB.sec")
}

/// EndToEndLatency's `Percentiles: 50th = A, 99th = B, 99.9th = C` → (p50, p99) in ms.
fn parse_latency(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().find(|l| l.starts_with("Percentiles"))?;
    let pick = |which: &str| -> Option<f64> {
        line.split(", ")
            .find_map(|p| p.split_once(&format!("{which} = ")))
            .and_then(|(_, v)| v.trim().parse().ok())
    };
    Some((pick("50th")?, pick("99th")?))
}

/// Each peer's ratios to the reference measured in the same round:
/// produce MB/s, consume MB/s, produce p99, end-to-end p99.
fn ratios(r: &KafkaRow, base: &KafkaRow) -> [Option<f64>; 4] {
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    [
        ratio(r.produce_mb_s, base.produce_mb_s),
        ratio(r.consume_mb_s, base.consume_mb_s),
        ratio(r.produce_p99_ms, base.produce_p99_ms),
        ratio(r.e2e_p99_ms, base.e2e_p99_ms),
    ]
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn show(r: Option<f64>) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
}

/// The results as Markdown: figures per peer and round, then each peer's ratios to the
/// first peer of the same round, and with several rounds the median of those ratios.
pub fn markdown(rows: &[KafkaRow], b: &KafkaBench) -> String {
    let mut out = format!(
        "{} records of {} B, acks=all, {} partition(s); EndToEndLatency: {} records; {} round(s).\n\n",
        b.records,
        b.record_size,
        b.partitions,
        b.latency_records,
        b.rounds.max(1)
    );
    out += "| round | peer | produce MB/s | produce p99 ms | consume MB/s | e2e p50 ms | e2e p99 ms |\n";
    out += "|---:|---|---:|---:|---:|---:|---:|\n";
    for r in rows {
        match &r.error {
            Some(e) => {
                out += &format!(
                    "| {} | {} | failed: {} | | | | |\n",
                    r.round,
                    r.peer,
                    e.lines().next().unwrap_or("")
                )
            }
            None => {
                out += &format!(
                    "| {} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} |\n",
                    r.round,
                    r.peer,
                    r.produce_mb_s,
                    r.produce_p99_ms,
                    r.consume_mb_s,
                    r.e2e_p50_ms,
                    r.e2e_p99_ms
                )
            }
        }
    }
    let Some(reference) = b.peers.first().map(|p| p.name()) else {
        return out;
    };
    // (peer, round, ratios) for every peer whose round's reference succeeded.
    let mut measured: Vec<(&str, u32, [Option<f64>; 4])> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.error.is_none() && r.peer != reference)
    {
        let base = rows
            .iter()
            .find(|x| x.round == r.round && x.peer == reference && x.error.is_none());
        if let Some(base) = base {
            measured.push((&r.peer, r.round, ratios(r, base)));
        }
    }
    if !measured.is_empty() {
        out += &format!(
            "\nRatios to {reference} in the same round (MB/s: higher is better; p99: lower is better):\n\n"
        );
        out += "| round | peer | produce MB/s | consume MB/s | produce p99 | e2e p99 |\n|---:|---|---:|---:|---:|---:|\n";
        for (peer, round, q) in &measured {
            out += &format!(
                "| {round} | {peer} | {} | {} | {} | {} |\n",
                show(q[0]),
                show(q[1]),
                show(q[2]),
                show(q[3])
            );
        }
    }
    if b.rounds > 1 && !measured.is_empty() {
        out += "\nMedian of the per-round ratios:\n\n";
        out += "| peer | rounds | produce MB/s | consume MB/s | produce p99 | e2e p99 |\n|---|---:|---:|---:|---:|---:|\n";
        for peer in b.peers.iter().skip(1).map(|p| p.name()) {
            let of: Vec<_> = measured.iter().filter(|m| m.0 == peer).collect();
            let col = |i: usize| median(of.iter().filter_map(|m| m.2[i]).collect());
            out += &format!(
                "| {peer} | {} | {} | {} | {} | {} |\n",
                of.len(),
                show(col(0)),
                show(col(1)),
                show(col(2)),
                show(col(3))
            );
        }
    }
    let mut stated = std::collections::HashSet::new();
    for r in rows.iter().filter(|r| r.error.is_none()) {
        if stated.insert(r.peer.as_str()) {
            out += &format!(
                "\nDurability, {}:\n```text\n{}\n```\n",
                r.peer, r.durability
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_tool_outputs_parse() {
        let p = "100 records sent, 50.0 records/sec (0.05 MB/sec), 3.1 ms avg latency, 9.0 ms max latency, 3 ms 50th, 5 ms 95th, 8 ms 99th, 9 ms 99.9th.";
        assert_eq!(parse_producer(p), Some((0.05, 8.0)));
        let c = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n\
                 2026-01-01 00:00:00:000, 2026-01-01 00:00:01:000, 97.6563, 97.6563, 100000, 100000.0, 300, 700, 139.5090, 142857.1429";
        assert_eq!(parse_consumer(c, 100_000), Some(139.509));
        assert_eq!(
            parse_consumer(c, 200_000),
            None,
            "short consumption is no result"
        );
        let l = "Avg latency: 1.2 ms\nPercentiles: 50th = 1, 99th = 4, 99.9th = 12";
        assert_eq!(parse_latency(l), Some((1.0, 4.0)));
    }

    fn row(peer: KafkaPeer, round: u32, produce: f64, consume: f64) -> KafkaRow {
        KafkaRow {
            peer: peer.name().into(),
            round,
            produce_mb_s: produce,
            consume_mb_s: consume,
            produce_p99_ms: 10.0,
            e2e_p99_ms: 4.0,
            ..KafkaRow::default()
        }
    }

    #[test]
    fn ratios_compare_within_a_round_and_take_the_median_across_rounds() {
        let b = KafkaBench {
            peers: vec![KafkaPeer::Apache, KafkaPeer::Split],
            records: 1,
            record_size: 1,
            partitions: 1,
            latency_records: 1,
            rounds: 3,
        };
        let rows = [
            row(KafkaPeer::Apache, 1, 10.0, 100.0),
            row(KafkaPeer::Split, 1, 20.0, 50.0),
            row(KafkaPeer::Apache, 2, 40.0, 100.0),
            row(KafkaPeer::Split, 2, 20.0, 150.0),
            row(KafkaPeer::Apache, 3, 10.0, 50.0),
            row(KafkaPeer::Split, 3, 15.0, 100.0),
        ];
        let md = markdown(&rows, &b);
        // Round 2: 20/40 produce, 150/100 consume.
        assert!(
            md.contains("| 2 | RobustMQ split | 0.50x | 1.50x | 1.00x | 1.00x |"),
            "{md}"
        );
        // Produce ratios 2.0, 0.5, 1.5 -> 1.5; consume 0.5, 1.5, 2.0 -> 1.5.
        assert!(
            md.contains("| RobustMQ split | 3 | 1.50x | 1.50x | 1.00x | 1.00x |"),
            "{md}"
        );
    }
}

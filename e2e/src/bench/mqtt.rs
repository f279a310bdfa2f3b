//! MQTT mode: the same load generator against each peer in turn, scenario by scenario.
//!
//! A scenario is a shape (fan-in, fan-out, pairs), a QoS (0 or 1) and a payload size.
//! For each scenario every peer is started fresh, loaded, and stopped before the next
//! one, and the order of the peers rotates from one scenario to the next, so that noise
//! from other work on the machine spreads over all of them instead of hitting one.
//!
//! - [`load`]: one scenario's connections, publishers and subscribers.
//! - [`window`]: the end-to-end window that keeps the generator closed-loop.
//! - [`payload`]: sequence number and send time carried by every message.
//! - [`conn`]: the MQTT client steps, on the `mqtt-codec` crate.

pub mod conn;
pub mod load;
pub mod payload;
pub mod window;

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use self::load::{LoadResult, LoadSpec, Shape, run_load};
use super::histogram::Histogram;
use super::peer::{PeerKind, PeerSetup, RunningPeer};
use super::table::Row;

/// What `robustmq-bench mqtt` runs.
#[derive(Clone, Debug)]
pub struct MqttBench {
    pub peers: Vec<PeerKind>,
    pub shapes: Vec<Shape>,
    pub qos: Vec<u8>,
    pub payloads: Vec<usize>,
    pub fan_in: usize,
    pub fan_out: usize,
    pub pairs: usize,
    /// Deliveries on their way at once over a whole scenario; each publisher's window
    /// is this divided by (publishers x subscribers per message).
    pub inflight: u32,
    /// Open loop at this many messages per second in total; `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup_ms: u64,
    pub duration_ms: u64,
    pub drain_ms: u64,
    /// Also run every pairs scenario with the generator split across two processes.
    pub split_check: bool,
    pub setup: PeerSetup,
    /// This binary, to start worker processes for the split check.
    pub worker_exe: PathBuf,
}

/// One scenario of the matrix.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub shape: Shape,
    pub n: usize,
    pub qos: u8,
    pub payload: usize,
    /// Generator processes (1, or 2 for the split check).
    pub parts: u32,
}

impl Scenario {
    pub fn name(&self) -> String {
        let who = match self.shape {
            Shape::FanIn => format!("fan-in {} -> 1", self.n),
            Shape::FanOut => format!("fan-out 1 -> {}", self.n),
            Shape::Pairs => format!("pairs {} x 1:1", self.n),
        };
        let split = if self.parts > 1 {
            format!(", generator split in {} processes", self.parts)
        } else {
            String::new()
        };
        format!("{who}, QoS {}, {} B{split}", self.qos, self.payload)
    }

    fn connections(&self) -> usize {
        match self.shape {
            Shape::FanIn | Shape::FanOut => self.n + 1,
            Shape::Pairs => self.n * 2,
        }
    }
}

impl MqttBench {
    /// The scenarios in run order: payload, then QoS, then shape vary slowest to fastest.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut out = Vec::new();
        for &payload in &self.payloads {
            for &qos in &self.qos {
                for &shape in &self.shapes {
                    let n = match shape {
                        Shape::FanIn => self.fan_in,
                        Shape::FanOut => self.fan_out,
                        Shape::Pairs => self.pairs,
                    };
                    let s = Scenario {
                        shape,
                        n,
                        qos,
                        payload,
                        parts: 1,
                    };
                    out.push(s);
                    if self.split_check && shape == Shape::Pairs {
                        out.push(Scenario { parts: 2, ..s });
                    }
                }
            }
        }
        out
    }

    /// Each publisher's window for `s`.
    fn window(&self, s: &Scenario) -> u32 {
        let (publishers, receivers) = match s.shape {
            Shape::FanIn => (s.n, 1),
            Shape::FanOut => (1, s.n),
            Shape::Pairs => (s.n, 1),
        };
        let per = self.inflight as usize / (publishers * receivers).max(1);
        (per as u32).clamp(1, window::MAX_SIZE)
    }

    fn spec(&self, s: &Scenario, run: u32, addr: &str, broker_pid: Option<u32>) -> LoadSpec {
        LoadSpec {
            addr: addr.to_string(),
            run,
            shape: s.shape,
            n: s.n,
            qos: s.qos,
            payload: s.payload.max(payload::HEADER_LEN),
            window: self.window(s),
            rate: self.rate,
            warmup_ms: self.warmup_ms,
            duration_ms: self.duration_ms,
            drain_ms: self.drain_ms,
            part: 0,
            parts: s.parts,
            sample_pids: broker_pid.into_iter().collect(),
            connect_concurrency: 64,
        }
    }

    /// Runs every scenario against every peer; `on_row` sees each row as it is made.
    pub async fn run(&self, mut on_row: impl FnMut(&Row)) -> Result<Vec<Row>> {
        self.setup.check(&self.peers)?;
        let mut rows = Vec::new();
        for (k, s) in self.scenarios().iter().enumerate() {
            let mut order = self.peers.clone();
            let turns = k % order.len().max(1);
            order.rotate_left(turns);
            for (j, &peer) in order.iter().enumerate() {
                let run = (k * 8 + j + 1) as u32;
                let row = match self.run_one(s, run, peer).await {
                    Ok(r) => r,
                    Err(e) => Row {
                        scenario: s.name(),
                        peer: peer.name().into(),
                        msgs_per_sec: 0.0,
                        p50_ms: None,
                        p99_ms: None,
                        lost: 0,
                        duplicates: 0,
                        gen_cores: 0.0,
                        gen_waiting: 0.0,
                        broker_cores: None,
                        broker_waiting: None,
                        error: Some(format!("{e:#}").replace('\n', " ")),
                    },
                };
                on_row(&row);
                rows.push(row);
            }
        }
        // Rows in a fixed peer order within each scenario, whatever order they ran in.
        let rank = |p: &str| self.peers.iter().position(|k| k.name() == p);
        let scen: Vec<String> = self.scenarios().iter().map(Scenario::name).collect();
        rows.sort_by_key(|r| (scen.iter().position(|s| *s == r.scenario), rank(&r.peer)));
        Ok(rows)
    }

    async fn run_one(&self, s: &Scenario, run: u32, peer: PeerKind) -> Result<Row> {
        let running = RunningPeer::start(peer, &self.setup)
            .await
            .with_context(|| format!("starting {}", peer.name()))?;
        let spec = self.spec(s, run, &running.addr, running.pid());
        let result = if s.parts > 1 {
            self.run_split(spec).await
        } else {
            run_load(spec).await
        };
        let stopped = running.stop();
        let r = result?;
        stopped?;
        let h = Histogram::from_wire(&r.latency);
        let ms = |q: f64| h.quantile(q).map(|ns| ns as f64 / 1e6);
        if r.received_in_window == 0 {
            bail!(
                "no message received in the measured window ({} sent, {} received in all)",
                r.sent,
                r.received
            );
        }
        if r.reclaimed > 0 {
            eprintln!(
                "  note: {} messages given up on after a window stalled for 2 s",
                r.reclaimed
            );
        }
        eprintln!(
            "  {} connections set up in {:.1} s; {} sent, {} of {} deliveries received",
            s.connections(),
            r.connect_secs,
            r.sent,
            r.received,
            r.expected
        );
        Ok(Row {
            scenario: s.name(),
            peer: peer.name().into(),
            msgs_per_sec: r.throughput(),
            p50_ms: ms(0.50),
            p99_ms: ms(0.99),
            lost: r.lost(),
            duplicates: r.duplicates,
            gen_cores: r.gen_cpu_secs / r.window_secs,
            gen_waiting: r.gen_wait_secs / r.window_secs,
            broker_cores: r.sampled_cpu_secs.first().map(|c| c / r.window_secs),
            broker_waiting: r.sampled_wait_secs.first().map(|c| c / r.window_secs),
            error: None,
        })
    }

    /// The same load from `spec.parts` worker processes (this binary's hidden
    /// `mqtt-worker` command), each with its share of the pairs; results merged.
    async fn run_split(&self, spec: LoadSpec) -> Result<LoadResult> {
        let mut children = Vec::new();
        for part in 0..spec.parts {
            let mut s = spec.clone();
            s.part = part;
            if part > 0 {
                s.sample_pids.clear();
            }
            let child = tokio::process::Command::new(&self.worker_exe)
                .arg("mqtt-worker")
                .arg(serde_json::to_string(&s)?)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", self.worker_exe.display()))?;
            children.push(child);
        }
        let mut merged: Option<LoadResult> = None;
        for c in children {
            let out = c.wait_with_output().await?;
            if !out.status.success() {
                bail!("generator worker failed: {:?}", out.status);
            }
            let r: LoadResult = serde_json::from_slice(&out.stdout)
                .context("reading a generator worker's result")?;
            match &mut merged {
                Some(m) => m.merge(&r),
                None => merged = Some(r),
            }
        }
        merged.context("no generator worker")
    }
}

/// The hidden `mqtt-worker` command: one part of a split load, result as JSON on stdout.
pub async fn worker(spec_json: &str) -> Result<()> {
    let spec: LoadSpec = serde_json::from_str(spec_json).context("parsing the load spec")?;
    let r = run_load(spec).await?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

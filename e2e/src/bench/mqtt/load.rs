//! One scenario's load, run in this process: connect the subscribers and publishers,
//! publish for warm-up + measurement, let the tail drain, and report what the subscribers
//! saw.
//!
//! ```text
//! connect subs, SUBSCRIBE | connect pubs | warm-up | measured window | drain | close
//!                                        ^ start   ^ meas_start      ^ meas_end (publishers stop)
//! ```
//!
//! Throughput counts messages *received* by subscribers during the measured window
//! (deliveries: one message fanned out to N subscribers counts N times). Latency is
//! receive time minus the send time in the payload, for those same messages.
//!
//! Publishers are closed-loop by default: each keeps at most `window` messages on their
//! way (see [`super::window`]) and sends the next as soon as one arrives, so the broker
//! runs as fast as it can deliver. With `rate`, they are open-loop at that total offered
//! rate (still capped by the window); the payload then carries the *scheduled* send time,
//! so a stalled broker shows up in the latency instead of silently delaying sends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, BytesMut};
use mqtt_codec::{Packet, QoS};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::conn::{Conn, PublishTemplate, VERSION};
use super::payload::{Header, new_payload, now_ns, read_header, write_header};
use super::window::Window;
use crate::bench::cpu::{cpu_seconds, run_queue_wait_seconds};
use crate::bench::histogram::{Histogram, HistogramWire};

/// Who publishes to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Shape {
    /// N publishers, each on its own topic, one subscriber on `+` over all of them.
    FanIn,
    /// One publisher, N subscribers on its topic.
    FanOut,
    /// N publisher/subscriber pairs, each pair on its own topic.
    Pairs,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::FanIn => "fan-in",
            Shape::FanOut => "fan-out",
            Shape::Pairs => "pairs",
        }
    }
}

/// Everything one load run needs; serializable so a worker process can run a part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadSpec {
    /// The broker's MQTT address.
    pub addr: String,
    /// Scenario number, in every payload and client id.
    pub run: u32,
    pub shape: Shape,
    /// Fan-in: publishers; fan-out: subscribers; pairs: pairs.
    pub n: usize,
    /// 0 or 1.
    pub qos: u8,
    pub payload: usize,
    /// Messages each publisher may have on their way.
    pub window: u32,
    /// Total offered messages per second over all publishers (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    pub warmup_ms: u64,
    pub duration_ms: u64,
    pub drain_ms: u64,
    /// This process runs the pairs `i` with `i % parts == part` (pairs only).
    pub part: u32,
    pub parts: u32,
    /// Processes (the broker) whose CPU time is sampled over the measured window.
    pub sample_pids: Vec<u32>,
    /// Connections opened at once while setting up.
    pub connect_concurrency: usize,
}

impl LoadSpec {
    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }
}

/// What one load run measured; parts of a split run are [`LoadResult::merge`]d.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Length of the measured window, seconds.
    pub window_secs: f64,
    /// Deliveries received in the measured window (first copies only).
    pub received_in_window: u64,
    /// End-to-end latency of those deliveries, ns.
    pub latency: HistogramWire,
    /// Messages published over the whole run.
    pub sent: u64,
    /// Deliveries owed for them (sent x subscribers of each).
    pub expected: u64,
    /// Deliveries received over the whole run, first copies only.
    pub received: u64,
    /// Copies of a message already received, or received out of order.
    pub duplicates: u64,
    /// Messages given up on after the window stayed full for [`STALL`].
    pub reclaimed: u64,
    /// CPU seconds of the generator process(es) during the measured window.
    pub gen_cpu_secs: f64,
    /// CPU seconds of each of `sample_pids` during the measured window.
    pub sampled_cpu_secs: Vec<f64>,
    /// Seconds the generator's threads waited for a CPU during the measured window.
    pub gen_wait_secs: f64,
    /// The same for each of `sample_pids`.
    pub sampled_wait_secs: Vec<f64>,
    pub connect_secs: f64,
}

impl LoadResult {
    pub fn merge(&mut self, o: &LoadResult) {
        self.window_secs = self.window_secs.max(o.window_secs);
        self.received_in_window += o.received_in_window;
        let mut h = Histogram::from_wire(&self.latency);
        h.merge(&Histogram::from_wire(&o.latency));
        self.latency = h.to_wire();
        self.sent += o.sent;
        self.expected += o.expected;
        self.received += o.received;
        self.duplicates += o.duplicates;
        self.reclaimed += o.reclaimed;
        self.gen_cpu_secs += o.gen_cpu_secs;
        self.gen_wait_secs += o.gen_wait_secs;
        if self.sampled_cpu_secs.is_empty() {
            self.sampled_cpu_secs.clone_from(&o.sampled_cpu_secs);
            self.sampled_wait_secs.clone_from(&o.sampled_wait_secs);
        }
        self.connect_secs = self.connect_secs.max(o.connect_secs);
    }

    pub fn throughput(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.received_in_window as f64 / self.window_secs
        } else {
            0.0
        }
    }

    /// Deliveries owed but never received.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.received)
    }
}

/// How long a full window may wait for room before its messages are given up on.
const STALL: Duration = Duration::from_secs(2);
/// Bytes a closed-loop publisher gathers into one write.
const WRITE_BATCH: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Free space kept in a read buffer before each read.
const READ_ROOM: usize = 64 * 1024;

struct Topology {
    /// (publisher id, topic)
    publishers: Vec<(u32, String)>,
    /// (subscriber id, filter)
    subscribers: Vec<(u32, String)>,
    /// Publisher ids run from 0 to this (over all parts).
    publisher_ids: usize,
    /// Subscribers that get each message.
    receivers: u32,
}

fn topology(s: &LoadSpec) -> Result<Topology> {
    let run = s.run;
    let mine = |i: usize| i % s.parts.max(1) as usize == s.part as usize;
    if s.parts > 1 && s.shape != Shape::Pairs {
        bail!("only the pairs shape can be split across processes");
    }
    Ok(match s.shape {
        Shape::FanIn => Topology {
            publishers: (0..s.n)
                .map(|i| (i as u32, format!("bench/{run}/in/{i}")))
                .collect(),
            subscribers: vec![(0, format!("bench/{run}/in/+"))],
            publisher_ids: s.n,
            receivers: 1,
        },
        Shape::FanOut => Topology {
            publishers: vec![(0, format!("bench/{run}/out"))],
            subscribers: (0..s.n)
                .map(|i| (i as u32, format!("bench/{run}/out")))
                .collect(),
            publisher_ids: 1,
            receivers: s.n as u32,
        },
        Shape::Pairs => Topology {
            publishers: (0..s.n)
                .filter(|i| mine(*i))
                .map(|i| (i as u32, format!("bench/{run}/pair/{i}")))
                .collect(),
            subscribers: (0..s.n)
                .filter(|i| mine(*i))
                .map(|i| (i as u32, format!("bench/{run}/pair/{i}")))
                .collect(),
            publisher_ids: s.n,
            receivers: 1,
        },
    })
}

/// Shared by every task of a run.
struct Ctx {
    spec: LoadSpec,
    windows: Vec<Window>,
    /// Events a message waits for before it leaves its publisher's window.
    events: u32,
    meas_start_ns: u64,
    meas_end_ns: u64,
}

#[derive(Default)]
struct SubStats {
    in_window: u64,
    hist: Histogram,
    received: u64,
    duplicates: u64,
}

/// Opens `ids.len()` connections, `concurrency` at a time, in id order.
async fn connect_all(
    addr: &str,
    names: Vec<String>,
    subscribe: Option<(Vec<String>, QoS)>,
    concurrency: usize,
) -> Result<Vec<Conn>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, name) in names.into_iter().enumerate() {
        let sem = sem.clone();
        let addr = addr.to_string();
        let filter = subscribe.as_ref().map(|(f, q)| (f[i].clone(), *q));
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let mut c = Conn::connect(&addr, &name, CONNECT_TIMEOUT).await?;
            if let Some((filter, qos)) = filter {
                tokio::time::timeout(CONNECT_TIMEOUT, c.subscribe(&filter, qos))
                    .await
                    .with_context(|| format!("{name}: no SUBACK for {filter}"))??;
            }
            anyhow::Ok((i, c))
        });
    }
    let mut conns = Vec::new();
    while let Some(r) = set.join_next().await {
        conns.push(r??);
    }
    conns.sort_by_key(|(i, _)| *i);
    Ok(conns.into_iter().map(|(_, c)| c).collect())
}

fn instant_to_ns(t: Instant) -> u64 {
    let now = Instant::now();
    let base = now_ns();
    if t >= now {
        base + (t - now).as_nanos() as u64
    } else {
        base.saturating_sub((now - t).as_nanos() as u64)
    }
}

/// Runs the load described by `spec` against its broker.
pub async fn run_load(spec: LoadSpec) -> Result<LoadResult> {
    let topo = topology(&spec)?;
    let qos = spec.qos();
    let events = topo.receivers + u32::from(qos != QoS::AtMostOnce);
    if events > super::window::MAX_EVENTS {
        bail!("{} subscribers per message is too many", topo.receivers);
    }
    let tag = format!("b{}-{}", spec.run, spec.part);

    let connecting = Instant::now();
    let sub_names = topo
        .subscribers
        .iter()
        .map(|(i, _)| format!("{tag}-s{i}"))
        .collect();
    let filters = topo.subscribers.iter().map(|(_, f)| f.clone()).collect();
    let subs = connect_all(
        &spec.addr,
        sub_names,
        Some((filters, qos)),
        spec.connect_concurrency,
    )
    .await
    .context("connecting subscribers")?;
    let pub_names = topo
        .publishers
        .iter()
        .map(|(i, _)| format!("{tag}-p{i}"))
        .collect();
    let pubs = connect_all(&spec.addr, pub_names, None, spec.connect_concurrency)
        .await
        .context("connecting publishers")?;
    let connect_secs = connecting.elapsed().as_secs_f64();

    // Give brokers that apply subscriptions asynchronously a moment before the first
    // publish; it falls inside the warm-up anyway.
    let start = Instant::now() + Duration::from_millis(200);
    let meas_start = start + Duration::from_millis(spec.warmup_ms);
    let meas_end = meas_start + Duration::from_millis(spec.duration_ms);
    let stop = meas_end + Duration::from_millis(spec.drain_ms);
    let ctx = Arc::new(Ctx {
        windows: (0..topo.publisher_ids)
            .map(|_| Window::new(spec.window))
            .collect(),
        events,
        meas_start_ns: instant_to_ns(meas_start),
        meas_end_ns: instant_to_ns(meas_end),
        spec,
    });

    let mut sub_tasks = JoinSet::new();
    for c in subs {
        sub_tasks.spawn(subscriber(c, ctx.clone(), topo.publisher_ids, stop));
    }
    let interval = ctx
        .spec
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(topo.publisher_ids as f64 / r));
    let mut pub_tasks = JoinSet::new();
    for (c, (id, topic)) in pubs.into_iter().zip(topo.publishers.iter().cloned()) {
        pub_tasks.spawn(publisher(
            c,
            id,
            topic,
            ctx.clone(),
            (start, meas_end, stop),
            interval,
        ));
    }
    let sampler = tokio::spawn({
        let pids = ctx.spec.sample_pids.clone();
        async move {
            tokio::time::sleep_until(meas_start.into()).await;
            let before = Usage::sample(&pids)?;
            tokio::time::sleep_until(meas_end.into()).await;
            let after = Usage::sample(&pids)?;
            anyhow::Ok(after.minus(&before))
        }
    });

    let mut result = LoadResult {
        window_secs: (meas_end - meas_start).as_secs_f64(),
        connect_secs,
        ..Default::default()
    };
    while let Some(r) = pub_tasks.join_next().await {
        let (sent, reclaimed) = r??;
        result.sent += sent;
        result.reclaimed += reclaimed;
    }
    result.expected = result.sent * u64::from(topo.receivers);
    let mut hist = Histogram::new();
    while let Some(r) = sub_tasks.join_next().await {
        let s = r??;
        result.received_in_window += s.in_window;
        result.received += s.received;
        result.duplicates += s.duplicates;
        hist.merge(&s.hist);
    }
    result.latency = hist.to_wire();
    let usage = sampler.await??;
    result.gen_cpu_secs = usage.cpu[0];
    result.gen_wait_secs = usage.wait[0];
    result.sampled_cpu_secs = usage.cpu[1..].to_vec();
    result.sampled_wait_secs = usage.wait[1..].to_vec();
    Ok(result)
}

/// CPU and run-queue wait seconds of this process (first) and of `pids`.
struct Usage {
    cpu: Vec<f64>,
    wait: Vec<f64>,
}

impl Usage {
    fn sample(pids: &[u32]) -> Result<Usage> {
        let all: Vec<Option<u32>> = std::iter::once(None)
            .chain(pids.iter().copied().map(Some))
            .collect();
        Ok(Usage {
            cpu: all.iter().map(|p| cpu_seconds(*p)).collect::<Result<_>>()?,
            wait: all
                .iter()
                .map(|p| run_queue_wait_seconds(*p))
                .collect::<Result<_>>()?,
        })
    }

    fn minus(&self, before: &Usage) -> Usage {
        let diff = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x - y).collect();
        Usage {
            cpu: diff(&self.cpu, &before.cpu),
            wait: diff(&self.wait, &before.wait),
        }
    }
}

/// Reads deliveries until `stop`, acknowledging QoS 1 ones, and records them.
async fn subscriber(
    mut conn: Conn,
    ctx: Arc<Ctx>,
    publisher_ids: usize,
    stop: Instant,
) -> Result<SubStats> {
    let mut st = SubStats::default();
    // Next sequence number expected from each publisher.
    let mut next = vec![0u64; publisher_ids];
    let mut acks = BytesMut::new();
    let deadline = tokio::time::sleep_until(stop.into());
    tokio::pin!(deadline);
    loop {
        // One clock read per batch of packets: they all had arrived by now.
        let now = now_ns();
        while let Some(p) = mqtt_codec::decode(&mut conn.buf, VERSION, 1 << 20)? {
            let Packet::Publish(p) = p else { continue };
            if p.packet_id != 0 {
                // PUBACK in 3.1.1: 0x40, remaining length 2, packet id.
                acks.put_u8(0x40);
                acks.put_u8(2);
                acks.put_u16(p.packet_id);
            }
            let Some(h) = read_header(&p.payload) else {
                continue;
            };
            if h.run != ctx.spec.run || h.publisher as usize >= publisher_ids {
                continue;
            }
            ctx.windows[h.publisher as usize].event(h.seq);
            let n = &mut next[h.publisher as usize];
            if h.seq < *n {
                st.duplicates += 1;
                continue;
            }
            *n = h.seq + 1;
            st.received += 1;
            if (ctx.meas_start_ns..ctx.meas_end_ns).contains(&now) {
                st.in_window += 1;
                st.hist.record(now.saturating_sub(h.sent_ns));
            }
        }
        if !acks.is_empty() {
            conn.stream.write_all(&acks).await?;
            acks.clear();
        }
        make_room(&mut conn.buf);
        tokio::select! {
            r = conn.stream.read_buf(&mut conn.buf) => {
                if r? == 0 {
                    bail!("broker closed a subscriber connection");
                }
            }
            _ = &mut deadline => return Ok(st),
        }
    }
}

/// Publishes from `start` to `meas_end`; returns (messages sent, messages given up on).
async fn publisher(
    conn: Conn,
    id: u32,
    topic: String,
    ctx: Arc<Ctx>,
    (start, meas_end, stop): (Instant, Instant, Instant),
    interval: Option<Duration>,
) -> Result<(u64, u64)> {
    let spec = &ctx.spec;
    let window = &ctx.windows[id as usize];
    let header = Header {
        run: spec.run,
        publisher: id,
        seq: 0,
        sent_ns: 0,
    };
    let template = PublishTemplate::new(&topic, spec.qos(), new_payload(spec.payload, header))?;
    let (mut rd, mut wr) = conn.stream.into_split();
    let mut rbuf = conn.buf;
    // PUBACKs (QoS 1) free places in the window; at QoS 0 nothing comes back, but the
    // reader still notices a broker that closes the connection.
    let acks = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let deadline = tokio::time::sleep_until(stop.into());
            tokio::pin!(deadline);
            let window = &ctx.windows[id as usize];
            loop {
                while let Some(p) = mqtt_codec::decode(&mut rbuf, VERSION, 1 << 20)? {
                    if let Packet::PubAck(a) = p {
                        window.puback(a.packet_id);
                    }
                }
                make_room(&mut rbuf);
                tokio::select! {
                    r = rd.read_buf(&mut rbuf) => {
                        if r? == 0 {
                            bail!("broker closed publisher {id}");
                        }
                    }
                    _ = &mut deadline => return anyhow::Ok(()),
                }
            }
        }
    });

    let start_ns = instant_to_ns(start);
    let mut out = BytesMut::with_capacity(WRITE_BATCH + template_len(spec.payload));
    let (mut seq, mut reclaimed) = (0u64, 0u64);
    // Open loop: publishers are spread evenly over one interval, so the offered load is
    // smooth instead of every publisher firing at the same instant.
    let mut next_at = match interval {
        Some(iv) => start + iv.mul_f64(f64::from(id) / ctx.windows.len() as f64),
        None => start,
    };
    tokio::time::sleep_until(start.into()).await;
    loop {
        if interval.is_some() {
            tokio::time::sleep_until(next_at.into()).await;
        }
        let now = Instant::now();
        if now >= meas_end {
            break;
        }
        if !window.acquire(STALL.min(meas_end - now)).await {
            if Instant::now() < meas_end {
                reclaimed += window.reclaim();
            }
            continue;
        }
        let sent_ns = match interval {
            Some(_) => start_ns + (next_at - start).as_nanos() as u64,
            None => now_ns(),
        };
        let push = |seq: u64, sent_ns: u64, out: &mut BytesMut| {
            window.arm(seq, ctx.events);
            template.append(out, window.packet_id(seq), |p| {
                write_header(
                    p,
                    Header {
                        seq,
                        sent_ns,
                        ..header
                    },
                )
            });
        };
        push(seq, sent_ns, &mut out);
        seq += 1;
        match interval {
            Some(iv) => next_at += iv,
            None => {
                while out.len() < WRITE_BATCH && window.try_acquire() {
                    push(seq, now_ns(), &mut out);
                    seq += 1;
                }
            }
        }
        wr.write_all(&out).await?;
        out.clear();
    }
    // Keep the connection open until the drain ends: QoS 1 PUBACKs still arrive.
    acks.await??;
    drop(wr);
    Ok((seq, reclaimed))
}

/// Keeps at least [`READ_ROOM`] bytes free before a read: once a read buffer has been
/// consumed to its end, `read_buf` would otherwise read into whatever little spare
/// capacity is left (64 bytes), one small read per syscall.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM / 4 {
        buf.reserve(READ_ROOM);
    }
}

fn template_len(payload: usize) -> usize {
    payload + 128
}

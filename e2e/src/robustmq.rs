//! RobustMQ deployments of real processes on loopback for the broker e2e tests:
//! `robustmq standalone` (all tiers in one process) and a split deployment (one
//! `robustmq-meta`, one `robustmq-journal`, N `robustmq-broker`), plus `robustmq ctl`.
//! Every listener, Kafka's included (it is on by default), binds a free loopback port;
//! Kafka advertises 127.0.0.1.

use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::harness::{Process, TestDir, bin, free_port, http_get, wait_for};

fn s(v: &str) -> String {
    v.to_string()
}

/// Waits up to 60 s for `GET /readyz` on `admin` to answer 200.
pub async fn wait_ready(name: &str, admin: &str) -> Result<()> {
    let admin = admin.to_string();
    wait_for(name, Duration::from_secs(60), || {
        let admin = admin.clone();
        async move {
            Ok(http_get(&admin, "/readyz")
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|_| ()))
        }
    })
    .await
}

/// `robustmq ctl --meta <meta> <args>`; its stdout.
pub fn ctl(meta: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(bin("robustmq"))
        .args(["ctl", "--meta", meta])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!(
            "robustmq ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `robustmq standalone` on free ports.
pub struct Standalone {
    pub proc: Process,
    pub mqtt: u16,
    /// MQTT over WebSocket.
    pub ws: u16,
    /// The Kafka listener.
    pub kafka: u16,
    /// The Kafka TLS listener (served when `extra` gives --tls-cert and --tls-key).
    pub kafka_tls: u16,
    pub admin: String,
    /// Meta gRPC address (for `robustmq ctl`).
    pub meta: String,
}

impl Standalone {
    /// Starts with the default flags plus `extra`, and waits until it is ready.
    pub async fn start(dir: &TestDir, extra: &[&str]) -> Result<Standalone> {
        let mqtt = free_port();
        let admin = format!("127.0.0.1:{}", free_port());
        let meta = format!("127.0.0.1:{}", free_port());
        let ws = free_port();
        let mut args: Vec<String> = vec![
            s("standalone"),
            s("--mqtt-ws-addr"),
            format!("127.0.0.1:{ws}"),
            s("--data-dir"),
            dir.path().join("data").display().to_string(),
            s("--mqtt-addr"),
            format!("127.0.0.1:{mqtt}"),
            s("--admin-addr"),
            admin.clone(),
            s("--meta-addr"),
            meta.clone(),
            s("--meta-admin-addr"),
            format!("127.0.0.1:{}", free_port()),
            s("--journal-addr"),
            format!("127.0.0.1:{}", free_port()),
        ];
        let kafka = free_port();
        let kafka_tls = free_port();
        args.extend([
            s("--kafka-addr"),
            format!("127.0.0.1:{kafka}"),
            // Served only with a certificate, but never on the default port.
            s("--kafka-tls-addr"),
            format!("127.0.0.1:{kafka_tls}"),
            s("--advertised-host"),
            s("127.0.0.1"),
        ]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut proc = Process::new("standalone", bin("robustmq"), args, dir.path());
        proc.start()?;
        wait_ready("standalone /readyz", &admin).await?;
        Ok(Standalone {
            proc,
            mqtt,
            ws,
            kafka,
            kafka_tls,
            admin,
            meta,
        })
    }

    /// SIGTERM and wait for a clean exit, then start again with the same data directory
    /// and ports.
    pub async fn restart(&mut self) -> Result<()> {
        self.terminate()?;
        self.proc.start()?;
        wait_ready("standalone /readyz after restart", &self.admin).await
    }

    fn terminate(&mut self) -> Result<()> {
        let status = self.proc.terminate(Duration::from_secs(20));
        if !status.is_some_and(|s| s.success()) {
            bail!("standalone did not shut down cleanly on SIGTERM: {status:?}");
        }
        Ok(())
    }

    /// SIGTERM; panics unless the process exits cleanly within 20 s.
    pub fn stop(&mut self) {
        if let Err(e) = self.terminate() {
            panic!("{e}");
        }
    }
}

/// One broker of a split deployment.
pub struct Broker {
    pub proc: Process,
    pub mqtt: u16,
    pub kafka: u16,
    pub admin: String,
}

/// A sample from a tier's `/metrics` at `admin` (0 when absent).
fn metric(admin: &str, tier: &str, name: &str) -> Result<f64> {
    let (code, body) = http_get(admin, "/metrics")?;
    if code != 200 {
        bail!("{tier} /metrics answered {code}");
    }
    Ok(body
        .lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .next()
        .unwrap_or(0.0))
}

/// A split deployment: one meta, one journal, N brokers, as separate processes.
pub struct Split {
    pub meta: Process,
    pub journal: Process,
    pub brokers: Vec<Broker>,
    /// Meta gRPC address.
    pub meta_addr: String,
    /// The journal's admin HTTP address (`/metrics`).
    pub journal_admin: String,
    /// Meta's admin HTTP address (`/metrics`).
    pub meta_admin: String,
}

impl Split {
    /// A counter or gauge from the journal's `/metrics` (0 when absent).
    pub fn journal_metric(&self, name: &str) -> Result<f64> {
        metric(&self.journal_admin, "journal", name)
    }

    /// A sample from meta's `/metrics`, `name` with its labels as printed (0 when absent).
    pub fn meta_metric(&self, name: &str) -> Result<f64> {
        metric(&self.meta_admin, "meta", name)
    }

    /// Starts meta and journal, creates the default storage policy (segment engine,
    /// interval fsync) and the default topic binding `#` (2 shards), then `brokers`
    /// brokers, and checks they all registered.
    pub async fn start(dir: &TestDir, brokers: usize) -> Result<Split> {
        let meta_addr = format!("127.0.0.1:{}", free_port());
        let meta_admin = format!("127.0.0.1:{}", free_port());
        let mut meta = Process::new(
            "meta",
            bin("robustmq-meta"),
            vec![
                s("--node-id"),
                s("1"),
                s("--grpc-addr"),
                meta_addr.clone(),
                s("--admin-addr"),
                meta_admin.clone(),
                s("--data-dir"),
                dir.path().join("meta").display().to_string(),
            ],
            dir.path(),
        );
        meta.start()?;
        wait_ready("meta /readyz", &meta_admin).await?;
        let journal_admin = format!("127.0.0.1:{}", free_port());
        let mut journal = Process::new(
            "journal",
            bin("robustmq-journal"),
            vec![
                s("--node-id"),
                s("1"),
                s("--grpc-addr"),
                format!("127.0.0.1:{}", free_port()),
                s("--admin-addr"),
                journal_admin.clone(),
                s("--data-dir"),
                dir.path().join("journal").display().to_string(),
                s("--meta"),
                meta_addr.clone(),
            ],
            dir.path(),
        );
        journal.start()?;
        wait_ready("journal /readyz", &journal_admin).await?;
        ctl(
            &meta_addr,
            &[
                "policy", "create", "default", "--engine", "segment", "--fsync", "interval",
            ],
        )?;
        ctl(
            &meta_addr,
            &[
                "topic",
                "create",
                "default",
                "--shards",
                "2",
                "--mqtt-filter",
                "#",
            ],
        )?;
        let mut split = Split {
            meta,
            journal,
            brokers: Vec::new(),
            meta_addr,
            journal_admin,
            meta_admin,
        };
        for id in 1..=brokers {
            split.add_broker(dir, id).await?;
        }
        let alive = split.brokers_alive()?;
        if alive != brokers {
            bail!("{alive} of {brokers} brokers registered in meta");
        }
        Ok(split)
    }

    async fn add_broker(&mut self, dir: &TestDir, id: usize) -> Result<()> {
        let mqtt = free_port();
        let admin = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            s("--node-id"),
            id.to_string(),
            s("--meta"),
            self.meta_addr.clone(),
            s("--mqtt-addr"),
            format!("127.0.0.1:{mqtt}"),
            s("--admin-addr"),
            admin.clone(),
        ];
        let kafka = free_port();
        args.extend([
            s("--kafka-addr"),
            format!("127.0.0.1:{kafka}"),
            s("--advertised-host"),
            s("127.0.0.1"),
        ]);
        let mut proc = Process::new(
            &format!("broker-{id}"),
            bin("robustmq-broker"),
            args,
            dir.path(),
        );
        proc.start()?;
        wait_ready(&format!("broker {id} /readyz"), &admin).await?;
        self.brokers.push(Broker {
            proc,
            mqtt,
            kafka,
            admin,
        });
        Ok(())
    }

    /// Brokers meta lists as alive.
    pub fn brokers_alive(&self) -> Result<usize> {
        let status = ctl(&self.meta_addr, &["cluster", "status", "--output", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&status)?;
        Ok(v["nodes"]
            .as_array()
            .map(|n| {
                n.iter()
                    .filter(|n| n["role"] == "NODE_ROLE_BROKER" && n["state"] == "NODE_STATE_ALIVE")
                    .count()
            })
            .unwrap_or(0))
    }

    /// SIGTERM every broker, then start each again on the same ports.
    pub async fn restart_brokers(&mut self) -> Result<()> {
        for b in &mut self.brokers {
            b.proc.terminate(Duration::from_secs(20));
        }
        for (i, b) in self.brokers.iter_mut().enumerate() {
            b.proc.start()?;
            wait_ready(&format!("broker {} /readyz after restart", i + 1), &b.admin).await?;
        }
        Ok(())
    }

    pub fn stop(&mut self) {
        for b in &mut self.brokers {
            b.proc.terminate(Duration::from_secs(15));
        }
        self.journal.terminate(Duration::from_secs(15));
        self.meta.terminate(Duration::from_secs(15));
    }
}

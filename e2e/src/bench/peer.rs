//! The brokers a benchmark compares, each started as a child process on 127.0.0.1 with
//! free ports and a temporary data directory of its own, and stopped by its own pid.
//!
//! - RobustMQ: `robustmq standalone` (meta, journal and broker in one process).
//! - mosquitto: the Debian package, with a generated config.
//! - rumqttd: from crates.io (`e2e/bench/install-peers.sh`), with a generated config.
//!
//! Limits that change what a benchmark measures are set alike where the peer allows it:
//! 64 QoS 1 messages in flight to a subscriber (RobustMQ's default), 1000 messages queued
//! per client (RobustMQ's default), no persistence to disk for mosquitto (RobustMQ writes
//! its journal with fsync once a second, rumqttd keeps an in-memory log).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::mqtt::conn::Conn;
use crate::harness::{Process, TestDir, free_port, http_get, wait_for};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum PeerKind {
    Robustmq,
    Mosquitto,
    Rumqttd,
}

impl PeerKind {
    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Robustmq => "RobustMQ",
            PeerKind::Mosquitto => "mosquitto",
            PeerKind::Rumqttd => "rumqttd",
        }
    }
}

/// Where the peers' binaries are and how to run them.
#[derive(Clone, Debug)]
pub struct PeerSetup {
    pub robustmq: PathBuf,
    pub mosquitto: PathBuf,
    pub rumqttd: PathBuf,
    /// `taskset -c` CPU list for the broker process, if any. (Its nice value is the
    /// generator's: children inherit it.)
    pub cpus: Option<String>,
}

impl PeerSetup {
    /// Defaults: `target/release/robustmq` (or `$ROBUSTMQ_BIN_DIR/robustmq`), mosquitto
    /// on `PATH` or in `/usr/sbin`, rumqttd under the tools directory.
    pub fn from_env(cpus: Option<String>) -> PeerSetup {
        let bin_dir = std::env::var_os("ROBUSTMQ_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/release"));
        let tools = std::env::var_os("ROBUSTMQ_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/robustmq-tools")
            });
        let mosquitto = which("mosquitto").unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"));
        PeerSetup {
            robustmq: bin_dir.join("robustmq"),
            mosquitto,
            rumqttd: tools.join("rumqttd/bin/rumqttd"),
            cpus,
        }
    }

    fn bin(&self, kind: PeerKind) -> &PathBuf {
        match kind {
            PeerKind::Robustmq => &self.robustmq,
            PeerKind::Mosquitto => &self.mosquitto,
            PeerKind::Rumqttd => &self.rumqttd,
        }
    }

    /// Fails early, with the command that fixes it, if a peer's binary is missing.
    pub fn check(&self, kinds: &[PeerKind]) -> Result<()> {
        for &k in kinds {
            let b = self.bin(k);
            if !b.exists() {
                let fix = match k {
                    PeerKind::Robustmq => "cargo build --release -p broker --bin robustmq",
                    _ => "e2e/bench/install-peers.sh",
                };
                bail!("{} not found at {}: run {fix}", k.name(), b.display());
            }
        }
        Ok(())
    }

    /// The peer's version as it reports it.
    pub fn version(&self, kind: PeerKind) -> String {
        let output = |args: &[&str]| {
            std::process::Command::new(self.bin(kind))
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr)
                })
                .unwrap_or_default()
        };
        let v = match kind {
            // robustmq has no --version; the workspace version is what was built.
            PeerKind::Robustmq => Some(format!("{} (this tree)", env!("CARGO_PKG_VERSION"))),
            // `mosquitto -h` prints "mosquitto version X.Y.Z" first.
            PeerKind::Mosquitto => output(&["-h"])
                .lines()
                .find_map(|l| l.strip_prefix("mosquitto version "))
                .map(str::to_string),
            PeerKind::Rumqttd => output(&["--version"])
                .split_whitespace()
                .nth(1)
                .map(str::to_string),
        };
        v.unwrap_or_else(|| "unknown".into())
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A running peer; stopped (SIGTERM, then SIGKILL) when dropped or by [`RunningPeer::stop`].
pub struct RunningPeer {
    pub kind: PeerKind,
    /// MQTT `host:port`.
    pub addr: String,
    /// RobustMQ's admin HTTP address (for `/readyz`).
    admin: Option<String>,
    proc: Process,
    dir: TestDir,
}

impl RunningPeer {
    pub async fn start(kind: PeerKind, setup: &PeerSetup) -> Result<RunningPeer> {
        let dir = TestDir::new(&format!("bench-{}", kind.name().to_lowercase()));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let admin = (kind == PeerKind::Robustmq).then(|| format!("127.0.0.1:{}", free_port()));
        let mut args = match kind {
            PeerKind::Robustmq => robustmq_args(&dir, port, admin.as_deref().unwrap_or_default()),
            PeerKind::Mosquitto => mosquitto_args(&dir, port)?,
            PeerKind::Rumqttd => rumqttd_args(&dir, port)?,
        };
        let bin = setup.bin(kind).clone();
        let bin = match &setup.cpus {
            Some(cpus) => {
                // taskset execs the broker, so the child's pid is the broker's.
                let mut a = vec!["-c".to_string(), cpus.clone(), bin.display().to_string()];
                a.append(&mut args);
                args = a;
                PathBuf::from("taskset")
            }
            None => bin,
        };
        let mut proc = Process::new(kind.name(), bin, args, dir.path())
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "1");
        proc.start()?;
        let mut peer = RunningPeer {
            kind,
            addr,
            admin,
            proc,
            dir,
        };
        peer.wait_ready().await?;
        Ok(peer)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        if let Some(admin) = self.admin.clone() {
            wait_for("RobustMQ /readyz", Duration::from_secs(60), || {
                let admin = admin.clone();
                async move {
                    Ok(http_get(&admin, "/readyz")
                        .ok()
                        .filter(|(code, _)| *code == 200)
                        .map(|_| ()))
                }
            })
            .await?;
        }
        let addr = self.addr.clone();
        let name = self.kind.name();
        wait_for(
            &format!("{name} to accept an MQTT connection"),
            Duration::from_secs(60),
            || {
                let addr = addr.clone();
                async move {
                    Conn::connect(&addr, "bench-ready", Duration::from_secs(2)).await?;
                    Ok(Some(()))
                }
            },
        )
        .await?;
        if !self.proc.is_running() {
            bail!("{name} exited during start-up:\n{}", self.proc.log_text());
        }
        Ok(())
    }

    /// SIGTERM, up to 20 s for a clean exit, then SIGKILL. The data directory is deleted
    /// when the peer ran and stopped cleanly, and kept (with its log printed) otherwise.
    pub fn stop(mut self) -> Result<()> {
        let status = self.proc.terminate(Duration::from_secs(20));
        // rumqttd has no SIGTERM handler and dies of the signal; that is a stop too. Only
        // the SIGKILL after the grace period counts as unclean.
        let clean = status.is_some_and(|s| s.code().is_some() || s.signal() == Some(15));
        if !clean {
            bail!("{} did not exit on SIGTERM: {status:?}", self.kind.name());
        }
        self.dir.pass();
        Ok(())
    }
}

fn robustmq_args(dir: &TestDir, port: u16, admin: &str) -> Vec<String> {
    let local = || format!("127.0.0.1:{}", free_port());
    vec![
        "standalone".into(),
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--mqtt-addr".into(),
        format!("127.0.0.1:{port}"),
        // Empty turns the WebSocket listener off.
        "--mqtt-ws-addr".into(),
        String::new(),
        "--admin-addr".into(),
        admin.to_string(),
        "--meta-addr".into(),
        local(),
        "--meta-admin-addr".into(),
        local(),
        "--journal-addr".into(),
        local(),
    ]
}

fn mosquitto_args(dir: &TestDir, port: u16) -> Result<Vec<String>> {
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             max_inflight_messages 64\n\
             max_queued_messages 1000\n\
             set_tcp_nodelay true\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n"
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    Ok(vec!["-c".into(), conf.display().to_string()])
}

fn rumqttd_args(dir: &TestDir, port: u16) -> Result<Vec<String>> {
    let conf = dir.path().join("rumqttd.toml");
    // The shipped example config, minus the console, metrics, v5 and WebSocket listeners,
    // with our port, no delay between accepts and 64 messages in flight per client.
    std::fs::write(
        &conf,
        format!(
            "id = 0\n\
             [router]\n\
             id = 0\n\
             max_connections = 10010\n\
             max_outgoing_packet_count = 200\n\
             max_segment_size = 104857600\n\
             max_segment_count = 10\n\
             [v4.1]\n\
             name = \"v4-1\"\n\
             listen = \"127.0.0.1:{port}\"\n\
             next_connection_delay_ms = 0\n\
             [v4.1.connections]\n\
             connection_timeout_ms = 60000\n\
             max_payload_size = 20480\n\
             max_inflight_count = 64\n\
             dynamic_filters = true\n"
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    Ok(vec!["-q".into(), "-c".into(), conf.display().to_string()])
}

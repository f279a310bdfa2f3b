//! `robustmq`: the all-in-one binary.
//!
//! - `robustmq standalone [--data-dir ./data]`: meta, journal and broker in one process
//!   on the default ports; prints the addresses it listens on.
//! - `robustmq ctl [--meta ADDR] ...`: manage topics, policies, users and ACLs through
//!   the meta API (text or `--output json`).

// Many small short-lived allocations per message (records, deliveries, packets): mimalloc
// spends markedly less CPU on them than glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod ctl;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use broker::standalone::{Standalone, StandaloneConfig};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "robustmq", about = "RobustMQ all-in-one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run meta, journal and broker in this process.
    Standalone(Box<StandaloneArgs>),
    /// Manage the cluster through the meta API.
    Ctl(ctl::CtlArgs),
}

#[derive(Parser)]
struct StandaloneArgs {
    #[arg(long, default_value = "./data", env = "ROBUSTMQ_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0:1883", env = "ROBUSTMQ_MQTT_ADDR")]
    mqtt_addr: String,
    #[arg(long, default_value = "0.0.0.0:8080", env = "ROBUSTMQ_ADMIN_ADDR")]
    admin_addr: String,
    #[arg(long, default_value = "127.0.0.1:1228", env = "ROBUSTMQ_META_ADDR")]
    meta_addr: String,
    #[arg(
        long,
        default_value = "127.0.0.1:8081",
        env = "ROBUSTMQ_META_ADMIN_ADDR"
    )]
    meta_admin_addr: String,
    #[arg(long, default_value = "127.0.0.1:1778", env = "ROBUSTMQ_JOURNAL_ADDR")]
    journal_addr: String,
    /// MQTT over TLS; served when --tls-cert and --tls-key are given.
    #[arg(long, default_value = "0.0.0.0:8883", env = "ROBUSTMQ_MQTT_TLS_ADDR")]
    mqtt_tls_addr: String,
    /// MQTT over WebSocket (subprotocol `mqtt`); empty turns it off.
    #[arg(long, default_value = "0.0.0.0:8083", env = "ROBUSTMQ_MQTT_WS_ADDR")]
    mqtt_ws_addr: String,
    /// MQTT over secure WebSocket; served when --tls-cert and --tls-key are given.
    #[arg(long, default_value = "0.0.0.0:8084", env = "ROBUSTMQ_MQTT_WSS_ADDR")]
    mqtt_wss_addr: String,
    /// PEM certificate chain for the TLS listener.
    #[arg(long, env = "ROBUSTMQ_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long, env = "ROBUSTMQ_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse clients without a username and password (MQTT) or SASL login (Kafka).
    #[arg(long)]
    no_anonymous: bool,
    /// true|false: accept clients without credentials (same as --no-anonymous when false).
    #[arg(long, env = "ROBUSTMQ_ALLOW_ANONYMOUS")]
    allow_anonymous: Option<bool>,
    /// Kafka listener; empty turns it off.
    #[arg(long, default_value = "0.0.0.0:9092", env = "ROBUSTMQ_KAFKA_ADDR")]
    kafka_addr: String,
    /// Kafka over TLS; served when --tls-cert and --tls-key are given.
    #[arg(long, default_value = "0.0.0.0:9093", env = "ROBUSTMQ_KAFKA_TLS_ADDR")]
    kafka_tls_addr: String,
    /// Host name Kafka clients are given to reach this broker (default 127.0.0.1: set it
    /// when clients on other machines connect).
    #[arg(long, env = "ROBUSTMQ_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// true|false: create topics Kafka clients ask for (default true).
    #[arg(long, env = "ROBUSTMQ_KAFKA_AUTO_CREATE_TOPICS")]
    kafka_auto_create_topics: Option<bool>,
    /// Largest MQTT packet accepted, bytes.
    #[arg(long, env = "ROBUSTMQ_MAX_PACKET_SIZE")]
    max_packet_size: Option<u32>,
    /// Deliveries queued for one MQTT connection (`limits.max_queued`).
    #[arg(long, env = "ROBUSTMQ_MAX_QUEUED")]
    max_queued: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ctl(args) => ctl::run(args),
        Command::Standalone(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            broker::runtime::build()
                .context("building the tokio runtime")?
                .block_on(standalone(*args))
        }
    }
}

async fn standalone(a: StandaloneArgs) -> anyhow::Result<()> {
    let mut cfg = StandaloneConfig {
        data_dir: a.data_dir,
        meta_addr: a.meta_addr,
        meta_admin_addr: a.meta_admin_addr,
        journal_addr: a.journal_addr,
        ..Default::default()
    };
    cfg.broker.mqtt_addr = a.mqtt_addr;
    cfg.broker.admin_addr = a.admin_addr;
    cfg.broker.allow_anonymous = !a.no_anonymous && a.allow_anonymous.unwrap_or(true);
    cfg.broker.mqtt_ws_addr = a.mqtt_ws_addr;
    cfg.broker.kafka_addr = a.kafka_addr;
    // Standalone is for one machine: unless told otherwise, send Kafka clients back to
    // loopback rather than to a host name that may not resolve.
    cfg.broker.advertised_host = a.advertised_host.unwrap_or_else(|| "127.0.0.1".into());
    if let Some(v) = a.kafka_auto_create_topics {
        cfg.broker.kafka.auto_create_topics = v;
    }
    if a.tls_cert.is_some() {
        cfg.broker.mqtt_wss_addr = a.mqtt_wss_addr;
        cfg.broker.mqtt_tls_addr = a.mqtt_tls_addr;
        cfg.broker.kafka_tls_addr = a.kafka_tls_addr;
        cfg.broker.tls_cert = a.tls_cert;
        cfg.broker.tls_key = a.tls_key;
    }
    if let Some(m) = a.max_packet_size {
        cfg.broker.limits.max_packet_size = m;
    }
    if let Some(q) = a.max_queued {
        cfg.broker.limits.max_queued = q;
    }
    cfg.broker.validate()?;
    let cancel = CancellationToken::new();
    let s = Standalone::start(cfg, cancel.clone())
        .await
        .context("starting standalone mode")?;
    let b = &s.broker;
    let tls = [
        ("mqtts", b.mqtt_tls_addr),
        ("ws", b.mqtt_ws_addr),
        ("wss", b.mqtt_wss_addr),
        ("kafka", b.kafka_addr),
        ("kafka_tls", b.kafka_tls_addr),
    ]
    .iter()
    .filter_map(|(k, a)| a.map(|a| format!(" {k}={a}")))
    .collect::<String>();
    println!(
        "robustmq standalone listening mqtt={}{tls} admin={} meta={} journal={}",
        s.broker.mqtt_addr, s.broker.admin_addr, s.meta_addr, s.journal_addr
    );
    broker::signal::shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(20), s.shutdown())
        .await
        .context("shutdown took longer than 20 s")?;
    Ok(())
}

//! `robustmq-broker`: one stateless MQTT broker. Reads topics, sessions, retained
//! messages, users and ACLs from meta (`--meta`) and stores messages on the journal tier
//! over gRPC. Once listening it prints
//! `robustmq-broker listening mqtt=ADDR admin=ADDR` so scripts passing port 0 learn the
//! real ports.

// Many small short-lived allocations per message (records, deliveries, packets): mimalloc
// spends markedly less CPU on them than glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::config::{BrokerArgs, BrokerConfig};
use broker::meta::MetaClient;
use broker::storage::grpc::GrpcStorage;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let args = BrokerArgs::parse();
    if args.print_default_config {
        print!("{}", BrokerConfig::default_yaml());
        return Ok(());
    }
    let cfg = BrokerConfig::load(&args)?;
    init_tracing();
    broker::runtime::build()
        .context("building the tokio runtime")?
        .block_on(run(cfg))
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run(cfg: BrokerConfig) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let meta_addr = cfg.meta.split(',').next().unwrap_or_default().trim();
    let storage = Arc::new(GrpcStorage::new(MetaClient::new(meta_addr)?));
    let b = broker::server::start(&cfg, storage, cancel.clone())
        .await
        .context("starting the broker")?;
    let extra = [
        ("mqtts", b.mqtt_tls_addr),
        ("ws", b.mqtt_ws_addr),
        ("wss", b.mqtt_wss_addr),
    ]
    .iter()
    .filter_map(|(k, a)| a.map(|a| format!(" {k}={a}")))
    .collect::<String>();
    println!(
        "robustmq-broker listening mqtt={}{extra} admin={}",
        b.mqtt_addr, b.admin_addr
    );
    tracing::info!(node_id = cfg.node_id, mqtt = %b.mqtt_addr, admin = %b.admin_addr, "broker up");
    broker::signal::shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    b.wait(Duration::from_secs(10)).await;
    Ok(())
}

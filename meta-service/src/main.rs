//! `robustmq-meta`: runs one meta-service node until SIGTERM or Ctrl-C.

// Every write allocates on the request, Raft and apply paths: mimalloc spends less CPU
// on these short-lived allocations than glibc's allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::Parser;
use meta_service::config::{Args, MetaConfig};
use meta_service::server::MetaServer;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", serde_yaml::to_string(&MetaConfig::default())?);
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn,sled=warn")),
        )
        .init();
    let cfg = MetaConfig::load(&args).context("invalid configuration")?;
    let shutdown = CancellationToken::new();
    let server = MetaServer::start(cfg, shutdown.clone()).await?;
    println!(
        "robustmq-meta node {} listening: grpc {} admin {}",
        server.node.id, server.grpc_addr, server.admin_addr
    );
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.cancel();
    });
    server.run_until_shutdown().await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

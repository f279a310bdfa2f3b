//! `robustmq-journal`: a journal node. Opens the shards on its data dir (running
//! recovery), serves JournalService over gRPC and the admin HTTP port, and, when `--meta`
//! is given, registers with the meta-service and follows its shard placements. Without
//! `--meta` it runs standalone: shards are created with the CreateShard RPC.
//!
//! Once both listeners are bound it prints one line to stdout,
//! `robustmq-journal listening grpc=ADDR admin=ADDR`, so that tests and scripts that pass
//! port 0 learn the real ports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use journal::admin::{self, AdminState};
use journal::config::{Cli, Config};
use journal::grpc::{self, Limits};
use journal::meta::MetaLink;
use journal::metrics::Metrics;
use journal::registry::ShardManager;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", Config::default_yaml());
        return Ok(());
    }
    let cfg = Config::load(&cli).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let shards = Arc::new(ShardManager::new(
        cfg.node_id,
        cfg.data_dir.clone(),
        cfg.default_spec(),
        metrics.engine_hooks(),
    ));
    let opened = shards
        .open_existing()
        .await
        .with_context(|| format!("opening shards in {}", cfg.data_dir.display()))?;
    tracing::info!(shards = opened, data_dir = %cfg.data_dir.display(), "shards opened");

    let grpc_listener = TcpListener::bind(cfg.grpc_addr)
        .await
        .with_context(|| format!("binding grpc_addr {}", cfg.grpc_addr))?;
    let admin_listener = TcpListener::bind(cfg.admin_addr)
        .await
        .with_context(|| format!("binding admin_addr {}", cfg.admin_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let advertised = if cfg.advertised_addr.is_empty() {
        grpc_addr.to_string()
    } else {
        cfg.advertised_addr.clone()
    };

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let ready = Arc::new(AtomicBool::new(false));

    tasks.spawn(admin::serve(
        admin_listener,
        AdminState {
            shards: shards.clone(),
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        cancel.clone(),
    ));
    let grpc_task = tasks.spawn(grpc::serve(
        grpc_listener,
        shards.clone(),
        metrics.clone(),
        Limits {
            max_append_bytes: cfg.max_append_bytes,
            max_read_bytes: cfg.max_read_bytes,
        },
        cancel.clone(),
    ));
    tasks.spawn(shards.clone().run_retention(
        Duration::from_millis(cfg.retention_check_ms),
        cancel.clone(),
    ));

    if cfg.meta.is_empty() {
        tracing::info!("no --meta: running standalone (create shards with CreateShard)");
        ready.store(true, Ordering::Release);
    } else {
        let link = MetaLink::new(
            &cfg.meta,
            cfg.node_id,
            advertised.clone(),
            cfg.lease_ttl_ms,
            shards.clone(),
        )?;
        shards.set_directory(link.clone());
        let registered = Arc::new(AtomicBool::new(false));
        let synced = Arc::new(AtomicBool::new(false));
        tasks.spawn(link.clone().run_lease(registered.clone(), cancel.clone()));
        tasks.spawn(link.run_placements(registered.clone(), synced.clone(), cancel.clone()));
        let ready = ready.clone();
        let c = cancel.clone();
        tasks.spawn(async move {
            // Ready once registered and the first placement list is applied.
            while !c.is_cancelled() {
                if registered.load(Ordering::Acquire) && synced.load(Ordering::Acquire) {
                    ready.store(true, Ordering::Release);
                    tracing::info!("registered with meta and shard placements applied");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    println!("robustmq-journal listening grpc={grpc_addr} admin={admin_addr}");
    tracing::info!(node_id = cfg.node_id, %grpc_addr, %admin_addr, %advertised, "journal node up");

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        r = grpc_task => {
            // The gRPC server only ends early on a fatal transport error.
            tracing::error!(result = ?r, "gRPC server stopped");
        }
    }
    ready.store(false, Ordering::Release);
    cancel.cancel();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    shards.close_all().await;
    tracing::info!("journal node stopped");
    Ok(())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

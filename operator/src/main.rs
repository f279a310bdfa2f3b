//! `robustmq-operator`: `run` (the default) reconciles RobustMQ custom resources while this
//! replica holds the leader Lease; `crd` prints every CRD as YAML.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use operator::admin::{self, AdminState};
use operator::controller::{self, Context};
use operator::leader::LeaderElector;
use operator::meta::MetaClients;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "robustmq-operator",
    version,
    about = "Kubernetes operator for RobustMQ"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile RobustMQCluster, StoragePolicy and Topic resources (the default).
    Run,
    /// Print every CRD as YAML (what `crds/robustmq.io.yaml` holds).
    Crd,
}

#[derive(Args)]
struct RunArgs {
    /// Meta-service gRPC endpoint for every cluster, instead of `<cluster>-meta.<ns>.svc:1228`
    /// (for tests and for operators running outside the cluster network).
    #[arg(long, env = "ROBUSTMQ_OPERATOR_META_ENDPOINT", global = true)]
    meta_endpoint: Option<String>,
    /// Admin HTTP address (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "ROBUSTMQ_OPERATOR_ADMIN_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    admin_addr: SocketAddr,
    /// Watch only this namespace; all namespaces when absent.
    #[arg(long, env = "ROBUSTMQ_OPERATOR_NAMESPACE", global = true)]
    namespace: Option<String>,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", global = true)]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "ROBUSTMQ_OPERATOR_LEASE",
        default_value = "robustmq-operator",
        global = true
    )]
    lease_name: String,
    /// This replica's identity in the Lease (default: the pod name / hostname).
    #[arg(long, env = "POD_NAME", global = true)]
    identity: Option<String>,
    /// Lease duration in seconds; a dead leader is replaced after at most this long.
    #[arg(
        long,
        env = "ROBUSTMQ_OPERATOR_LEASE_SECONDS",
        default_value_t = 15,
        global = true
    )]
    lease_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Crd => {
            print!("{}", operator::crd::all_yaml()?);
            Ok(())
        }
        Command::Run => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received, shutting down");
            shutdown.cancel();
        });
    }

    let state = Arc::new(AdminState::default());
    let admin = tokio::spawn(admin::serve(
        args.admin_addr,
        state.clone(),
        shutdown.clone(),
    ));

    let client = Client::try_default()
        .await
        .context("building the Kubernetes client (in-cluster config or KUBECONFIG)")?;
    client
        .apiserver_version()
        .await
        .context("reaching the Kubernetes API server")?;
    state.ready.store(true, Ordering::Relaxed);

    let identity = args
        .identity
        .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
    let elector = LeaderElector::new(
        Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
        &args.lease_name,
        &identity,
        Duration::from_secs(args.lease_seconds.max(3)),
    );
    tracing::info!(%identity, lease = %args.lease_name, "waiting for leadership");
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return finish(admin).await,
            _ = tokio::time::sleep(elector.retry_period()) => {}
        }
    }
    tracing::info!(%identity, "leading: starting controllers");
    state.leader.store(true, Ordering::Relaxed);

    // Renew the Lease; if it cannot be renewed within its duration another replica may take
    // over, so stop reconciling before that can happen.
    let lost = CancellationToken::new();
    let renew = {
        let lost = lost.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut last_ok = Instant::now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return elector,
                    _ = tokio::time::sleep(elector.retry_period()) => {}
                }
                match elector.try_acquire_or_renew().await {
                    Ok(true) => last_ok = Instant::now(),
                    Ok(false) => {
                        tracing::error!("lost the leader lease to another replica");
                        lost.cancel();
                        return elector;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the lease");
                        // Give up strictly before the lease can expire for others.
                        if last_ok.elapsed() + elector.retry_period() >= elector.lease_duration() {
                            lost.cancel();
                            return elector;
                        }
                    }
                }
            }
        })
    };

    let metrics = state.metrics.clone();
    let ctx = Arc::new(Context::new(
        client,
        MetaClients::new(args.meta_endpoint),
        metrics,
        identity,
    ));
    let stop = {
        let shutdown = shutdown.clone();
        let lost = lost.clone();
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = lost.cancelled() => {}
            }
        }
    };
    controller::run(ctx, args.namespace, stop).await;
    let elector = renew.await.context("lease renewal task")?;
    if lost.is_cancelled() {
        shutdown.cancel();
        let _ = admin.await;
        anyhow::bail!("leadership lost; exiting so a fresh start re-joins the election");
    }
    if let Err(e) = elector.release().await {
        tracing::warn!(error = %e, "releasing the lease");
    }
    finish(admin).await
}

async fn finish(admin: tokio::task::JoinHandle<std::io::Result<()>>) -> anyhow::Result<()> {
    admin
        .await
        .context("admin task")?
        .context("admin HTTP server")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

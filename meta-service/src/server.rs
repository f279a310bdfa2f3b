//! Wires a meta node together and runs it until shutdown: sled, openraft, the gRPC server
//! (public API, internal Raft service, reflection), admin HTTP, cluster bootstrap and the
//! leader's expiry sweeper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use openraft::{BasicNode, Config, SnapshotPolicy};
use robustmq_proto::meta::meta_service_server::MetaServiceServer;
use robustmq_proto::raft::ProbeRequest;
use robustmq_proto::raft::raft_internal_server::RaftInternalServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::MetaConfig;
use crate::grpc::{MetaGrpc, MetricsLayer};
use crate::metrics::Metrics;
use crate::node::MetaNode;
use crate::proposer::{Proposer, now_ms};
use crate::raft::log_store::LogStore;
use crate::raft::network::{MAX_MESSAGE_BYTES, Network, internal_client};
use crate::raft::service::RaftService;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::{NodeId, Raft};
use crate::store::Command;

/// A running meta node.
pub struct MetaServer {
    pub node: Arc<MetaNode>,
    pub grpc_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    db: sled::Db,
    log_db: sled::Db,
}

impl MetaServer {
    /// Opens storage, binds the listeners and starts every task.
    pub async fn start(cfg: MetaConfig, shutdown: CancellationToken) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        // The Raft log's entries live in segment files; its vote and purge point in a small
        // sled database of their own, flushed only when they change, so that those flushes
        // never also write out the state machine's dirty pages.
        let log_db = open_sled(&cfg.data_dir.join("raft-log"))?;
        let db = open_sled(&cfg.data_dir.join("state"))?;

        let committed = Arc::new(AtomicU64::new(0));
        let log_store = LogStore::open(
            &log_db,
            &cfg.data_dir.join("raft-segments"),
            committed.clone(),
        )
        .context("opening the Raft log")?;
        let sm = StateMachineStore::open(&db, cfg.raft.watch_history)
            .context("opening the state machine")?;
        let shared = sm.shared();

        let r = &cfg.raft;
        let raft_config = Config {
            cluster_name: "robustmq-meta".into(),
            heartbeat_interval: r.heartbeat_ms,
            election_timeout_min: r.election_timeout_min_ms,
            election_timeout_max: r.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_logs.max(1)),
            max_in_snapshot_log_to_keep: r.logs_kept_after_snapshot,
            max_payload_entries: 512,
            snapshot_max_chunk_size: 4 << 20,
            ..Config::default()
        }
        .validate()
        .context("raft settings")?;
        let raft = Raft::new(cfg.node_id, Arc::new(raft_config), Network, log_store, sm)
            .await
            .context("starting Raft")?;

        let metrics = Arc::new(Metrics::new());
        let proposer = Proposer::start(
            raft.clone(),
            metrics.clone(),
            r.max_batch,
            r.max_inflight_batches,
        );
        let node = Arc::new(MetaNode::new(
            cfg.node_id,
            raft,
            shared,
            metrics.clone(),
            committed,
            proposer,
        ));

        let grpc_listener = TcpListener::bind(&cfg.grpc_addr)
            .await
            .with_context(|| format!("binding grpc_addr {}", cfg.grpc_addr))?;
        let admin_listener = TcpListener::bind(&cfg.admin_addr)
            .await
            .with_context(|| format!("binding admin_addr {}", cfg.admin_addr))?;
        let grpc_addr = grpc_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;

        let tasks = TaskTracker::new();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(robustmq_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building gRPC reflection")?;
        let max = cfg.limits.max_message_bytes;
        let router = tonic::transport::Server::builder()
            .max_concurrent_streams(cfg.limits.max_concurrent_streams)
            .tcp_nodelay(true)
            .layer(MetricsLayer::new(metrics))
            .add_service(
                MetaServiceServer::new(MetaGrpc::new(node.clone(), shutdown.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                RaftInternalServer::new(RaftService::new(node.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(reflection);
        let token = shutdown.clone();
        tasks.spawn(async move {
            // `tcp_nodelay` on the builder covers only listeners tonic binds itself.
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await
            {
                warn!(error = %e, "gRPC server stopped");
            }
        });

        let token = shutdown.clone();
        let admin = crate::admin::router(node.clone());
        tasks.spawn(async move {
            if let Err(e) = axum::serve(admin_listener, admin)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
            {
                warn!(error = %e, "admin server stopped");
            }
        });

        if !cfg.join {
            tasks.spawn(bootstrap(
                node.clone(),
                cfg.initial_voters(),
                shutdown.clone(),
            ));
        }
        tasks.spawn(sweeper(
            node.clone(),
            Duration::from_millis(cfg.raft.sweep_interval_ms.max(50)),
            shutdown.clone(),
        ));

        info!(node_id = cfg.node_id, %grpc_addr, %admin_addr, advertise = %cfg.advertised(), "meta node started");
        Ok(Self {
            node,
            grpc_addr,
            admin_addr,
            tasks,
            shutdown,
            db,
            log_db,
        })
    }

    /// Waits for the shutdown token, then stops serving, stops Raft and flushes storage.
    pub async fn run_until_shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        info!("shutting down");
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("listeners did not stop within 10 s");
        }
        if let Err(e) = self.node.raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.node.shared.drain_writes() {
            warn!(error = %e, "state machine writes did not finish");
        }
        self.db
            .flush_async()
            .await
            .context("flushing the state machine")?;
        self.log_db
            .flush_async()
            .await
            .context("flushing the Raft log")?;
        info!("stopped");
        Ok(())
    }
}

fn open_sled(path: &std::path::Path) -> anyhow::Result<sled::Db> {
    sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .open()
        .with_context(|| format!("opening sled in {}", path.display()))
}

/// Initializes the cluster from the lowest-id peer when no peer belongs to one yet.
async fn bootstrap(
    node: Arc<MetaNode>,
    voters: BTreeMap<NodeId, String>,
    shutdown: CancellationToken,
) {
    match node.raft.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => return warn!(error = %e, "cannot tell whether Raft is initialized"),
    }
    if voters.keys().next() != Some(&node.id) {
        info!("waiting to be contacted by the cluster leader");
        return;
    }
    // A node whose data was wiped must not found a second cluster: ask the others first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut answered = 0;
        for (id, addr) in voters.iter().filter(|(id, _)| **id != node.id) {
            let Ok(mut client) = internal_client(addr) else {
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(1), client.probe(ProbeRequest {})).await
            {
                Ok(Ok(r)) if r.get_ref().initialized => {
                    info!(
                        peer = id,
                        "a peer already belongs to a cluster; waiting to be contacted"
                    );
                    return;
                }
                Ok(Ok(_)) => answered += 1,
                _ => {}
            }
        }
        if answered + 1 == voters.len() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
    let members: BTreeMap<NodeId, BasicNode> = voters
        .into_iter()
        .map(|(id, addr)| (id, BasicNode { addr }))
        .collect();
    match node.raft.initialize(members).await {
        Ok(()) => info!("initialized a new cluster"),
        Err(e) => info!(error = %e, "cluster initialization skipped"),
    }
}

/// On the leader, proposes a sweep when leases, sessions or retained messages are due.
async fn sweeper(node: Arc<MetaNode>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.leader().map(|l| l.0) != Some(node.id) {
            continue;
        }
        let due = node
            .shared
            .state
            .read()
            .expect("state lock")
            .needs_sweep(now_ms());
        if due && let Err(e) = node.write(Command::Sweep).await {
            warn!(error = %e, "expiry sweep failed");
        }
    }
}

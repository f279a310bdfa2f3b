//! `robustmq standalone`: every tier in one process, for laptops, tests and demos.
//!
//! ```text
//! meta-service   one node, initialises itself           gRPC 127.0.0.1:1228
//! journal        the ShardManager (segment engine)       gRPC 127.0.0.1:1778
//! broker         MQTT over the in-process journal        MQTT 0.0.0.0:1883, admin :8080
//! ```
//!
//! The broker talks to the journal through [`LocalStorage`] (no gRPC hop); the journal's
//! gRPC port is served too so that journal tools work against a standalone node. On
//! first start it creates the `default` storage policy and the `default` topic bound to
//! `#`, so that any publish has somewhere to land.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use journal::engine::EngineHooks;
use journal::registry::ShardManager;
use journal::{EngineKind, FsyncPolicy, ShardSpec};
use meta_service::config::MetaConfig;
use meta_service::server::MetaServer;
use robustmq_proto::meta::{self, NameRequest};
use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::meta::MetaClient;
use crate::server::{self, RunningBroker};
use crate::storage::local::LocalStorage;

/// Where standalone mode listens and keeps data.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub data_dir: PathBuf,
    pub meta_addr: String,
    pub meta_admin_addr: String,
    pub journal_addr: String,
    pub broker: BrokerConfig,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        StandaloneConfig {
            data_dir: PathBuf::from("./data"),
            meta_addr: "127.0.0.1:1228".into(),
            meta_admin_addr: "127.0.0.1:8081".into(),
            journal_addr: "127.0.0.1:1778".into(),
            broker: BrokerConfig::default(),
        }
    }
}

/// The running tiers.
pub struct Standalone {
    pub meta_addr: std::net::SocketAddr,
    pub meta_admin_addr: std::net::SocketAddr,
    pub journal_addr: std::net::SocketAddr,
    pub broker: RunningBroker,
    meta: MetaServer,
    shards: Arc<ShardManager>,
    journal_task: tokio::task::JoinHandle<()>,
}

fn startup(what: &'static str) -> impl Fn(String) -> BrokerError {
    move |reason| BrokerError::Startup { what, reason }
}

/// How the default policy stores data: local segments, fsync once a second (a laptop
/// setup; production policies choose `always`).
fn default_policy() -> meta::StoragePolicy {
    meta::StoragePolicy {
        name: "default".into(),
        engine: meta::Engine::Segment as i32,
        replicas: 1,
        fsync: meta::Fsync::Interval as i32,
        fsync_interval_ms: 1000,
        ..Default::default()
    }
}

fn shard_spec() -> ShardSpec {
    ShardSpec {
        engine: EngineKind::Segment,
        fsync: FsyncPolicy::Interval { ms: 1000 },
        ..ShardSpec::default()
    }
}

/// Creates the default policy and the `#`-bound default topic unless they exist.
/// Retries while the fresh meta node elects itself.
async fn bootstrap(meta: &MetaClient) -> Result<()> {
    let mut last = String::new();
    for _ in 0..150 {
        let mut c = meta.client();
        let policy = match c
            .get_policy(NameRequest {
                name: "default".into(),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => {
                c.create_policy(default_policy()).await.map(|_| ())
            }
            Err(s) => Err(s),
        };
        let topic = match policy {
            Err(s) => Err(s),
            Ok(()) => match c
                .get_topic(NameRequest {
                    name: "default".into(),
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(s) if s.code() == tonic::Code::NotFound => c
                    .create_topic(meta::Topic {
                        name: "default".into(),
                        shards: 1,
                        storage_policy: "default".into(),
                        mqtt_filter: "#".into(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
                Err(s) => Err(s),
            },
        };
        match topic {
            Ok(()) => return Ok(()),
            Err(s) => last = s.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BrokerError::Startup {
        what: "default policy and topic",
        reason: last,
    })
}

impl Standalone {
    pub async fn start(cfg: StandaloneConfig, cancel: CancellationToken) -> Result<Standalone> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let meta = MetaServer::start(
            MetaConfig {
                node_id: 1,
                grpc_addr: cfg.meta_addr.clone(),
                admin_addr: cfg.meta_admin_addr.clone(),
                data_dir: cfg.data_dir.join("meta"),
                ..Default::default()
            },
            cancel.clone(),
        )
        .await
        .map_err(|e| startup("meta-service")(format!("{e:#}")))?;
        let meta_addr = meta.grpc_addr;
        let meta_admin_addr = meta.admin_addr;

        let shards = Arc::new(ShardManager::new(
            1,
            cfg.data_dir.join("journal"),
            shard_spec(),
            EngineHooks::default(),
        ));
        shards
            .open_existing()
            .await
            .map_err(|e| startup("journal")(e.to_string()))?;
        let journal_listener = crate::server::bind("journal_addr", &cfg.journal_addr).await?;
        let journal_addr = journal_listener.local_addr()?;
        let journal_task = tokio::spawn({
            let shards = shards.clone();
            let cancel = cancel.clone();
            async move {
                let r = journal::grpc::serve(
                    journal_listener,
                    shards,
                    Arc::new(journal::metrics::Metrics::new()),
                    journal::grpc::Limits {
                        max_append_bytes: 16 << 20,
                        max_read_bytes: 4 << 20,
                    },
                    cancel,
                )
                .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "journal gRPC server stopped");
                }
            }
        });

        let client = MetaClient::new(&meta_addr.to_string())?;
        bootstrap(&client).await?;

        let mut bcfg = cfg.broker.clone();
        bcfg.meta = meta_addr.to_string();
        let storage = Arc::new(LocalStorage::new(shards.clone(), shard_spec()));
        let broker = server::start(&bcfg, storage, cancel).await?;
        Ok(Standalone {
            meta_addr,
            meta_admin_addr,
            journal_addr,
            broker,
            meta,
            shards,
            journal_task,
        })
    }

    /// After cancellation: lets sessions save their state, then stops the journal and
    /// meta (in that order, since sessions save to meta).
    pub async fn shutdown(self) {
        self.broker.wait(Duration::from_secs(10)).await;
        let _ = self.journal_task.await;
        self.shards.close_all().await;
        if let Err(e) = self.meta.run_until_shutdown().await {
            tracing::warn!(error = %format!("{e:#}"), "meta shutdown");
        }
    }
}

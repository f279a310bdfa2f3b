//! The Kafka protocol server: listener → [`connection`] (framing in [`frame`], codec from
//! the `kafka-protocol` crate, SASL) → [`handlers`] per API, over the same
//! [`crate::storage::StorageAdapter`] and meta-service as MQTT.
//!
//! - [`cluster`]: live brokers from meta; partition leaders and group coordinators by
//!   rendezvous hashing.
//! - [`topics`]: meta's topics under their Kafka names; create/delete/grow.
//! - [`batch`], [`idempotence`]: RecordBatch headers and producer deduplication.
//! - [`group`]: the consumer-group coordinator (offsets in meta).
//! - [`sasl`]: SASL PLAIN and SCRAM-SHA-256/512 against the users in meta.
//! - [`versions`]: the served APIs and versions, for the decoder and ApiVersions alike.
//! - [`stats`]: counters for the admin port's `/metrics`.

pub mod batch;
pub mod cluster;
pub mod connection;
pub mod frame;
pub mod group;
pub mod handlers;
pub mod idempotence;
pub mod sasl;
pub mod stats;
pub mod topics;
pub mod versions;

use std::sync::Arc;
use std::time::Duration;

use robustmq_proto::meta::{KvGetRequest, KvPutRequest};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::meta::MetaClient;
use crate::storage::StorageAdapter;
use cluster::{Cluster, Listener};
use group::GroupCoordinator;
use handlers::Conn;
use handlers::admin::ProducerIdPool;
use idempotence::ProducerStates;
use sasl::UserStore;
use topics::Topics;

/// Kafka settings (the `kafka:` section of the broker's YAML).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Create a topic when a client asks Metadata for one that does not exist.
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, or of CreateTopics with -1.
    pub default_partitions: u32,
    /// Storage policy of topics created through Kafka.
    pub default_policy: String,
    /// Largest request frame; a larger length prefix closes the connection.
    pub max_request_size: usize,
    /// Largest record set per partition in a Produce (message.max.bytes).
    pub max_message_bytes: usize,
    /// Live Kafka connections per broker; more are closed on accept.
    pub max_connections: usize,
    /// How often the live broker list is re-read from meta.
    pub cluster_refresh_ms: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            auto_create_topics: true,
            default_partitions: 1,
            default_policy: "default".into(),
            max_request_size: 100 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            max_connections: 100_000,
            cluster_refresh_ms: 1000,
        }
    }
}

/// What every Kafka connection of this broker shares.
pub struct KafkaContext {
    pub settings: KafkaSettings,
    pub cluster: Cluster,
    pub topics: Topics,
    pub storage: Arc<dyn StorageAdapter>,
    pub groups: Arc<GroupCoordinator>,
    pub producers: ProducerStates,
    pub producer_ids: ProducerIdPool,
    pub users: Arc<dyn UserStore>,
    pub cluster_id: String,
    pub cancel: CancellationToken,
    pub stats: stats::KafkaStats,
    connections: Arc<Semaphore>,
}

impl KafkaContext {
    /// Kafka clients want a controller; the lowest live broker id is stable and shared.
    pub fn controller_id(&self) -> i32 {
        self.cluster
            .brokers(Listener::Plain)
            .first()
            .map_or(self.cluster.my_id(), |b| b.id)
    }
}

/// The cluster id Kafka clients see: created once in meta's KV and shared by every broker.
async fn cluster_id(meta: &MetaClient) -> Result<String, tonic::Status> {
    const KEY: &str = "kafka/cluster_id";
    let mut c = meta.client();
    let get = KvGetRequest { key: KEY.into() };
    let got = c.kv_get(get.clone()).await?.into_inner();
    if got.found {
        return Ok(String::from_utf8_lossy(&got.value).into_owned());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    // Create-if-absent: the loser of a race reads the winner's id.
    let _ = c
        .kv_put(KvPutRequest {
            key: KEY.into(),
            value: id.clone().into(),
            expected_revision: Some(0),
        })
        .await;
    let got = c.kv_get(get).await?.into_inner();
    Ok(if got.found {
        String::from_utf8_lossy(&got.value).into_owned()
    } else {
        id
    })
}

/// The listeners to serve.
pub struct Listeners {
    pub plain: Option<TcpListener>,
    pub tls: Option<(TcpListener, TlsAcceptor)>,
    /// The host clients are told to connect to (the ports are the listeners').
    pub advertised_host: String,
    /// Whether clients must authenticate with SASL (anonymous access off).
    pub require_sasl: bool,
}

/// Builds the Kafka context and starts serving `listeners` on `tasks`.
pub async fn start(
    node_id: u64,
    settings: KafkaSettings,
    meta: MetaClient,
    storage: Arc<dyn StorageAdapter>,
    listeners: Listeners,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> crate::Result<Arc<KafkaContext>> {
    let id = i32::try_from(node_id).map_err(|_| {
        crate::BrokerError::Config(format!(
            "node_id {node_id} does not fit a Kafka broker id (i32)"
        ))
    })?;
    let host = &listeners.advertised_host;
    let endpoint = |l: &TcpListener| -> crate::Result<(String, i32)> {
        Ok((host.clone(), l.local_addr()?.port() as i32))
    };
    let me = cluster::Member {
        id,
        plain: listeners.plain.as_ref().map(endpoint).transpose()?,
        tls: listeners
            .tls
            .as_ref()
            .map(|(l, _)| endpoint(l))
            .transpose()?,
    };
    let cluster = Cluster::new(me);
    let cluster_id = cluster_id(&meta)
        .await
        .map_err(|s| crate::BrokerError::meta("KvGet kafka/cluster_id", s))?;
    let topics = Topics::new(
        meta.clone(),
        topics::CreateDefaults {
            partitions: settings.default_partitions.max(1),
            policy: settings.default_policy.clone(),
        },
    );
    if let Err(e) = topics.refresh().await {
        tracing::warn!(error = %e, "first Kafka topic refresh");
    }
    let owner = cluster.clone();
    let groups = GroupCoordinator::new(
        Arc::new(group::MetaOffsetStore::new(meta.clone())),
        Arc::new(move |g: &str| owner.coordinator(g) == owner.my_id()),
    );
    let ctx = Arc::new(KafkaContext {
        connections: Arc::new(Semaphore::new(settings.max_connections)),
        settings,
        cluster: cluster.clone(),
        topics: topics.clone(),
        storage,
        groups: groups.clone(),
        producers: ProducerStates::default(),
        producer_ids: ProducerIdPool::new(meta.clone()),
        users: Arc::new(sasl::MetaUserStore::new(meta.clone())),
        cluster_id,
        cancel: cancel.clone(),
        stats: stats::KafkaStats::default(),
    });
    let every = Duration::from_millis(ctx.settings.cluster_refresh_ms.max(100));
    tasks.spawn(cluster.run_refresh(meta.clone(), every, cancel.clone()));
    tasks.spawn(topics.run_refresh(every, cancel.clone()));
    tasks.spawn(groups.run(cancel.clone()));
    let require = listeners.require_sasl;
    if let Some(l) = listeners.plain {
        tasks.spawn(accept(
            l,
            None,
            Listener::Plain,
            require,
            ctx.clone(),
            tasks.clone(),
        ));
    }
    if let Some((l, acceptor)) = listeners.tls {
        tasks.spawn(accept(
            l,
            Some(acceptor),
            Listener::Tls,
            require,
            ctx.clone(),
            tasks.clone(),
        ));
    }
    Ok(ctx)
}

async fn accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    kind: Listener,
    require_sasl: bool,
    ctx: Arc<KafkaContext>,
    tasks: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "kafka accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = ctx.settings.max_connections, "kafka connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            ctx: ctx.clone(),
            listener: kind,
            peer,
        };
        let tls = tls.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let ctx = conn.ctx.clone();
            let _live = ctx.stats.connected();
            match tls {
                None => connection::serve(stream, conn, require_sasl).await,
                Some(acceptor) => {
                    if let Some(s) = crate::mqtt::tls::handshake(&acceptor, stream, peer).await {
                        connection::serve(s, conn, require_sasl).await;
                    }
                }
            }
        });
    }
}

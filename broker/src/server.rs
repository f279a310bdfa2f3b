//! Wires one broker: meta link (registration, topic bindings), dispatcher, MQTT listener
//! and admin port, over whichever [`StorageAdapter`] the caller chose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, Result};
use crate::meta::{MetaClient, TopicRoutes, run_lease};
use crate::mqtt::dispatch::Dispatcher;
use crate::mqtt::{Context, Stats, listener, registry::Registry};
use crate::storage::StorageAdapter;
use crate::storage::appender::Appender;

/// A started broker.
pub struct RunningBroker {
    pub mqtt_addr: SocketAddr,
    /// Set when `mqtt_tls_addr` is configured.
    pub mqtt_tls_addr: Option<SocketAddr>,
    pub mqtt_ws_addr: Option<SocketAddr>,
    pub mqtt_wss_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub kafka_addr: Option<SocketAddr>,
    pub kafka_tls_addr: Option<SocketAddr>,
    pub ctx: Arc<Context>,
    tasks: TaskTracker,
}

impl RunningBroker {
    /// Waits for every connection and task to finish after the token is cancelled.
    pub async fn wait(self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("broker tasks did not stop within {grace:?}");
        }
    }
}

/// Binds the listeners, loads topic bindings from meta and starts serving.
pub async fn start(
    cfg: &BrokerConfig,
    storage: Arc<dyn StorageAdapter>,
    cancel: CancellationToken,
) -> Result<RunningBroker> {
    let meta_addr = cfg.meta.split(',').next().unwrap_or_default().trim();
    let meta = MetaClient::new(meta_addr)?;
    let routes = TopicRoutes::new();
    // Meta may still be electing a leader: retry for a while before giving up.
    let mut last = None;
    for _ in 0..100 {
        match routes.refresh(&meta).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(e) = last {
        return Err(e);
    }

    let mqtt_listener = bind("mqtt_addr", &cfg.mqtt_addr).await?;
    let acceptor = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(crate::mqtt::tls::acceptor(cert, key)?),
        _ => None,
    };
    let tls = match &acceptor {
        Some(a) if !cfg.mqtt_tls_addr.is_empty() => {
            Some((bind("mqtt_tls_addr", &cfg.mqtt_tls_addr).await?, a.clone()))
        }
        _ => None,
    };
    let ws = match cfg.mqtt_ws_addr.as_str() {
        "" => None,
        a => Some(bind("mqtt_ws_addr", a).await?),
    };
    let wss = match (&acceptor, cfg.mqtt_wss_addr.as_str()) {
        (Some(acc), a) if !a.is_empty() => Some((bind("mqtt_wss_addr", a).await?, acc.clone())),
        _ => None,
    };
    let mqtt_ws_addr = match &ws {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let mqtt_wss_addr = match &wss {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let mqtt_tls_addr = match &tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let kafka = match cfg.kafka_addr.as_str() {
        "" => None,
        a => Some(bind("kafka_addr", a).await?),
    };
    let kafka_tls = match (&acceptor, cfg.kafka_tls_addr.as_str()) {
        (Some(acc), a) if !a.is_empty() => Some((bind("kafka_tls_addr", a).await?, acc.clone())),
        _ => None,
    };
    let kafka_addr = kafka.as_ref().map(|l| l.local_addr()).transpose()?;
    let kafka_tls_addr = kafka_tls
        .as_ref()
        .map(|(l, _)| l.local_addr())
        .transpose()?;
    let advertised_host = advertised_host(cfg, kafka_addr.or(kafka_tls_addr));
    let admin_listener = bind("admin_addr", &cfg.admin_addr).await?;
    let mqtt_addr = mqtt_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let dispatcher = Arc::new(Dispatcher::new(storage.clone()));
    let tasks = TaskTracker::new();
    tasks.spawn(routes.clone().run_refresh(
        meta.clone(),
        Duration::from_millis(cfg.topic_refresh_ms),
        cancel.clone(),
    ));
    let follow = dispatcher
        .clone()
        .start(routes.clone(), cancel.clone())
        .await;
    tasks.spawn(async move {
        let _ = follow.await;
    });

    let share = crate::mqtt::share::ShareGroups::new(
        cfg.node_id,
        meta.clone(),
        routes.clone(),
        dispatcher.clone(),
    );
    tasks.spawn(share.clone().run(cancel.clone()));

    let acl = crate::mqtt::acl::Acl::new(cfg.acl_allow_if_no_match);
    if let Err(e) = acl.refresh(&meta).await {
        return Err(BrokerError::meta("ListAcls", e));
    }
    tasks.spawn(acl.clone().run_refresh(
        meta.clone(),
        Duration::from_millis(cfg.acl_refresh_ms),
        cancel.clone(),
    ));
    let ctx = Arc::new(Context {
        node_id: cfg.node_id,
        limits: cfg.limits.clone(),
        allow_anonymous: cfg.allow_anonymous,
        acl,
        meta: meta.clone(),
        saver: crate::mqtt::saver::SessionSaver::start(meta.clone()),
        routes,
        // The dispatcher delivers what the appender stored without reading it back.
        appender: Appender::new(storage.clone(), cancel.clone())
            .with_observer(Arc::new(dispatcher.clone())),
        storage,
        share: share.clone(),
        dispatcher,
        registry: Registry::default(),
        connections: Arc::new(Semaphore::new(cfg.limits.max_connections)),
        stats: Stats::default(),
        cancel: cancel.clone(),
    });
    let mut labels = std::collections::HashMap::new();
    if let Some(a) = kafka_addr {
        labels.insert(
            crate::kafka::cluster::KAFKA_LABEL.to_string(),
            format!("{advertised_host}:{}", a.port()),
        );
    }
    if let Some(a) = kafka_tls_addr {
        labels.insert(
            crate::kafka::cluster::KAFKA_TLS_LABEL.to_string(),
            format!("{advertised_host}:{}", a.port()),
        );
    }
    let mut kafka_ctx = None;
    if kafka.is_some() || kafka_tls.is_some() {
        let k = crate::kafka::start(
            cfg.node_id,
            cfg.kafka.clone(),
            meta.clone(),
            ctx.storage.clone(),
            crate::kafka::Listeners {
                plain: kafka,
                tls: kafka_tls,
                advertised_host,
                require_sasl: !cfg.allow_anonymous,
            },
            &tasks,
            cancel.clone(),
        )
        .await?;
        kafka_ctx = Some(k);
    }
    tasks.spawn(run_lease(
        meta,
        cfg.node_id,
        mqtt_addr.to_string(),
        labels,
        cfg.lease_ttl_ms,
        cancel.clone(),
    ));
    tasks.spawn(listener::serve_tcp(
        mqtt_listener,
        ctx.clone(),
        tasks.clone(),
    ));
    tasks.spawn(crate::mqtt::takeover::run(ctx.clone()));
    tasks.spawn(crate::mqtt::orphans::run(ctx.clone()));
    if cfg.sys_interval_ms > 0 {
        tasks.spawn(crate::mqtt::sys::run(
            ctx.clone(),
            Duration::from_millis(cfg.sys_interval_ms),
        ));
    }
    if let Some((listener, acceptor)) = tls {
        tasks.spawn(crate::mqtt::tls::serve_tls(
            listener,
            acceptor,
            ctx.clone(),
            tasks.clone(),
        ));
    }
    if let Some(listener) = ws {
        tasks.spawn(crate::mqtt::ws::serve_ws(
            listener,
            None,
            ctx.clone(),
            tasks.clone(),
        ));
    }
    if let Some((listener, acceptor)) = wss {
        tasks.spawn(crate::mqtt::ws::serve_ws(
            listener,
            Some(acceptor),
            ctx.clone(),
            tasks.clone(),
        ));
    }
    let ready = Arc::new(AtomicBool::new(true));
    tasks.spawn(admin::serve(
        admin_listener,
        AdminState {
            ctx: ctx.clone(),
            kafka: kafka_ctx,
            ready: ready.clone(),
        },
        cancel.clone(),
    ));
    let r = ready.clone();
    let c = cancel.clone();
    tasks.spawn(async move {
        c.cancelled().await;
        r.store(false, Ordering::Release);
    });
    Ok(RunningBroker {
        mqtt_addr,
        mqtt_tls_addr,
        mqtt_ws_addr,
        mqtt_wss_addr,
        admin_addr,
        kafka_addr,
        kafka_tls_addr,
        ctx,
        tasks,
    })
}

/// The host Kafka clients are sent to: the configured one, else the listener's IP, else
/// (listening on every interface) this machine's name.
fn advertised_host(cfg: &BrokerConfig, listen: Option<SocketAddr>) -> String {
    if !cfg.advertised_host.is_empty() {
        return cfg.advertised_host.clone();
    }
    match listen {
        Some(a) if !a.ip().is_unspecified() => a.ip().to_string(),
        _ => gethostname::gethostname().to_string_lossy().into_owned(),
    }
}

/// Binds a listener, naming the config key when it fails (e.g. the port is taken).
pub async fn bind(key: &'static str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::Startup {
            what: key,
            reason: format!("binding {addr}: {e}"),
        })
}

/// Parses a socket address, naming the key when it is wrong.
pub fn parse_addr(key: &str, v: &str) -> Result<SocketAddr> {
    v.parse()
        .map_err(|e| BrokerError::Config(format!("{key}: {v:?}: {e}")))
}

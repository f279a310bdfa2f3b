//! The MQTT server, in layers:
//!
//! ```text
//! listener    accepts sockets (TCP; TLS in `tls`; WebSocket and WSS in `ws`)
//! connection  the only code that touches bytes: framing with mqtt-codec, buffers
//! session     one client's state and its event loop (packets in, deliveries out,
//!             keep alive, takeover)
//! handlers/   one file per packet kind
//! dispatch    tails the shards that bindings map to and hands matching records to
//!             sessions; ingest stores publishes through the appender
//! ```
//!
//! Delivery goes through storage: a PUBLISH is appended to the shard its topic is bound
//! to, and every broker's dispatcher tails those shards and delivers what matches the
//! subscriptions of its own sessions (what a broker appended itself reaches its dispatcher
//! straight from the appender, without being read back). A persistent session remembers, per shard, the next
//! offset it has not finished, and resumes from there on any broker.

pub mod acl;
pub mod alias;
pub mod connection;
pub mod dispatch;
pub mod handlers;
pub mod ingest;
pub mod listener;
pub mod orphans;
pub mod outbound;
pub mod registry;
pub mod saver;
pub mod session;
pub mod share;
pub mod share_behind;
pub mod share_unfinished;
pub mod state;
pub mod sys;
pub mod takeover;
pub mod tls;
pub mod will;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::MqttLimits;
use crate::meta::{MetaClient, TopicRoutes};
use crate::storage::StorageAdapter;
use crate::storage::appender::Appender;

/// Counters shown on `/metrics` (and later on `$SYS`).
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub connects_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub malformed_packets: AtomicU64,
}

impl Stats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything a connection needs from the rest of the broker. Cheap to share.
pub struct Context {
    pub node_id: u64,
    pub limits: MqttLimits,
    pub allow_anonymous: bool,
    pub acl: acl::Acl,
    pub meta: MetaClient,
    /// Session writes to meta, batched.
    pub saver: Arc<saver::SessionSaver>,
    pub routes: TopicRoutes,
    pub storage: Arc<dyn StorageAdapter>,
    pub appender: Appender,
    pub dispatcher: Arc<dispatch::Dispatcher>,
    pub share: Arc<share::ShareGroups>,
    pub registry: registry::Registry,
    pub connections: Arc<Semaphore>,
    pub stats: Stats,
    pub cancel: CancellationToken,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

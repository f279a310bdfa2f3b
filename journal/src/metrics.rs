//! Prometheus metrics of a journal node, rendered as text on the admin port's `/metrics`.
//! Counters and histograms are updated on the data path; the shard count and disk bytes
//! are gauges refreshed from the shard registry at scrape time.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::EngineHooks;
use crate::registry::ShardManager;

/// Error counts are labelled by RPC and error kind (`JournalError::kind`).
pub type ErrorLabels = Vec<(String, String)>;

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    pub append_bytes: Counter,
    pub append_batches: Counter,
    pub read_bytes: Counter,
    pub read_requests: Counter,
    pub append_seconds: Histogram,
    pub read_seconds: Histogram,
    pub fsync_seconds: Histogram,
    pub errors: Family<ErrorLabels, Counter>,
    shards: Gauge,
    disk_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("journal");
        // 50 µs .. ~13 s: fsyncs and appends on slow disks both fit.
        let buckets = || exponential_buckets(0.00005, 2.0, 19);
        let m = Metrics {
            append_bytes: Counter::default(),
            append_batches: Counter::default(),
            read_bytes: Counter::default(),
            read_requests: Counter::default(),
            append_seconds: Histogram::new(buckets()),
            read_seconds: Histogram::new(buckets()),
            fsync_seconds: Histogram::new(buckets()),
            errors: Family::default(),
            shards: Gauge::default(),
            disk_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "append_bytes",
            "Bytes of batches appended",
            m.append_bytes.clone(),
        );
        registry.register(
            "append_batches",
            "Batches appended",
            m.append_batches.clone(),
        );
        registry.register(
            "read_bytes",
            "Bytes of batches served to readers",
            m.read_bytes.clone(),
        );
        registry.register(
            "read_requests",
            "Read RPCs accepted (a long poll counts once)",
            m.read_requests.clone(),
        );
        registry.register(
            "append_latency_seconds",
            "Append RPC latency, until the batches are committed",
            m.append_seconds.clone(),
        );
        registry.register(
            "read_latency_seconds",
            "Latency of a Read call's first read from storage (long-poll waits not counted)",
            m.read_seconds.clone(),
        );
        registry.register(
            "fsync_latency_seconds",
            "Latency of one fdatasync of a segment file",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "errors",
            "Errors returned, by RPC and kind",
            m.errors.clone(),
        );
        registry.register("shards", "Shards held by this node", m.shards.clone());
        registry.register(
            "disk_bytes",
            "Bytes of segment data on disk",
            m.disk_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The hooks engines report to.
    pub fn engine_hooks(&self) -> EngineHooks {
        EngineHooks {
            fsync_seconds: Some(self.fsync_seconds.clone()),
        }
    }

    pub fn error(&self, rpc: &str, kind: &str) {
        self.errors
            .get_or_create(&vec![
                ("rpc".to_string(), rpc.to_string()),
                ("kind".to_string(), kind.to_string()),
            ])
            .inc();
    }

    /// Refreshes the gauges and renders the text exposition format.
    pub fn render(&self, shards: &ShardManager) -> String {
        self.shards.set(shards.list().len() as i64);
        self.disk_bytes.set(shards.disk_bytes() as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

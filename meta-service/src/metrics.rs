//! Prometheus metrics of a meta node: Raft progress (sampled at scrape time), proposal
//! latency and batch size, and gRPC requests by method and status code.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub term: Gauge,
    pub leader_id: Gauge,
    pub is_leader: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    pub last_log_index: Gauge,
    pub revision: Gauge,
    proposal_seconds: Histogram,
    proposal_batch: Histogram,
    grpc_requests: Family<Labels, Counter>,
    grpc_seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("robustmq_meta")),
            term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            revision: Gauge::default(),
            proposal_seconds: latency_histogram(),
            proposal_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            grpc_requests: Family::default(),
            grpc_seconds: Family::new_with_constructor(latency_histogram),
        };
        {
            let mut r = m.registry.lock().expect("registry lock");
            r.register("raft_term", "Current Raft term", m.term.clone());
            r.register(
                "raft_leader_id",
                "Id of the known leader (0: none)",
                m.leader_id.clone(),
            );
            r.register(
                "raft_is_leader",
                "1 when this node is the leader",
                m.is_leader.clone(),
            );
            r.register(
                "raft_commit_index",
                "Highest log index known committed",
                m.commit_index.clone(),
            );
            r.register(
                "raft_applied_index",
                "Highest log index applied",
                m.applied_index.clone(),
            );
            r.register(
                "raft_last_log_index",
                "Highest log index stored",
                m.last_log_index.clone(),
            );
            r.register(
                "store_revision",
                "Revision of the key space",
                m.revision.clone(),
            );
            r.register(
                "proposal_duration_seconds",
                "Time from proposing a batch to its result",
                m.proposal_seconds.clone(),
            );
            r.register(
                "proposal_batch_commands",
                "Commands per proposed batch",
                m.proposal_batch.clone(),
            );
            r.register(
                "grpc_requests",
                "gRPC requests by method and code",
                m.grpc_requests.clone(),
            );
            r.register(
                "grpc_request_duration_seconds",
                "gRPC request latency by method",
                m.grpc_seconds.clone(),
            );
        }
        m
    }

    pub fn observe_proposal(&self, took: Duration, commands: usize) {
        self.proposal_seconds.observe(took.as_secs_f64());
        self.proposal_batch.observe(commands as f64);
    }

    pub fn observe_grpc(&self, method: &str, code: &str, took: Duration) {
        self.grpc_requests
            .get_or_create(&vec![
                ("method".to_string(), method.to_string()),
                ("code".to_string(), code.to_string()),
            ])
            .inc();
        self.grpc_seconds
            .get_or_create(&vec![("method".to_string(), method.to_string())])
            .observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("registry lock");
        let _ = encode(&mut out, &registry);
        out
    }
}

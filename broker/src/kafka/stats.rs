//! What the Kafka server counts for the admin port's `/metrics`: live connections,
//! requests and the time spent answering them by API, record bytes produced (stored) and
//! fetched (sent), and connections closed for a bad frame.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// API keys are small integers; anything at or above this is never served.
const API_KEYS: usize = 128;

#[derive(Default)]
struct PerApi {
    requests: AtomicU64,
    micros: AtomicU64,
}

/// Counters shared by every Kafka connection of this broker.
pub struct KafkaStats {
    connections: AtomicU64,
    connections_total: AtomicU64,
    per_api: Vec<PerApi>,
    produced_bytes: AtomicU64,
    fetched_bytes: AtomicU64,
    refused: AtomicU64,
}

impl Default for KafkaStats {
    fn default() -> Self {
        KafkaStats {
            connections: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            per_api: (0..API_KEYS).map(|_| PerApi::default()).collect(),
            produced_bytes: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// Counts one live connection until dropped.
pub struct ConnectionGuard<'a>(&'a KafkaStats);

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl KafkaStats {
    pub fn connected(&self) -> ConnectionGuard<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self)
    }

    /// One request of `api` answered (or dropped, for acks=0) after `took`.
    pub fn request(&self, api: ApiKey, took: Duration) {
        if let Some(c) = self.per_api.get(api as i16 as usize) {
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.micros
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        }
    }

    pub fn produced(&self, bytes: usize) {
        self.produced_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn fetched(&self, bytes: usize) {
        self.fetched_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A connection closed because of a malformed, oversized or unsupported frame.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of every counter; APIs never called are left out.
    pub fn render(&self, out: &mut String) {
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        for (name, kind, value) in [
            ("robustmq_kafka_connections", "gauge", g(&self.connections)),
            (
                "robustmq_kafka_connections_total",
                "counter",
                g(&self.connections_total),
            ),
            (
                "robustmq_kafka_produced_bytes_total",
                "counter",
                g(&self.produced_bytes),
            ),
            (
                "robustmq_kafka_fetched_bytes_total",
                "counter",
                g(&self.fetched_bytes),
            ),
            (
                "robustmq_kafka_refused_connections_total",
                "counter",
                g(&self.refused),
            ),
        ] {
            crate::admin::sample(out, name, kind, value);
        }
        let called: Vec<(ApiKey, u64, u64)> = self
            .per_api
            .iter()
            .enumerate()
            .filter_map(|(key, c)| {
                let api = ApiKey::try_from(key as i16).ok()?;
                let n = g(&c.requests);
                (n > 0).then(|| (api, n, g(&c.micros)))
            })
            .collect();
        out.push_str("# TYPE robustmq_kafka_requests_total counter\n");
        for (api, n, _) in &called {
            let _ = writeln!(out, "robustmq_kafka_requests_total{{api=\"{api:?}\"}} {n}");
        }
        out.push_str("# TYPE robustmq_kafka_request_seconds summary\n");
        for (api, n, micros) in &called {
            let _ = writeln!(
                out,
                "robustmq_kafka_request_seconds_sum{{api=\"{api:?}\"}} {}\n\
                 robustmq_kafka_request_seconds_count{{api=\"{api:?}\"}} {n}",
                *micros as f64 / 1e6
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_connections_bytes_and_only_the_apis_called() {
        let s = KafkaStats::default();
        let guard = s.connected();
        s.request(ApiKey::Fetch, Duration::from_millis(1500));
        s.request(ApiKey::Fetch, Duration::from_millis(500));
        s.produced(100);
        s.fetched(250);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("robustmq_kafka_connections 1\n"), "{out}");
        assert!(
            out.contains("robustmq_kafka_requests_total{api=\"Fetch\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("robustmq_kafka_request_seconds_sum{api=\"Fetch\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("robustmq_kafka_produced_bytes_total 100\n"),
            "{out}"
        );
        assert!(
            out.contains("robustmq_kafka_fetched_bytes_total 250\n"),
            "{out}"
        );
        assert!(
            !out.contains("Produce\""),
            "an API never called is listed: {out}"
        );
        drop(guard);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("robustmq_kafka_connections 0\n"), "{out}");
        assert!(
            out.contains("robustmq_kafka_connections_total 1\n"),
            "{out}"
        );
    }
}

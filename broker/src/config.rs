//! The broker's configuration: one YAML file (`--config`), every key overridable by a flag
//! or a `ROBUSTMQ_BROKER_*` environment variable. Validated at start-up; the error names
//! the bad key.

use std::path::PathBuf;

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, Result};

/// Limits enforced on MQTT clients, each with its protocol reason code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttLimits {
    /// Live connections per broker; more get CONNACK 0x97 (quota exceeded) / 3 (v3).
    pub max_connections: usize,
    /// Largest packet accepted; larger ones close the connection with 0x95.
    pub max_packet_size: u32,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement per session.
    pub max_inflight: u16,
    /// Incoming QoS 2 packets awaiting PUBREL (sent as Receive Maximum).
    pub receive_maximum: u16,
    /// Subscriptions per session; more get 0x97.
    pub max_subscriptions: usize,
    /// Levels in a topic name or filter; more get 0x90 / 0x8F.
    pub max_topic_levels: usize,
    /// Topic aliases a client may set (Topic Alias Maximum in CONNACK).
    pub topic_alias_maximum: u16,
    /// Topic aliases the broker uses towards a client, at most the client's own Topic
    /// Alias Maximum; 0 turns outgoing aliases off (for clients that announce a maximum
    /// but cannot resolve aliases, such as libmosquitto 2.0's `mosquitto_sub -D connect
    /// topic-alias-maximum N`).
    pub topic_alias_out: u16,
    /// Largest keep alive accepted, seconds; a larger request is lowered (Server Keep Alive).
    pub max_keep_alive: u16,
    /// Largest session expiry granted, seconds.
    pub max_session_expiry: u32,
    /// Messages queued for one connection before QoS 0 messages are dropped.
    pub max_queued: usize,
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits {
            max_connections: 100_000,
            max_packet_size: 1024 * 1024,
            max_inflight: 64,
            receive_maximum: 64,
            max_subscriptions: 256,
            max_topic_levels: 32,
            topic_alias_maximum: 64,
            topic_alias_out: 64,
            max_keep_alive: 3600,
            max_session_expiry: 7 * 24 * 3600,
            max_queued: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// This broker's node id in meta.
    pub node_id: u64,
    /// Meta-service gRPC address(es), comma-separated; the first is used.
    pub meta: String,
    pub mqtt_addr: String,
    /// MQTT over TLS (needs `tls_cert` and `tls_key`); empty: not served.
    pub mqtt_tls_addr: String,
    /// MQTT over WebSocket (subprotocol `mqtt`); empty: not served.
    pub mqtt_ws_addr: String,
    /// MQTT over WebSocket over TLS (needs `tls_cert` and `tls_key`); empty: not served.
    pub mqtt_wss_addr: String,
    pub admin_addr: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Accept clients without a username.
    pub allow_anonymous: bool,
    /// Whether an action no ACL rule matches is allowed (rules from meta; deny rules win).
    pub acl_allow_if_no_match: bool,
    /// How often ACL rules are re-read from meta.
    pub acl_refresh_ms: u64,
    pub lease_ttl_ms: u32,
    /// How often `$SYS/brokers/{node_id}/...` statistics are published; 0 turns them off.
    pub sys_interval_ms: u64,
    /// How often topic bindings are re-read from meta.
    pub topic_refresh_ms: u64,
    pub limits: MqttLimits,
    /// Kafka listener; empty: not served.
    pub kafka_addr: String,
    /// Kafka over TLS (needs `tls_cert` and `tls_key`); empty: not served.
    pub kafka_tls_addr: String,
    /// The host Kafka clients are told to connect to; empty: the listener's IP, or this
    /// machine's hostname when it listens on every interface.
    pub advertised_host: String,
    pub kafka: crate::kafka::KafkaSettings,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            meta: "127.0.0.1:1228".into(),
            mqtt_addr: "0.0.0.0:1883".into(),
            mqtt_tls_addr: String::new(),
            mqtt_ws_addr: String::new(),
            mqtt_wss_addr: String::new(),
            admin_addr: "0.0.0.0:8080".into(),
            tls_cert: None,
            tls_key: None,
            allow_anonymous: true,
            acl_allow_if_no_match: true,
            acl_refresh_ms: 1000,
            lease_ttl_ms: 10_000,
            sys_interval_ms: 5000,
            topic_refresh_ms: 1000,
            limits: MqttLimits::default(),
            kafka_addr: "0.0.0.0:9092".into(),
            kafka_tls_addr: String::new(),
            advertised_host: String::new(),
            kafka: crate::kafka::KafkaSettings::default(),
        }
    }
}

/// Flags of `robustmq-broker`; each also reads `ROBUSTMQ_BROKER_<NAME>`.
#[derive(Debug, Parser, Default)]
#[command(name = "robustmq-broker", about = "RobustMQ stateless MQTT broker")]
pub struct BrokerArgs {
    /// YAML configuration file.
    #[arg(long, env = "ROBUSTMQ_BROKER_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "ROBUSTMQ_BROKER_NODE_ID")]
    pub node_id: Option<u64>,
    /// Meta-service gRPC address.
    #[arg(long, env = "ROBUSTMQ_BROKER_META")]
    pub meta: Option<String>,
    #[arg(long, env = "ROBUSTMQ_BROKER_MQTT_ADDR")]
    pub mqtt_addr: Option<String>,
    #[arg(long, env = "ROBUSTMQ_BROKER_MQTT_TLS_ADDR")]
    pub mqtt_tls_addr: Option<String>,
    #[arg(long, env = "ROBUSTMQ_BROKER_MQTT_WS_ADDR")]
    pub mqtt_ws_addr: Option<String>,
    #[arg(long, env = "ROBUSTMQ_BROKER_MQTT_WSS_ADDR")]
    pub mqtt_wss_addr: Option<String>,
    #[arg(long, env = "ROBUSTMQ_BROKER_ADMIN_ADDR")]
    pub admin_addr: Option<String>,
    #[arg(long, env = "ROBUSTMQ_BROKER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "ROBUSTMQ_BROKER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// true|false: accept clients without credentials.
    #[arg(long, env = "ROBUSTMQ_BROKER_ALLOW_ANONYMOUS")]
    pub allow_anonymous: Option<bool>,
    #[arg(long, env = "ROBUSTMQ_BROKER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    #[arg(long, env = "ROBUSTMQ_BROKER_MAX_PACKET_SIZE")]
    pub max_packet_size: Option<u32>,
    /// Kafka listener (host:port); an empty string turns it off.
    #[arg(long, env = "ROBUSTMQ_BROKER_KAFKA_ADDR")]
    pub kafka_addr: Option<String>,
    /// Kafka over TLS listener (needs --tls-cert and --tls-key).
    #[arg(long, env = "ROBUSTMQ_BROKER_KAFKA_TLS_ADDR")]
    pub kafka_tls_addr: Option<String>,
    /// Host name Kafka clients are given for this broker.
    #[arg(long, env = "ROBUSTMQ_BROKER_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// true|false: create unknown topics a Kafka client asks Metadata for.
    #[arg(long, env = "ROBUSTMQ_BROKER_KAFKA_AUTO_CREATE_TOPICS")]
    pub kafka_auto_create_topics: Option<bool>,
    /// Storage policy of topics created by Kafka clients.
    #[arg(long, env = "ROBUSTMQ_BROKER_DEFAULT_STORAGE_POLICY")]
    pub default_storage_policy: Option<String>,
    /// Print the default configuration as YAML and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

impl BrokerConfig {
    /// File (if any), then flags and env on top, then validation.
    pub fn load(args: &BrokerArgs) -> Result<Self> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| BrokerError::Config(format!("reading {}: {e}", path.display())))?;
                serde_yaml::from_str(&text)
                    .map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))?
            }
            None => BrokerConfig::default(),
        };
        cfg.apply(args);
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply(&mut self, a: &BrokerArgs) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut self.node_id, &a.node_id);
        set(&mut self.meta, &a.meta);
        set(&mut self.mqtt_addr, &a.mqtt_addr);
        set(&mut self.mqtt_tls_addr, &a.mqtt_tls_addr);
        set(&mut self.mqtt_ws_addr, &a.mqtt_ws_addr);
        set(&mut self.mqtt_wss_addr, &a.mqtt_wss_addr);
        set(&mut self.admin_addr, &a.admin_addr);
        set(&mut self.allow_anonymous, &a.allow_anonymous);
        set(&mut self.limits.max_connections, &a.max_connections);
        set(&mut self.limits.max_packet_size, &a.max_packet_size);
        set(&mut self.kafka_addr, &a.kafka_addr);
        set(&mut self.kafka_tls_addr, &a.kafka_tls_addr);
        set(&mut self.advertised_host, &a.advertised_host);
        set(
            &mut self.kafka.auto_create_topics,
            &a.kafka_auto_create_topics,
        );
        if a.tls_cert.is_some() {
            self.tls_cert = a.tls_cert.clone();
        }
        if a.tls_key.is_some() {
            self.tls_key = a.tls_key.clone();
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, why: &str| Err(BrokerError::Config(format!("{k}: {why}")));
        if self.node_id == 0 {
            return bad("node_id", "must be > 0");
        }
        if self.mqtt_addr.parse::<std::net::SocketAddr>().is_err() {
            return bad("mqtt_addr", "not a host:port socket address");
        }
        if self.admin_addr.parse::<std::net::SocketAddr>().is_err() {
            return bad("admin_addr", "not a host:port socket address");
        }
        if !self.mqtt_tls_addr.is_empty() {
            if self.mqtt_tls_addr.parse::<std::net::SocketAddr>().is_err() {
                return bad("mqtt_tls_addr", "not a host:port socket address");
            }
            if self.tls_cert.is_none() || self.tls_key.is_none() {
                return bad("mqtt_tls_addr", "needs tls_cert and tls_key (PEM files)");
            }
        }
        for (k, v) in [
            ("mqtt_ws_addr", &self.mqtt_ws_addr),
            ("mqtt_wss_addr", &self.mqtt_wss_addr),
            ("kafka_addr", &self.kafka_addr),
            ("kafka_tls_addr", &self.kafka_tls_addr),
        ] {
            if !v.is_empty() && v.parse::<std::net::SocketAddr>().is_err() {
                return bad(k, "not a host:port socket address");
            }
        }
        for (k, v) in [
            ("mqtt_wss_addr", &self.mqtt_wss_addr),
            ("kafka_tls_addr", &self.kafka_tls_addr),
        ] {
            if !v.is_empty() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
                return bad(k, "needs tls_cert and tls_key (PEM files)");
            }
        }
        if self.node_id > i32::MAX as u64
            && !(self.kafka_addr.is_empty() && self.kafka_tls_addr.is_empty())
        {
            return bad("node_id", "must fit a Kafka broker id (at most 2147483647)");
        }
        let k = &self.kafka;
        if k.default_partitions == 0 || k.max_connections == 0 {
            return bad(
                "kafka",
                "default_partitions and max_connections must be > 0",
            );
        }
        if k.max_message_bytes < 1024 || k.max_request_size < k.max_message_bytes {
            return bad(
                "kafka",
                "max_message_bytes must be >= 1024 and max_request_size >= max_message_bytes",
            );
        }
        let l = &self.limits;
        if l.max_packet_size < 64 {
            return bad("limits.max_packet_size", "must be >= 64");
        }
        if l.max_inflight == 0 || l.receive_maximum == 0 {
            return bad("limits.max_inflight / receive_maximum", "must be > 0");
        }
        if l.max_connections == 0 || l.max_subscriptions == 0 || l.max_topic_levels == 0 {
            return bad(
                "limits",
                "max_connections, max_subscriptions and max_topic_levels must be > 0",
            );
        }
        Ok(())
    }

    pub fn default_yaml() -> String {
        serde_yaml::to_string(&BrokerConfig::default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.yaml");
        std::fs::write(&path, "node_id: 7\nlimits:\n  max_inflight: 5\n").unwrap();
        let args = BrokerArgs {
            config: Some(path.clone()),
            mqtt_addr: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let cfg = BrokerConfig::load(&args).unwrap();
        assert_eq!((cfg.node_id, cfg.limits.max_inflight), (7, 5));
        assert_eq!(cfg.mqtt_addr, "127.0.0.1:0");

        std::fs::write(&path, "node_id: 0\n").unwrap();
        let err = BrokerConfig::load(&args).unwrap_err().to_string();
        assert!(err.contains("node_id"), "{err}");
        std::fs::write(&path, "nodeid: 3\n").unwrap();
        let err = BrokerConfig::load(&args).unwrap_err().to_string();
        assert!(err.contains("nodeid"), "{err}");
    }
}

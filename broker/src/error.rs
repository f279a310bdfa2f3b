//! The broker library's error type. Converted to the wire in one place per protocol
//! (`mqtt::reason` for MQTT reason codes).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("meta-service call {call} failed: {status}")]
    Meta {
        call: &'static str,
        #[source]
        status: tonic::Status,
    },
    #[error("cannot reach meta-service at {addr}: {source}")]
    MetaConnect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("storage error on {topic}/{shard}: {reason}")]
    Storage {
        topic: String,
        shard: u32,
        reason: String,
    },
    #[error("no topic binds MQTT topic {mqtt_topic:?}")]
    NoBinding { mqtt_topic: String },
    #[error("invalid record batch: {0}")]
    BadRecord(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("starting {what}: {reason}")]
    Startup { what: &'static str, reason: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl BrokerError {
    pub fn meta(call: &'static str, status: tonic::Status) -> Self {
        BrokerError::Meta { call, status }
    }

    pub fn storage(topic: &str, shard: u32, reason: impl std::fmt::Display) -> Self {
        BrokerError::Storage {
            topic: topic.to_string(),
            shard,
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

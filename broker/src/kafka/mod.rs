//! The Kafka protocol server: listener → connection (framing, `kafka-protocol` codec) →
//! handlers per API, over the same [`crate::storage::StorageAdapter`] and meta-service as
//! MQTT.
//!
//! - [`group`]: the consumer-group coordinator (JoinGroup … DeleteGroups, offsets in meta).
//! - [`sasl`]: SASL PLAIN and SCRAM-SHA-256/512 against the users in meta.

pub mod group;
pub mod sasl;

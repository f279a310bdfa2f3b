//! RobustMQ broker: stateless compute that speaks MQTT to clients and keeps nothing but
//! live connections and caches. Messages travel through the storage tier ("storage as
//! the bus"); metadata, sessions, retained messages, users and ACLs live in meta.
//!
//! - [`config`]: the typed configuration (YAML file, env, flags) and its limits.
//! - [`storage`]: the [`storage::StorageAdapter`] trait (append, read, offsets), the
//!   record format MQTT publishes are stored in, and its two implementations (in-process
//!   journal engines, journal gRPC client).
//! - [`meta`]: the meta-service client wrapper, node registration and the topic cache
//!   that routes an MQTT topic to a (topic, shard).
//! - [`mqtt`]: the MQTT server: listener → connection → session → handlers.
//! - [`server`]: wires one broker together; [`standalone`] runs every tier in one process.

pub mod admin;
pub mod config;
pub mod error;
pub mod freshness;
pub mod kafka;
pub mod meta;
pub mod mqtt;
pub mod runtime;
pub mod server;
pub mod signal;
pub mod standalone;
pub mod storage;

pub use error::{BrokerError, Result};

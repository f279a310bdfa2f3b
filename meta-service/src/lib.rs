//! RobustMQ meta-service: the Raft-replicated (openraft + sled) store of cluster metadata,
//! scheduling, consumer offsets and MQTT sessions, served over tonic gRPC.
//!
//! Layers, outermost first:
//! - [`server`] wires listeners, Raft and background tasks, and shuts them down.
//! - [`grpc`] is the public `MetaService`; [`raft::service`] the internal Raft transport.
//! - [`node`] routes writes (batched by [`proposer`], forwarded to the leader when needed)
//!   and linearizable reads.
//! - [`raft`] holds the openraft type config, the sled log store and state machine.
//! - [`store`] is the deterministic state and its apply logic, free of I/O.

pub mod admin;
pub mod config;
pub mod credentials;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod proposer;
pub mod raft;
pub mod server;
pub mod store;
pub mod watch;

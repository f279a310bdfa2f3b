//! End-to-end test support: [`harness`] starts the real RobustMQ binaries on free loopback
//! ports, waits until they are ready, kills and restarts them, and keeps their logs when a
//! test fails; [`meta`] builds meta-service clusters on top of it; [`bench`] runs the
//! on-demand benchmarks (`robustmq-bench`) on the same harness; [`robustmq`] launches
//! standalone and split deployments; [`kafka`] runs the Kafka scenarios' servers (RobustMQ
//! or Apache Kafka) and real Kafka clients.

pub mod bench;
pub mod harness;
pub mod kafka;
pub mod kube;
pub mod meta;
pub mod robustmq;

//! End-to-end test support: [`harness`] starts the real RobustMQ binaries on free loopback
//! ports, waits until they are ready, kills and restarts them, and keeps their logs when a
//! test fails; [`meta`] builds meta-service clusters on top of it; [`bench`] runs the
//! on-demand benchmarks (`robustmq-bench`) on the same harness.

pub mod bench;
pub mod harness;
pub mod kube;
pub mod meta;

//! On-demand benchmarks of RobustMQ against its peers, one mode per protocol (`mqtt`,
//! and [`kafka`] with Apache Kafka's own perf tools). Not run in CI.
//!
//! Every mode uses the same pieces: [`peer`] starts each broker as a child process on
//! loopback with free ports and a data directory of its own and stops it by its pid;
//! [`histogram`] records latencies; [`cpu`] reads how much CPU the generator and the
//! broker used, which is how a run shows that the generator was not the bottleneck;
//! [`table`] prints the results as Markdown for `docs/benchmarks.md`.

pub mod cpu;
pub mod histogram;
pub mod kafka;
pub mod mqtt;
pub mod peer;
pub mod table;

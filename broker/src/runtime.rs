//! The tokio runtime the broker binaries (`robustmq-broker`, `robustmq standalone`) run on.
//!
//! A broker has thousands of connection tasks, and a single dispatched batch wakes
//! hundreds of them at once. A tokio worker's local run queue holds 256 tasks; the rest
//! spill to the shared queue, which a busy worker looks at only every
//! `global_queue_interval` polls. With tokio's default the spilled tasks waited while the
//! local ones were served again and again: measured with `robustmq-bench mqtt` (broker on
//! one core, 500 pairs at QoS 1) the p50 was 5 ms and the p99 125 ms. Looking at the
//! shared queue every 2nd poll serves them in turn (p99 72 ms, fan-in at QoS 0 103 -> 30
//! ms) at no measurable throughput cost; every poll (1) narrowed the tail further (35 ms) but cost 17%
//! of the QoS 0 pairs' throughput.

use std::io;

/// The environment variable that overrides the interval (0: tokio's own default).
pub const GLOBAL_QUEUE_INTERVAL_ENV: &str = "ROBUSTMQ_GLOBAL_QUEUE_INTERVAL";
const GLOBAL_QUEUE_INTERVAL: u32 = 2;

/// A multi-thread runtime with every driver enabled and the fairness setting above.
pub fn build() -> io::Result<tokio::runtime::Runtime> {
    let interval = match std::env::var(GLOBAL_QUEUE_INTERVAL_ENV) {
        Ok(v) => v.trim().parse::<u32>().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{GLOBAL_QUEUE_INTERVAL_ENV}={v:?}: {e}"),
            )
        })?,
        Err(_) => GLOBAL_QUEUE_INTERVAL,
    };
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if interval > 0 {
        b.global_queue_interval(interval);
    }
    b.build()
}

//! CPU time of a process (all its threads, user + system) from `/proc/<pid>/stat`, and
//! the time its threads spent runnable but waiting for a CPU (`/proc/<pid>/task/*/schedstat`),
//! so a benchmark can say how busy the load generator and the broker were, and how much
//! other work on the machine held them back.

use std::sync::OnceLock;

use anyhow::{Context, Result};

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime in seconds from the text of a `/proc/<pid>/stat` file. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<f64> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second())
}

/// CPU seconds used so far by `pid` (`None`: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}: {text}"))
}

/// Seconds the threads of `pid` (`None`: this process) have spent waiting on a run
/// queue: runnable, but another task had the CPU. Summed over the live threads (the
/// second field of each thread's `schedstat`, in ns); threads that already exited are
/// not counted.
pub fn run_queue_wait_seconds(pid: Option<u32>) -> Result<f64> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut ns = 0u64;
    for t in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let path = t?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        ns += parse_schedstat_wait(&text)
            .with_context(|| format!("parsing {}: {text}", path.display()))?;
    }
    Ok(ns as f64 / 1e9)
}

/// The run-queue wait (ns) of a `schedstat` line: "cpu_ns wait_ns timeslices".
pub fn parse_schedstat_wait(text: &str) -> Option<u64> {
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 9 0 1234 56789 123 18446744073709551615";
        let secs = parse_stat(text).expect("parses");
        assert!((secs - 300.0 / ticks_per_second()).abs() < 1e-9, "{secs}");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn schedstat_wait_is_the_second_field() {
        assert_eq!(parse_schedstat_wait("123456 7890 12\n"), Some(7890));
        assert_eq!(parse_schedstat_wait("123456"), None);
        assert!(run_queue_wait_seconds(None).expect("own schedstat") >= 0.0);
    }

    #[test]
    fn own_cpu_time_grows_while_spinning() {
        let before = cpu_seconds(None).expect("read own stat");
        // Spin until the kernel has charged a few ticks, bounded in time: on a busy
        // machine this thread may get only part of a core.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after < before + 0.03 && start.elapsed().as_secs() < 10 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            after = cpu_seconds(None).expect("read own stat");
        }
        assert!(after >= before + 0.03, "cpu time {before} -> {after}");
    }
}

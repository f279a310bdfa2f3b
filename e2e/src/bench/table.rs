//! Result tables: one row per (scenario, peer), printed as Markdown with throughput and
//! latency per peer and the ratios of a reference peer to each other peer, ready to paste
//! into `docs/benchmarks.md`.

use std::fmt::Write as _;

/// One peer's figures in one scenario.
#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: String,
    pub peer: String,
    /// Messages received by subscribers per second.
    pub msgs_per_sec: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Deliveries owed but never received, and duplicate or out-of-order copies.
    pub lost: u64,
    pub duplicates: u64,
    /// CPU used during the measured window, in cores (CPU seconds / wall seconds).
    pub gen_cores: f64,
    /// Time runnable but waiting for a CPU during the window, per wall second (summed
    /// over threads): what other work on the machine took from the process.
    pub gen_waiting: f64,
    pub broker_cores: Option<f64>,
    pub broker_waiting: Option<f64>,
    /// A failed run: why. The figures are then zero.
    pub error: Option<String>,
}

impl Row {
    /// Broker CPU per message received, microseconds: a figure that depends less on how
    /// much of the machine the broker got than msg/s does.
    pub fn broker_cpu_per_msg_us(&self) -> Option<f64> {
        let cores = self.broker_cores?;
        (self.msgs_per_sec > 0.0).then(|| cores * 1e6 / self.msgs_per_sec)
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "-".into(),
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `reference / other` for throughput (higher is better for the reference) and
/// `other / reference` for p99 (above 1: the reference's p99 is lower).
fn ratio(num: f64, den: f64) -> String {
    if den > 0.0 && num > 0.0 {
        format!("{:.2}x", num / den)
    } else {
        "-".into()
    }
}

/// One Markdown table per scenario, in the order the scenarios first appear, then a
/// summary of ratios of `reference` against every other peer.
pub fn markdown(rows: &[Row], reference: &str) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    let mut out = String::new();
    let mut others: Vec<&str> = Vec::new();
    for r in rows {
        if r.peer != reference && !others.contains(&r.peer.as_str()) {
            others.push(&r.peer);
        }
    }
    for sc in &scenarios {
        let _ = writeln!(out, "#### {sc}\n");
        let _ = writeln!(
            out,
            "| broker | msg/s | p50 ms | p99 ms | lost | dup | generator cores (waiting) | broker cores (waiting) | broker CPU us/msg |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in rows.iter().filter(|r| r.scenario == *sc) {
            if let Some(e) = &r.error {
                let _ = writeln!(out, "| {} | failed: {e} | | | | | | | |", r.peer);
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.2} ({:.2}) | {} | {} |",
                r.peer,
                thousands(r.msgs_per_sec),
                ms(r.p50_ms),
                ms(r.p99_ms),
                r.lost,
                r.duplicates,
                r.gen_cores,
                r.gen_waiting,
                match (r.broker_cores, r.broker_waiting) {
                    (Some(c), Some(w)) => format!("{c:.2} ({w:.2})"),
                    _ => "-".into(),
                },
                r.broker_cpu_per_msg_us()
                    .map_or("-".into(), |u| format!("{u:.1}")),
            );
        }
        out.push('\n');
    }
    if !others.is_empty() {
        let _ = write!(out, "#### Ratios ({reference} / other)\n\n| scenario |");
        for o in &others {
            let _ = write!(
                out,
                " msg/s vs {o} | p99 {o} / {reference} | CPU/msg {o} / {reference} |"
            );
        }
        let _ = write!(out, "\n|---|");
        for _ in &others {
            out.push_str("---:|---:|---:|");
        }
        out.push('\n');
        let ok = |sc: &str, peer: &str| {
            rows.iter()
                .find(|r| r.scenario == sc && r.peer == peer && r.error.is_none())
        };
        for sc in &scenarios {
            let _ = write!(out, "| {sc} |");
            let me = ok(sc, reference);
            for o in &others {
                let (t, p, c) = match (me, ok(sc, o)) {
                    (Some(m), Some(x)) => (
                        ratio(m.msgs_per_sec, x.msgs_per_sec),
                        ratio(x.p99_ms.unwrap_or(0.0), m.p99_ms.unwrap_or(0.0)),
                        ratio(
                            x.broker_cpu_per_msg_us().unwrap_or(0.0),
                            m.broker_cpu_per_msg_us().unwrap_or(0.0),
                        ),
                    ),
                    _ => ("-".into(), "-".into(), "-".into()),
                };
                let _ = write!(out, " {t} | {p} | {c} |");
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, peer: &str, rate: f64, p99: f64) -> Row {
        Row {
            scenario: scenario.into(),
            peer: peer.into(),
            msgs_per_sec: rate,
            p50_ms: Some(p99 / 4.0),
            p99_ms: Some(p99),
            lost: 0,
            duplicates: 0,
            gen_cores: 0.5,
            gen_waiting: 0.1,
            broker_cores: Some(1.0),
            broker_waiting: Some(0.25),
            error: None,
        }
    }

    #[test]
    fn ratios_compare_the_reference_with_each_other_peer() {
        let rows = vec![
            row("a", "R", 30_000.0, 2.0),
            row("a", "M", 20_000.0, 4.0),
            row("b", "R", 1_000.0, 8.0),
            Row {
                error: Some("refused".into()),
                ..row("b", "M", 0.0, 0.0)
            },
        ];
        let md = markdown(&rows, "R");
        assert!(md.contains("| R | 30,000 | 0.50 | 2.00 |"), "{md}");
        // 1 core for 30,000 msg/s is 33.3 us per message; 1 core for 20,000 is 50.
        assert!(md.contains("| 0.50 (0.10) | 1.00 (0.25) | 33.3 |"), "{md}");
        assert!(md.contains("| a | 1.50x | 2.00x | 1.50x |"), "{md}");
        assert!(md.contains("| b | - | - | - |"), "{md}");
        assert!(md.contains("| M | failed: refused |"), "{md}");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}

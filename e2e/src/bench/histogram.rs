//! A log-bucketed latency histogram: constant memory, O(1) record, mergeable across
//! tasks and processes, values within 1/64 (about 1.6%) of what was recorded.
//!
//! ```text
//! value v (ns)        bucket
//! v < 128             v                           (exact)
//! v >= 128            shift * 64 + (v >> shift)   where shift = msb(v) - 6,
//!                                                 so v >> shift is in 64..=127
//! ```
//!
//! Each octave above 128 is cut into 64 equal buckets, so a bucket's width is at most
//! 1/64 of its lower bound. Percentiles report the bucket's midpoint.

use serde::{Deserialize, Serialize};

const SUB_BUCKETS: u64 = 64;
/// Values below this land in a bucket of their own.
const EXACT: u64 = 2 * SUB_BUCKETS;
/// Enough buckets for every `u64`: the largest shift is 57.
const BUCKETS: usize = (57 * SUB_BUCKETS + 2 * SUB_BUCKETS) as usize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let msb = 63 - u64::from(v.leading_zeros());
    let shift = msb - 6;
    (shift * SUB_BUCKETS + (v >> shift)) as usize
}

/// The range of values that land in bucket `i`, as (lowest, width).
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < EXACT {
        return (i, 1);
    }
    let shift = i / SUB_BUCKETS - 1;
    let top = i % SUB_BUCKETS + SUB_BUCKETS;
    (top << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0..=1.0): the midpoint of the bucket holding the
    /// `ceil(q * count)`-th smallest value, never above the largest value recorded.
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return Some((low + width / 2).min(self.max));
            }
        }
        Some(self.max)
    }

    /// The non-empty buckets, for sending a histogram between processes.
    pub fn to_wire(&self) -> HistogramWire {
        HistogramWire {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            max: self.max,
        }
    }

    pub fn from_wire(w: &HistogramWire) -> Histogram {
        let mut h = Histogram::new();
        for &(i, c) in &w.buckets {
            if let Some(slot) = h.counts.get_mut(i as usize) {
                *slot += c;
                h.total += c;
            }
        }
        h.max = w.max;
        h
    }
}

/// A histogram as (bucket index, count) pairs of its non-empty buckets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HistogramWire {
    pub buckets: Vec<(u32, u64)>,
    pub max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1_000_000,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let (low, width) = bucket_range(bucket(v));
            assert!(
                low <= v && v - low < width,
                "{v} in bucket {} = [{low}, +{width})",
                bucket(v)
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        // Consecutive buckets meet: the end of one is the start of the next.
        for i in 0..BUCKETS - 1 {
            let (low, width) = bucket_range(i);
            assert_eq!(low + width, bucket_range(i + 1).0, "gap after bucket {i}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range_are_within_two_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (q, want) in [
            (0.5, 50_000_000.0),
            (0.99, 99_000_000.0),
            (1.0, 100_000_000.0),
        ] {
            let got = h.quantile(q).expect("non-empty") as f64;
            assert!(
                (got - want).abs() / want < 0.02,
                "q{q}: got {got}, want about {want}"
            );
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.max(), 100_000_000);
    }

    #[test]
    fn a_tail_shows_in_p99_but_not_p50() {
        let mut h = Histogram::new();
        for _ in 0..980 {
            h.record(1_000);
        }
        for _ in 0..20 {
            h.record(5_000_000);
        }
        assert_eq!(h.quantile(0.5), Some(1_004));
        let p99 = h.quantile(0.99).expect("non-empty");
        assert!((4_900_000..=5_000_000).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn merge_and_wire_round_trip_keep_every_count() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        for v in 0..5_000u64 {
            a.record(v * 7);
            b.record(v * 13 + 1);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.count(), 10_000);
        assert_eq!(merged.max(), 4_999 * 13 + 1);
        let back = Histogram::from_wire(&merged.to_wire());
        assert_eq!(back, merged);
        assert_eq!(Histogram::new().quantile(0.5), None);
    }
}

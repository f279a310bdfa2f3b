//! Idempotent-producer deduplication, per partition, on the broker that leads it: the
//! last five batches of every producer id (as Kafka keeps), so a retried batch is answered
//! with its original offset instead of being stored twice, and a gap in the sequence is
//! refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! The state lives in memory on the partition's leader. Whenever the broker membership
//! changes (so leadership may have moved, to or from this broker), a partition's state is
//! rebuilt from the batch headers in the log tail before its next idempotent append, so a
//! retry that straddles the move is still recognised. A producer not found in the tail
//! (its batches are older than the scanned window) is accepted whatever its sequence, as
//! Kafka does for a producer whose state expired.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafka_protocol::ResponseError;

use super::batch::{self, Header};
use crate::storage::StorageAdapter;

/// Batches remembered per producer (Kafka's max.in.flight for idempotence).
const REMEMBERED: usize = 5;
/// Producers remembered per partition; the least recently seen is forgotten beyond it.
const MAX_PRODUCERS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug)]
struct Producer {
    epoch: i16,
    batches: VecDeque<Seen>,
    last_seen: Instant,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Already stored: answer with this base offset and store nothing.
    Duplicate {
        base_offset: i64,
    },
    Reject(ResponseError),
}

/// The producers of one partition.
#[derive(Debug, Default)]
pub struct PartitionProducers {
    producers: HashMap<i64, Producer>,
    /// The cluster generation the state was rebuilt at; another one means reload.
    pub loaded_at: Option<u64>,
}

fn next_seq(s: i32) -> i32 {
    if s == i32::MAX { 0 } else { s + 1 }
}

impl PartitionProducers {
    pub fn check(&self, h: &Header) -> Verdict {
        let Some(p) = self.producers.get(&h.producer_id) else {
            return Verdict::Append;
        };
        if h.producer_epoch < p.epoch {
            return Verdict::Reject(ResponseError::InvalidProducerEpoch);
        }
        if h.producer_epoch > p.epoch {
            return if h.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(s) = p
            .batches
            .iter()
            .find(|s| s.first_seq == h.base_sequence && s.last_seq == h.last_sequence())
        {
            return Verdict::Duplicate {
                base_offset: s.base_offset,
            };
        }
        match p.batches.back() {
            Some(last) if h.base_sequence != next_seq(last.last_seq) => {
                Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => Verdict::Append,
        }
    }

    /// Forgets every producer (before a rebuild).
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Remembers a stored batch.
    pub fn record(&mut self, h: &Header, base_offset: i64) {
        let full = self.producers.len() >= MAX_PRODUCERS;
        if full
            && !self.producers.contains_key(&h.producer_id)
            && let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(id, _)| *id)
        {
            self.producers.remove(&oldest);
        }
        let p = self.producers.entry(h.producer_id).or_insert(Producer {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_seen: Instant::now(),
        });
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.last_seen = Instant::now();
        if p.batches.len() == REMEMBERED {
            p.batches.pop_front();
        }
        p.batches.push_back(Seen {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
        });
    }
}

type Shared = Arc<tokio::sync::Mutex<PartitionProducers>>;

/// Every partition's producers, with one lock per partition: an idempotent batch is
/// checked and appended under it, so two retries of one batch cannot both pass the check.
#[derive(Default)]
pub struct ProducerStates {
    parts: Mutex<HashMap<(String, u32), Shared>>,
}

impl ProducerStates {
    pub fn partition(
        &self,
        topic: &str,
        shard: u32,
    ) -> Arc<tokio::sync::Mutex<PartitionProducers>> {
        self.parts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((topic.to_string(), shard))
            .or_default()
            .clone()
    }
}

/// How far back a rebuild looks: Kafka clients keep at most 5 batches in flight, so the
/// last many thousand offsets hold every live producer's recent batches in practice.
const REBUILD_OFFSETS: u64 = 100_000;
const REBUILD_BYTES: usize = 16 << 20;

/// Re-learns a partition's producers from the batch headers of its log tail.
pub async fn rebuild(
    storage: &dyn StorageAdapter,
    topic: &str,
    shard: u32,
    state: &mut PartitionProducers,
) -> crate::Result<()> {
    state.clear();
    let o = storage.offsets(topic, shard).await?;
    let mut at = o
        .high_watermark
        .saturating_sub(REBUILD_OFFSETS)
        .max(o.log_start);
    let mut budget = REBUILD_BYTES;
    while at < o.high_watermark && budget > 0 {
        let r = storage
            .read(
                topic,
                shard,
                at,
                budget.min(1 << 20),
                std::time::Duration::ZERO,
            )
            .await?;
        if r.records.is_empty() || r.next_offset <= at {
            break;
        }
        let batches = batch::split(&r.records)
            .map_err(|e| crate::BrokerError::BadRecord(format!("stored batch: {e}")))?;
        for (b, h) in batches {
            let base = i64::from_be_bytes(b[..8].try_into().unwrap_or_default());
            if h.producer_id >= 0 {
                state.record(&h, base);
            }
        }
        budget = budget.saturating_sub(r.records.len());
        at = r.next_offset;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, n: i32) -> Header {
        Header {
            magic: 2,
            attributes: 0,
            last_offset_delta: n - 1,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: n,
        }
    }

    #[test]
    fn retries_are_duplicates_and_gaps_are_refused() {
        let mut p = PartitionProducers::default();
        assert_eq!(p.check(&h(1, 0, 0, 3)), Verdict::Append);
        p.record(&h(1, 0, 0, 3), 100);
        assert_eq!(
            p.check(&h(1, 0, 0, 3)),
            Verdict::Duplicate { base_offset: 100 }
        );
        assert_eq!(p.check(&h(1, 0, 3, 2)), Verdict::Append);
        p.record(&h(1, 0, 3, 2), 103);
        assert_eq!(
            p.check(&h(1, 0, 3, 2)),
            Verdict::Duplicate { base_offset: 103 }
        );
        assert_eq!(
            p.check(&h(1, 0, 9, 1)),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        // Another producer is independent.
        assert_eq!(p.check(&h(2, 0, 0, 1)), Verdict::Append);
    }

    #[test]
    fn epochs_fence_and_reset() {
        let mut p = PartitionProducers::default();
        p.record(&h(1, 3, 0, 1), 0);
        assert_eq!(
            p.check(&h(1, 2, 1, 1)),
            Verdict::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            p.check(&h(1, 4, 5, 1)),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(p.check(&h(1, 4, 0, 1)), Verdict::Append);
        p.record(&h(1, 4, 0, 1), 1);
        assert_eq!(p.check(&h(1, 4, 1, 1)), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut p = PartitionProducers::default();
        for i in 0..6 {
            p.record(&h(1, 0, i, 1), i as i64);
        }
        assert_eq!(
            p.check(&h(1, 0, 0, 1)),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            p.check(&h(1, 0, 1, 1)),
            Verdict::Duplicate { base_offset: 1 }
        );
    }

    #[tokio::test]
    async fn a_new_leader_rebuilds_producers_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::storage::local::memory_for_tests(dir.path());
        // Another broker led the partition: producer 7 wrote two batches, an anonymous
        // producer one.
        let b1 = batch::tests::batch(7, 2, 0, 3);
        let b2 = batch::tests::batch(7, 2, 3, 2);
        storage.append("t", 0, vec![b1.clone()]).await.unwrap();
        storage
            .append("t", 0, vec![batch::tests::batch(-1, -1, -1, 4)])
            .await
            .unwrap();
        storage.append("t", 0, vec![b2.clone()]).await.unwrap();

        let mut state = PartitionProducers::default();
        rebuild(&storage, "t", 0, &mut state).await.unwrap();
        let h2 = batch::split(&b2).unwrap()[0].1;
        assert_eq!(state.check(&h2), Verdict::Duplicate { base_offset: 7 });
        let h1 = batch::split(&b1).unwrap()[0].1;
        assert_eq!(state.check(&h1), Verdict::Duplicate { base_offset: 0 });
        assert_eq!(
            state.check(&h(7, 2, 9, 1)),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(state.check(&h(7, 2, 5, 1)), Verdict::Append);
    }
}

//! Shared QoS 1/2 records this broker handed to a member of a share group and that the
//! member has not finished (still queued, or sent and not acknowledged), per group,
//! filter and shard.
//!
//! The group's cursor (`super::share`) never passes the lowest of them. A broker that dies
//! takes its members' unfinished records with it; the broker that takes the shard over
//! replays from the cursor, so the group gets those records again instead of losing them
//! (at least once, as a Kafka consumer group re-reads from its last committed offset).
//!
//! Each such delivery carries a [`Ticket`], and a record counts as unfinished while a
//! ticket for it lives. The ticket travels with the delivery (dispatcher queue, outbound
//! queue, inflight window) and is dropped with it, whatever ends it: an acknowledgement,
//! a hand-back to the group (which issues tickets of its own first), or a discard. Nothing
//! has to remember to release it, so a forgotten path cannot hold a cursor back for good.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::share_behind::ShareBehind;
use super::state::ShardKey;

/// The unfinished offsets of one group's records of one shard, with how many tickets
/// each has (a record handed back is briefly held by the old and the new member).
#[derive(Debug, Default)]
pub struct Slot(Mutex<BTreeMap<u64, u32>>);

impl Slot {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lowest(&self) -> Option<u64> {
        self.map().keys().next().copied()
    }
}

/// Keeps `offset` unfinished in its slot for as long as it lives.
pub struct Ticket {
    slot: Arc<Slot>,
    offset: u64,
}

impl Ticket {
    pub fn new(slot: &Arc<Slot>, offset: u64) -> Ticket {
        *slot.map().entry(offset).or_insert(0) += 1;
        Ticket {
            slot: slot.clone(),
            offset,
        }
    }
}

impl Clone for Ticket {
    fn clone(&self) -> Self {
        Ticket::new(&self.slot, self.offset)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut m = self.slot.map();
        if let Some(n) = m.get_mut(&self.offset) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.offset);
            }
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({})", self.offset)
    }
}

/// group -> filter -> shard -> slot (nested so that lookups by `&str` need no allocation).
#[derive(Debug, Default)]
pub struct Unfinished(HashMap<String, HashMap<String, HashMap<ShardKey, Arc<Slot>>>>);

impl Unfinished {
    /// The slot of group `g` with filter `f` on `key`, created on first use.
    pub fn slot(&mut self, g: &str, f: &str, key: &ShardKey) -> &Arc<Slot> {
        // Allocates the group and filter names only the first time.
        if !self.0.contains_key(g) {
            self.0.insert(g.to_string(), HashMap::new());
        }
        let filters = self.0.get_mut(g).expect("inserted above");
        if !filters.contains_key(f) {
            filters.insert(f.to_string(), HashMap::new());
        }
        let shards = filters.get_mut(f).expect("inserted above");
        shards.entry(key.clone()).or_default()
    }

    /// A ticket for `offset` in group `g`'s slot of `key`.
    pub fn ticket(&mut self, g: &str, f: &str, key: &ShardKey, offset: u64) -> Ticket {
        Ticket::new(self.slot(g, f, key), offset)
    }

    /// The lowest unfinished offset per group, filter and shard (empty slots left out),
    /// in the shape of the behind marks, which lower a cursor the same way.
    pub fn lowest(&self) -> ShareBehind {
        let mut out = ShareBehind::default();
        for (g, filters) in &self.0 {
            for (f, shards) in filters {
                for (k, slot) in shards {
                    if let Some(at) = slot.lowest() {
                        out.fall_behind(g, f, k, at);
                    }
                }
            }
        }
        out
    }

    /// Forgets the slots for which `keep(group, filter, shard)` fails and nobody holds a
    /// ticket; a slot still in use stays until its records are finished.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str, &ShardKey) -> bool) {
        self.0.retain(|g, filters| {
            filters.retain(|f, shards| {
                shards.retain(|k, slot| keep(g, f, k) || slot.lowest().is_some());
                !shards.is_empty()
            });
            !filters.is_empty()
        });
    }

    /// The lowest unfinished offset of one group on one shard.
    #[cfg(test)]
    pub fn lowest_of(&self, g: &super::dispatch::GroupKey, key: &ShardKey) -> Option<u64> {
        self.0.get(&g.0)?.get(&g.1)?.get(key)?.lowest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_stays_unfinished_while_any_ticket_for_it_lives() {
        let mut u = Unfinished::default();
        let k: ShardKey = ("t".into(), 0);
        let g: super::super::dispatch::GroupKey = ("g".into(), "f/#".into());
        let a = u.ticket("g", "f/#", &k, 7);
        let b = u.ticket("g", "f/#", &k, 9);
        let a2 = a.clone();
        assert_eq!(u.lowest_of(&g, &k), Some(7));
        drop(a);
        assert_eq!(u.lowest_of(&g, &k), Some(7), "a clone still holds 7");
        drop(a2);
        assert_eq!(u.lowest_of(&g, &k), Some(9));
        assert_eq!(u.lowest().from("g", "f/#", &k), Some(9));

        // A slot in use survives losing the shard; an empty one goes.
        u.retain(|_, _, _| false);
        assert_eq!(u.lowest_of(&g, &k), Some(9));
        drop(b);
        assert_eq!(u.lowest_of(&g, &k), None);
        assert!(u.lowest().is_empty());
        u.retain(|_, _, _| false);
        assert!(u.0.is_empty());
    }
}

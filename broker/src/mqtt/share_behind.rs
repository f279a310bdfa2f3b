//! Where share groups fell behind on this broker: per group, filter and owned shard, the
//! first offset of a QoS 1/2 record that none of the group's local members had room for,
//! or that a member whose session ended had not finished.
//!
//! It works like a plain session's "lost from" mark (see [`super::dispatch`]), for the
//! group instead of one session: while a group is behind on a shard, nothing more of that
//! shard is queued for the group, and the next member whose one-second tick comes claims
//! `[from, position)`, re-reads it from storage and delivers it through its own unbounded
//! outbound queue. A member whose session is stuck (a client that stopped reading its
//! socket) never ticks, so it never claims. Claiming and the live position change under
//! the dispatcher's lock, so the re-read neither skips nor repeats a record.
//!
//! The group's cursor (`super::share`) is the position lowered to the mark: a broker that
//! takes the shard over replays the undelivered records too.

use std::collections::HashMap;

use super::dispatch::GroupKey;
use super::state::ShardKey;

/// group -> filter -> shard -> first offset not delivered (nested so that lookups by
/// `&str` need no allocation).
#[derive(Debug, Default, Clone)]
pub struct ShareBehind(HashMap<String, HashMap<String, HashMap<ShardKey, u64>>>);

impl ShareBehind {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where group `g` with filter `f` fell behind on `key`, if it did.
    pub fn from(&self, g: &str, f: &str, key: &ShardKey) -> Option<u64> {
        self.0.get(g)?.get(f)?.get(key).copied()
    }

    /// Marks the group behind on `key` from `offset` (or keeps an earlier mark).
    pub fn fall_behind(&mut self, g: &str, f: &str, key: &ShardKey, offset: u64) {
        let at = self
            .0
            .entry(g.to_string())
            .or_default()
            .entry(f.to_string())
            .or_default()
            .entry(key.clone())
            .or_insert(offset);
        *at = (*at).min(offset);
    }

    /// Removes and returns every mark of one group.
    pub fn take(&mut self, g: &str, f: &str) -> HashMap<ShardKey, u64> {
        let Some(filters) = self.0.get_mut(g) else {
            return HashMap::new();
        };
        let marks = filters.remove(f).unwrap_or_default();
        if filters.is_empty() {
            self.0.remove(g);
        }
        marks
    }

    /// Keeps only the marks for which `keep(group, filter, shard)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str, &ShardKey) -> bool) {
        self.0.retain(|g, filters| {
            filters.retain(|f, marks| {
                marks.retain(|k, _| keep(g, f, k));
                !marks.is_empty()
            });
            !filters.is_empty()
        });
    }

    /// `positions` lowered to the marks of one group.
    pub fn lower(&self, g: &GroupKey, positions: &mut HashMap<ShardKey, u64>) {
        let Some(marks) = self.0.get(&g.0).and_then(|f| f.get(&g.1)) else {
            return;
        };
        for (k, from) in marks {
            if let Some(p) = positions.get_mut(k) {
                *p = (*p).min(*from);
            }
        }
    }
}

/// The dispatcher's positions together with the share groups' marks, at one moment.
#[derive(Debug, Default)]
pub struct SharePositions {
    pub positions: HashMap<ShardKey, u64>,
    pub behind: ShareBehind,
    /// The lowest record each group's members here have not finished
    /// ([`super::share_unfinished`]).
    pub unfinished: ShareBehind,
}

impl SharePositions {
    /// The next offset the tailer of `k` dispatches (where a gained shard goes live).
    pub fn live(&self, k: &ShardKey) -> Option<u64> {
        self.positions.get(k).copied()
    }

    /// Up to where group `g`'s records of `k` were finished by its members: the
    /// position, lowered to the first record the group fell behind on and to the first
    /// one a member has not acknowledged yet. A cursor never passes it.
    pub fn delivered(&self, g: &GroupKey, k: &ShardKey) -> Option<u64> {
        let live = self.live(k)?;
        Some(
            [&self.behind, &self.unfinished]
                .iter()
                .filter_map(|m| m.from(&g.0, &g.1, k))
                .fold(live, u64::min),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_keep_the_earliest_offset_and_lower_positions_per_group() {
        let (a, b): (ShardKey, ShardKey) = (("t".into(), 0), ("t".into(), 1));
        let mut behind = ShareBehind::default();
        behind.fall_behind("g", "f", &a, 7);
        behind.fall_behind("g", "f", &a, 9);
        behind.fall_behind("g", "f", &a, 5);
        behind.fall_behind("h", "f", &b, 3);
        assert_eq!(behind.from("g", "f", &a), Some(5));
        assert_eq!(behind.from("g", "f", &b), None);

        let mut unfinished = ShareBehind::default();
        unfinished.fall_behind("g", "f", &b, 8);
        let at = SharePositions {
            positions: HashMap::from([(a.clone(), 10), (b.clone(), 10)]),
            behind: behind.clone(),
            unfinished,
        };
        let g: GroupKey = ("g".into(), "f".into());
        assert_eq!(at.delivered(&g, &a), Some(5));
        assert_eq!(
            at.delivered(&g, &b),
            Some(8),
            "a member has not acknowledged 8"
        );
        assert_eq!(at.live(&a), Some(10));
        let mut positions = at.positions.clone();
        behind.lower(&g, &mut positions);
        assert_eq!((positions[&a], positions[&b]), (5, 10));

        behind.retain(|g, _, _| g != "h");
        assert_eq!(behind.from("h", "f", &b), None);
        assert_eq!(behind.take("g", "f"), HashMap::from([(a, 5)]));
        assert!(behind.is_empty());
    }
}

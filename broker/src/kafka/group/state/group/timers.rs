//! Deadlines: the join and sync phase timers, pending-member expiry and member sessions.

use tokio::time::Instant;

use super::*;
use crate::kafka::group::config::GroupConfig;

impl Group {
    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: Instant, cfg: &GroupConfig) {
        if let Some(t) = self.join_timer.filter(|t| t.at <= now) {
            self.join_timer = None;
            if self.state == GroupState::PreparingRebalance {
                match t.kind {
                    JoinTimerKind::Initial { delay, remaining }
                        if self.new_member_added && !remaining.is_zero() =>
                    {
                        self.new_member_added = false;
                        let next = cfg.initial_rebalance_delay.min(remaining);
                        self.join_timer = Some(JoinTimer {
                            at: now + next,
                            kind: JoinTimerKind::Initial {
                                delay: next,
                                remaining: remaining.saturating_sub(delay),
                            },
                        });
                    }
                    _ => self.complete_join(now),
                }
            }
        }
        if let Some((_, generation)) = self.sync_timer.filter(|(at, _)| *at <= now) {
            self.sync_timer = None;
            let syncing = matches!(
                self.state,
                GroupState::CompletingRebalance | GroupState::Stable
            );
            if generation == self.generation && syncing && !self.pending_sync.is_empty() {
                let late: Vec<String> = self.pending_sync.iter().cloned().collect();
                tracing::info!(group = %self.id, members = ?late, "removing members that did not send SyncGroup");
                for id in &late {
                    self.remove(id);
                }
                self.prepare_rebalance(now, cfg);
            }
        }
        let expired_pending: Vec<String> = self
            .pending_join
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending_join.remove(&id);
            if self.state == GroupState::PreparingRebalance && self.all_members_joined() {
                self.complete_join(now);
            }
        }
        let due: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.session_deadline.is_some_and(|d| d <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in due {
            let Some(m) = self.member_mut(&id) else {
                continue;
            };
            if m.satisfied_heartbeat() {
                m.session_deadline = None;
                continue;
            }
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove(&id);
            match self.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(now, cfg)
                }
                GroupState::PreparingRebalance if self.all_members_joined() => {
                    self.complete_join(now)
                }
                _ => {}
            }
        }
    }

    /// The earliest timer of this group.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timers = [
            self.join_timer.map(|t| t.at),
            self.sync_timer.map(|(at, _)| at),
            self.pending_join.values().min().copied(),
            self.members.iter().filter_map(|m| m.session_deadline).min(),
        ];
        timers.into_iter().flatten().min()
    }
}

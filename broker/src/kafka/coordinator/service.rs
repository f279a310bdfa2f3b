//! [`GroupCoordinator`]: the groups this broker coordinates, kept in memory behind one lock
//! that is never held across an await, the bounded wait for answers the state machine
//! completes later, and [`GroupCoordinator::run`], which applies deadlines and lets go of
//! groups another broker now owns. The per-API glue is in `membership`, `offsets` and
//! `admin`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::messages::Reply;
use super::state::Group;
use super::{GroupSettings, OffsetStore};

/// Wake-ups of one waiting request (each at some group deadline) before it gives up; the
/// waits themselves end by the rebalance timeout, this only guards against a logic error.
const MAX_WAKEUPS: usize = 10_000;

/// Whether this broker coordinates a group right now.
pub type Owns = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The consumer-group coordinator of one broker.
pub struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    pub(super) store: Arc<dyn OffsetStore>,
    owns: Owns,
    pub(super) settings: GroupSettings,
}

impl GroupCoordinator {
    /// A coordinator with Kafka's default group settings.
    pub fn new(store: Arc<dyn OffsetStore>, owns: Owns) -> Arc<Self> {
        Self::with_settings(store, owns, GroupSettings::default())
    }

    pub fn with_settings(
        store: Arc<dyn OffsetStore>,
        owns: Owns,
        settings: GroupSettings,
    ) -> Arc<Self> {
        Arc::new(GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            store,
            owns,
            settings,
        })
    }

    /// The group map. A panic under the lock leaves groups as they were at that point,
    /// which is still a consistent set of groups, so poisoning is ignored.
    pub(super) fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn owns(&self, group: &str) -> bool {
        (self.owns)(group)
    }

    /// INVALID_GROUP_ID for an empty id; NOT_COORDINATOR when another broker owns the group,
    /// dropping what this broker still held of it.
    pub(super) fn check_owner(&self, group: &str) -> Result<(), ResponseError> {
        if group.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns(group) {
            self.release(group);
            return Err(ResponseError::NotCoordinator);
        }
        Ok(())
    }

    fn release(&self, group: &str) {
        let released = self.groups().remove(group);
        if let Some(mut g) = released {
            tracing::info!(
                group,
                "no longer the coordinator of this group; members will re-find it"
            );
            g.abandon(ResponseError::NotCoordinator);
        }
    }

    /// The answer of `reply`, waiting for it if it comes later. The wait wakes at each
    /// deadline of the group and applies it itself, so it ends by the rebalance (or sync)
    /// timeout even if [`GroupCoordinator::run`] is not running; `lost` answers if the
    /// group vanished meanwhile without answering (it never should).
    pub(super) async fn settle<T>(&self, group: &str, reply: Reply<T>, lost: impl Fn() -> T) -> T {
        let (mut rx, mut until) = match reply {
            Reply::Now(answer) => return answer,
            Reply::Wait { rx, until } => (rx, until),
        };
        for _ in 0..MAX_WAKEUPS {
            match tokio::time::timeout_at(until, &mut rx).await {
                Ok(answer) => return answer.unwrap_or_else(|_| lost()),
                Err(_) => {
                    let next = self.tick(group);
                    match rx.try_recv() {
                        Ok(answer) => return answer,
                        Err(TryRecvError::Closed) => return lost(),
                        Err(TryRecvError::Empty) => {}
                    }
                    let Some(next) = next else {
                        return lost();
                    };
                    until = next.max(Instant::now() + Duration::from_millis(1));
                }
            }
        }
        tracing::warn!(group, "a group request outlived {MAX_WAKEUPS} deadlines");
        lost()
    }

    /// Applies the group's passed deadlines; returns its next one.
    fn tick(&self, group: &str) -> Option<Instant> {
        let mut groups = self.groups();
        let g = groups.get_mut(group)?;
        g.tick(Instant::now());
        g.next_deadline()
    }

    /// Expires sessions, completes rebalances whose timeout passed and drops the groups
    /// this broker no longer owns, until `cancel`; then lets go of every group, so waiting
    /// members go to the next coordinator instead of timing out.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut every = tokio::time::interval(Duration::from_millis(self.settings.tick_ms.max(1)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = every.tick() => self.sweep(),
            }
        }
        let all: Vec<(String, Group)> = self.groups().drain().collect();
        for (_, mut g) in all {
            g.abandon(ResponseError::NotCoordinator);
        }
    }

    fn sweep(&self) {
        // `owns` is the caller's code: ask it without holding the lock.
        let held: Vec<String> = self.groups().keys().cloned().collect();
        for group in held.iter().filter(|g| !self.owns(g)) {
            self.release(group);
        }
        let now = Instant::now();
        let retention = Duration::from_millis(self.settings.empty_group_retention_ms);
        self.groups().retain(|_, g| {
            g.tick(now);
            !g.is_idle(now, retention)
        });
    }
}

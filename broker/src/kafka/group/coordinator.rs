//! [`GroupCoordinator`]: the state machine behind a mutex, the offset store, the ownership
//! test, and the background task that fires timers and lets go of groups that moved.
//!
//! The mutex is a std one and is never held across an await: a request takes it, asks the
//! state machine, and releases it; a delayed answer (JoinGroup, SyncGroup) is then awaited
//! on a oneshot channel that the state machine completes, bounded by a deadline.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::OffsetStore;
use super::config::GroupConfig;
use super::state::{Groups, Reply};

/// Who sent a JoinGroup, from the request header and the connection: Kafka builds member
/// ids from the client id and DescribeGroups reports both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    /// As Kafka prints it: `/{ip}`.
    pub client_host: String,
}

impl ClientInfo {
    pub fn new(client_id: Option<&str>, peer: std::net::SocketAddr) -> Self {
        ClientInfo {
            client_id: client_id.unwrap_or_default().to_string(),
            client_host: format!("/{}", peer.ip()),
        }
    }
}

/// Slack on top of the state machine's own timers before a parked request gives up; the
/// state machine answers first unless something is badly wrong.
const WAIT_SLACK: Duration = Duration::from_secs(5);

pub struct GroupCoordinator {
    pub(super) store: Arc<dyn OffsetStore>,
    owns: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    groups: Mutex<Groups>,
    /// Wakes the background task after a request may have set an earlier deadline.
    wake: Notify,
}

impl GroupCoordinator {
    /// `owns(group_id)` says whether this broker is the group's coordinator right now
    /// (rendezvous hashing over live brokers; it can change at any time).
    pub fn new(
        store: Arc<dyn OffsetStore>,
        owns: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    ) -> Arc<Self> {
        Self::with_config(store, owns, GroupConfig::default())
    }

    pub fn with_config(
        store: Arc<dyn OffsetStore>,
        owns: Arc<dyn Fn(&str) -> bool + Send + Sync>,
        config: GroupConfig,
    ) -> Arc<Self> {
        Arc::new(GroupCoordinator {
            store,
            owns,
            groups: Mutex::new(Groups::new(config)),
            wake: Notify::new(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the state machine, then wakes the timer task (the call may have set a
    /// deadline earlier than the one it sleeps towards).
    pub(super) fn with_groups<T>(&self, f: impl FnOnce(&mut Groups, Instant) -> T) -> T {
        let out = f(&mut self.lock(), Instant::now());
        self.wake.notify_one();
        out
    }

    pub(super) fn config(&self) -> GroupConfig {
        self.lock().config().clone()
    }

    /// Whether this broker coordinates `group_id`. If not, any state still held for it is
    /// dropped now (its parked requests get NOT_COORDINATOR) rather than at the next
    /// ownership sweep.
    pub(super) fn owns_group(&self, group_id: &str) -> bool {
        if (self.owns)(group_id) {
            return true;
        }
        let mut groups = self.lock();
        if groups.contains(group_id) {
            groups.drop_group(group_id, ResponseError::NotCoordinator);
        }
        false
    }

    /// Awaits a delayed answer until `deadline`; past it, or if the state machine let go
    /// of the request, `fallback` answers.
    pub(super) async fn wait<T>(
        &self,
        reply: Reply<T>,
        deadline: Instant,
        fallback: impl FnOnce() -> T,
    ) -> T {
        match reply {
            Reply::Now(v) => v,
            Reply::Wait(rx) => wait_until(rx, deadline + WAIT_SLACK)
                .await
                .unwrap_or_else(fallback),
        }
    }

    /// Background task: expires members whose session timed out, completes rebalances
    /// whose timeout passed, drops groups this broker no longer owns. Runs until cancel;
    /// then answers every parked request with NOT_COORDINATOR so clients move on to the
    /// broker that takes over.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let every = self.config().ownership_check_interval;
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep_ownership();
                next_sweep = now + every;
            }
            let next = self.lock().tick(now);
            let until = next.map_or(next_sweep, |n| n.min(next_sweep));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        let mut groups = self.lock();
        for id in groups.group_ids() {
            groups.drop_group(&id, ResponseError::NotCoordinator);
        }
    }

    /// Drops every group `owns` no longer claims. `owns` runs without the lock held: it is
    /// the caller's code and may take locks of its own.
    fn sweep_ownership(&self) {
        let ids = self.lock().group_ids();
        let moved: Vec<String> = ids.into_iter().filter(|g| !(self.owns)(g)).collect();
        if moved.is_empty() {
            return;
        }
        let mut groups = self.lock();
        for id in moved {
            groups.drop_group(&id, ResponseError::NotCoordinator);
        }
    }
}

async fn wait_until<T>(rx: oneshot::Receiver<T>, deadline: Instant) -> Option<T> {
    tokio::time::timeout_at(deadline, rx).await.ok()?.ok()
}

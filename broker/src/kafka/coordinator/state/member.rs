//! A group member as the state machine keeps it: its protocols, session and the answers it
//! is waiting for.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::kafka::coordinator::messages::{JoinResult, Protocol, SyncResult};

/// How long a new member awaiting its first join is kept without heartbeats (Kafka's
/// `NewMemberJoinTimeoutMs`); the rebalance timeout normally answers it long before.
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocols: Vec<Protocol>,
    pub(super) assignment: Bytes,
    pub(super) last_heartbeat: Instant,
    /// Joined during the current rebalance and never answered yet.
    pub(super) is_new: bool,
    pub(super) join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub(super) sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub(super) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    /// When the member's session ends. Members waiting on a join or sync answer are alive
    /// by definition (that wait has its own deadline); everyone else lives on heartbeats.
    pub(super) fn expires_at(&self) -> Option<Instant> {
        if self.join_waiter.is_some() {
            self.is_new
                .then_some(self.last_heartbeat + NEW_MEMBER_JOIN_TIMEOUT)
        } else if self.sync_waiter.is_some() {
            None
        } else {
            Some(self.last_heartbeat + self.session_timeout)
        }
    }

    pub(super) fn answer_join(&mut self, result: JoinResult) {
        if let Some(tx) = self.join_waiter.take() {
            // The requester may have gone away (connection closed); nothing to do then.
            let _ = tx.send(result);
        }
    }

    pub(super) fn answer_sync(&mut self, result: SyncResult) {
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(result);
        }
    }
}

//! `Watch(prefix, from_revision)`: replays the history from a revision, then follows new
//! changes as they are applied, always in revision order and without gaps. A watcher that
//! asks for a revision older than the history (or that falls too far behind, or that was on
//! a node which installed a snapshot) is told `compacted` and must re-list.

use std::sync::Arc;

use robustmq_proto::meta::{EventKind, WatchEvent, WatchResponse};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::raft::state_machine::{Shared, Signal};
use crate::store::Change;

/// Most events in one response.
const CHUNK: usize = 1000;

pub type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<WatchResponse, Status>>;

pub fn start(
    shared: Arc<Shared>,
    prefix: String,
    from_revision: u64,
    shutdown: CancellationToken,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut w = Watcher { shared, prefix, tx };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = w.run(from_revision) => {}
        }
    });
    WatchStream::new(rx)
}

struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
}

enum Catchup {
    /// Sent everything up to this revision.
    UpTo(u64),
    Compacted,
}

impl Watcher {
    async fn run(&mut self, from_revision: u64) {
        // Subscribe before reading the history so that nothing applied in between is lost;
        // duplicates are dropped by revision.
        let mut signals = self.shared.signals.subscribe();
        let mut next = if from_revision == 0 {
            self.current_revision() + 1
        } else {
            from_revision
        };
        match self.catch_up(next).await {
            Some(Catchup::UpTo(rev)) => next = next.max(rev + 1),
            Some(Catchup::Compacted) | None => return,
        }
        loop {
            match signals.recv().await {
                Ok(Signal::Changes(changes)) => {
                    let fresh: Vec<&Arc<Change>> =
                        changes.iter().filter(|c| c.revision >= next).collect();
                    if let Some(last) = fresh.last() {
                        next = last.revision + 1;
                    }
                    if !self.send(fresh.into_iter()).await {
                        return;
                    }
                }
                Ok(Signal::Reset) => {
                    let _ = self.compacted().await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => match self.catch_up(next).await {
                    Some(Catchup::UpTo(rev)) => next = next.max(rev + 1),
                    _ => return,
                },
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn current_revision(&self) -> u64 {
        self.shared.state.read().expect("state lock").revision()
    }

    /// Sends the retained history from `from`; `None` when the client went away.
    async fn catch_up(&self, from: u64) -> Option<Catchup> {
        let (changes, current) = {
            let state = self.shared.state.read().expect("state lock");
            (state.changes_since(from), state.revision())
        };
        let Some(changes) = changes else {
            return self.compacted().await.then_some(Catchup::Compacted);
        };
        self.send(changes.iter())
            .await
            .then_some(Catchup::UpTo(current))
    }

    async fn compacted(&self) -> bool {
        let resp = WatchResponse {
            events: vec![],
            compacted: true,
            revision: self.current_revision(),
        };
        self.tx.send(Ok(resp)).await.is_ok()
    }

    /// Sends the changes under the prefix; false when the client went away.
    async fn send<'a>(&self, changes: impl Iterator<Item = &'a Arc<Change>>) -> bool {
        let mut events = Vec::new();
        for c in changes.filter(|c| c.key.starts_with(&self.prefix)) {
            events.push(WatchEvent {
                revision: c.revision,
                kind: if c.value.is_some() {
                    EventKind::Put as i32
                } else {
                    EventKind::Delete as i32
                },
                key: c.key.clone(),
                value: c.value.clone().unwrap_or_default(),
            });
            if events.len() == CHUNK && !self.flush(&mut events).await {
                return false;
            }
        }
        events.is_empty() || self.flush(&mut events).await
    }

    async fn flush(&self, events: &mut Vec<WatchEvent>) -> bool {
        let resp = WatchResponse {
            events: std::mem::take(events),
            compacted: false,
            revision: self.current_revision(),
        };
        self.tx.send(Ok(resp)).await.is_ok()
    }
}

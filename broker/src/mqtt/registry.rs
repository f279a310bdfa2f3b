//! [`Registry`]: the live connections of this broker by client id, so that a second
//! connection with the same client id takes the session over (the first is told to end
//! with 0x8E and its state is saved before the new one claims it), and the will messages
//! waiting out their delay, so that a reconnect within the delay cancels them. It also
//! holds this run's epoch, which tells its sessions in meta from an earlier run's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Who ended a connection by taking its session over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// A new connection on this broker: it waits for us to save the session first.
    Local,
    /// Another broker already claimed the session in meta: we must not write it again.
    Remote,
    /// Another broker took the session from this run as from a dead broker (we were
    /// paused past our lease): it also published the will, so we must not.
    Taken,
}

struct Live {
    conn: u64,
    kick: oneshot::Sender<Kick>,
    done: oneshot::Receiver<()>,
}

/// The earlier connection of a client id: tell it to go, then wait until it has.
pub struct Previous {
    kick: oneshot::Sender<Kick>,
    done: oneshot::Receiver<()>,
}

impl Previous {
    pub async fn take_over(self, timeout: std::time::Duration) {
        let _ = self.kick.send(Kick::Local);
        let _ = tokio::time::timeout(timeout, self.done).await;
    }
}

/// What a registered connection keeps: it is told to go through `kicked`, and dropping
/// `done` tells its successor it has finished.
pub struct Registration {
    pub kicked: oneshot::Receiver<Kick>,
    pub done: oneshot::Sender<()>,
}

pub struct Registry {
    live: Mutex<HashMap<String, Live>>,
    wills: Mutex<HashMap<String, (u64, CancellationToken)>>,
    next_conn: AtomicU64,
    epoch: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            live: Mutex::default(),
            wills: Mutex::default(),
            next_conn: AtomicU64::new(0),
            // Non-zero: meta treats an expected epoch of 0 as "any".
            epoch: rand::random::<u64>().max(1),
        }
    }
}

impl Registry {
    /// This run of the broker: claims and session writes carry it, so that sessions
    /// claimed by an earlier run under the same node id are told apart (`orphans`).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers `conn` as the live connection of `client_id`; returns the one it
    /// replaces. Also cancels a will still waiting out its delay.
    pub fn register(&self, client_id: &str, conn: u64) -> (Registration, Option<Previous>) {
        if let Some(tok) = self
            .wills
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_id)
        {
            tok.1.cancel();
        }
        let (kick, kicked) = oneshot::channel();
        let (done_tx, done) = oneshot::channel();
        let prev = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_string(), Live { conn, kick, done });
        (
            Registration {
                kicked,
                done: done_tx,
            },
            prev.map(|l| Previous {
                kick: l.kick,
                done: l.done,
            }),
        )
    }

    /// Removes `conn` if it is still the live connection of `client_id`.
    pub fn unregister(&self, client_id: &str, conn: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(client_id).is_some_and(|l| l.conn == conn) {
            live.remove(client_id);
        }
    }

    /// Ends the live connection of `client_id` because another broker claimed its
    /// session (`how` is [`Kick::Remote`] or [`Kick::Taken`]).
    pub fn kick_remote(&self, client_id: &str, how: Kick) -> bool {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(client_id);
        match live {
            Some(l) => l.kick.send(how).is_ok(),
            None => false,
        }
    }

    pub fn is_live(&self, client_id: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(client_id)
    }

    /// Records a delayed will; the returned token is cancelled if the client reconnects.
    /// Pass the returned id to [`Registry::will_done`].
    pub fn delay_will(&self, client_id: &str) -> (u64, CancellationToken) {
        let tok = CancellationToken::new();
        let id = self.next_conn_id();
        if let Some(old) = self
            .wills
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_string(), (id, tok.clone()))
        {
            old.1.cancel();
        }
        (id, tok)
    }

    /// Forgets a delayed will once sent, unless a newer one replaced it meanwhile.
    pub fn will_done(&self, client_id: &str, id: u64) {
        let mut w = self.wills.lock().unwrap_or_else(|p| p.into_inner());
        if w.get(client_id).is_some_and(|(i, _)| *i == id) {
            w.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn second_registration_kicks_the_first_and_waits_for_it() {
        let r = Registry::default();
        let (first, none) = r.register("c", 1);
        assert!(none.is_none());
        let (_second, prev) = r.register("c", 2);
        let prev = prev.expect("the first connection is returned");
        let waiter = tokio::spawn(prev.take_over(Duration::from_secs(5)));
        assert_eq!(
            first
                .kicked
                .await
                .expect("the first connection is told to go"),
            Kick::Local
        );
        drop(first.done);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("take over ends once the first connection is done")
            .unwrap();
        r.unregister("c", 1);
        assert!(
            r.is_live("c"),
            "unregistering the old connection keeps the new one"
        );
        r.unregister("c", 2);
        assert!(!r.is_live("c"));
    }

    #[tokio::test]
    async fn remote_claim_kicks_with_remote() {
        let r = Registry::default();
        let (reg, _) = r.register("c", 1);
        assert!(r.kick_remote("c", Kick::Remote));
        assert_eq!(reg.kicked.await.unwrap(), Kick::Remote);
        assert!(!r.is_live("c"));
        assert!(!r.kick_remote("c", Kick::Taken));
        let (reg, _) = r.register("c", 2);
        assert!(r.kick_remote("c", Kick::Taken));
        assert_eq!(reg.kicked.await.unwrap(), Kick::Taken);
    }

    #[test]
    fn reconnect_cancels_a_delayed_will() {
        let r = Registry::default();
        let (_, tok) = r.delay_will("c");
        let _ = r.register("c", 1);
        assert!(tok.is_cancelled());
    }
}

//! Takeover across brokers: every broker watches `sessions/` in meta, and when a session
//! it holds live is claimed by another broker (a client reconnected there), it ends its
//! connection with 0x8E without saving the session again: the new owner resumed from the
//! last checkpoint (at most a second old, so at worst a few QoS 1 messages are repeated).
//! The same happens when another broker took the session from this run because meta saw
//! us dead (`orphans`); that broker also published the will, so we drop ours. Session
//! writes are conditional on the owner, so a checkpoint racing with the claim is refused
//! rather than taking the session back (`session`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use robustmq_proto::meta::{EventKind, Session, WatchRequest};
use robustmq_proto::prost::Message;

use super::Context;
use super::registry::Kick;

pub async fn run(ctx: Arc<Context>) {
    let mut backoff = Duration::from_millis(200);
    // Where a new watch resumes (0: from now), so that claims made while the stream was
    // down (a meta restart, or this process paused) still end our connections.
    let mut next_revision = 0;
    while !ctx.cancel.is_cancelled() {
        let stream = ctx
            .meta
            .client()
            .watch(WatchRequest {
                prefix: "sessions/".into(),
                from_revision: next_revision,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(e) => {
                tracing::warn!(error = %e, "watching sessions");
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let msg = tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                m = stream.message() => m,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "session watch ended");
                    break;
                }
            };
            if resp.compacted {
                // Too far behind: what was missed is caught by the next change of each
                // session, or by a refused checkpoint.
                next_revision = 0;
                break;
            }
            if let Some(last) = resp.events.last() {
                next_revision = last.revision + 1;
            }
            // Only the latest change of each session counts: a response can hold history
            // replayed after a reconnect, in which a claim elsewhere may be followed by
            // the client's return to us.
            let mut latest = HashMap::new();
            for ev in resp.events {
                let session = (ev.kind == EventKind::Put as i32)
                    .then(|| Session::decode(ev.value.as_ref()).ok())
                    .flatten();
                latest.insert(ev.key, session);
            }
            for s in latest.into_values().flatten() {
                // Without an owner but with our epoch: a broker took the session from this
                // run as from a dead one (we were paused past our lease).
                let how = if s.owner_broker == 0 && s.owner_epoch == ctx.registry.epoch() {
                    Kick::Taken
                } else if s.owner_broker != 0 && s.owner_broker != ctx.node_id {
                    Kick::Remote
                } else {
                    continue;
                };
                if ctx.registry.kick_remote(&s.client_id, how) {
                    tracing::info!(client_id = %s.client_id, new_owner = s.owner_broker, ?how, "session taken over by another broker");
                }
            }
        }
    }
}

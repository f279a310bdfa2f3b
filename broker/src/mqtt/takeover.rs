//! Takeover across brokers: every broker watches `sessions/` in meta, and when a session
//! it holds live is claimed by another broker (a client reconnected there), it ends its
//! connection with 0x8E without saving the session again: the new owner resumed from the
//! last checkpoint (at most a second old, so at worst a few QoS 1 messages are repeated).

use std::sync::Arc;
use std::time::Duration;

use robustmq_proto::meta::{EventKind, Session, WatchRequest};
use robustmq_proto::prost::Message;

use super::Context;

pub async fn run(ctx: Arc<Context>) {
    let mut backoff = Duration::from_millis(200);
    while !ctx.cancel.is_cancelled() {
        let stream = ctx
            .meta
            .client()
            .watch(WatchRequest {
                prefix: "sessions/".into(),
                from_revision: 0,
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
            for ev in resp.events {
                if ev.kind != EventKind::Put as i32 {
                    continue;
                }
                let Ok(s) = Session::decode(ev.value.as_ref()) else {
                    continue;
                };
                if s.owner_broker != 0
                    && s.owner_broker != ctx.node_id
                    && ctx.registry.kick_remote(&s.client_id)
                {
                    tracing::info!(client_id = %s.client_id, new_owner = s.owner_broker, "session claimed by another broker");
                }
            }
            // A compacted history only means we missed changes: live sessions claimed
            // meanwhile are caught by the next change or by the client itself.
        }
    }
}

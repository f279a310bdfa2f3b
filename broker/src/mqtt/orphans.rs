//! Sessions and pending wills orphaned by a broker that died.
//!
//! A session whose client was connected to the dead broker still names it the owner in
//! meta (`disconnected_at_ms == 0`), so nobody would publish its will or start its
//! expiry. A will that was waiting out its delay names the dead broker its holder
//! (`will_holder`), so nobody would publish it. Every live broker polls meta about once a
//! second; when a broker's lease has lapsed (its node is EXPIRED in `ListNodes`), it
//! takes
//! - each session the dead broker owned, with a write conditional on the dead broker (and
//!   the run of it, the epoch) still owning it: the session becomes disconnected (so
//!   that its expiry starts). Its will, if it has a delay, stays in meta as pending with
//!   this broker as its holder (the delay counted from the takeover, as the moment of the
//!   crash is not known); one due at once is cleared by the same write and published;
//! - each pending will the dead broker held, with a write conditional on it still holding
//!   it: this broker becomes the holder and publishes the will when it is due.
//!
//! Only the broker whose write wins goes on (`will::schedule`). A client that reconnects
//! before the sweep claims the session with its new will, and the conditional writes
//! then fail. The taker leaves the owner's epoch in the session, so that the owner, if it
//! still runs (paused past its lease), sees in its session watch that the session was
//! taken from it (`takeover`). Only EXPIRED brokers are looked for: one removed from
//! meta (UnregisterNode, which brokers never call) is not.
//!
//! A client that reconnects before its dead broker's lease lapses claims the session
//! first, so no sweep would see the old connection's will: the claiming broker publishes
//! the will of the connection it took over when it is due at once ([`after_claim`]),
//! whether the old owner is dead or ends that connection itself.
//!
//! A broker restarted under the same node id before its lease lapsed is never seen dead:
//! once after starting, it takes the connected sessions and the pending wills that an
//! earlier run of its own (another epoch) left in meta.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use robustmq_proto::meta::{ListSessionsRequest, NodeState, Session, UpdateSessionRequest};
use tonic::{Code, Status};

use super::{Context, now_ms, will};

/// How often meta is asked for dead brokers.
const POLL_EVERY: Duration = Duration::from_secs(1);

pub async fn run(ctx: Arc<Context>) {
    let mut state = Swept::default();
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
        if let Err(e) = sweep(&ctx, &mut state).await {
            tracing::warn!(error = %e, "looking for sessions of dead brokers");
        }
    }
}

/// What needs no second look.
#[derive(Default)]
struct Swept {
    /// Dead brokers whose sessions were all taken: a dead broker cannot claim new ones,
    /// so they are not listed again until it comes back and dies again.
    dead: HashSet<u64>,
    /// The sessions of this broker's earlier runs were taken.
    earlier_runs: bool,
}

async fn sweep(ctx: &Arc<Context>, swept: &mut Swept) -> Result<(), Status> {
    let nodes = ctx.meta.broker_nodes().await?;
    let mut dead = Vec::new();
    let mut self_alive = false;
    for n in &nodes {
        if n.state == NodeState::Expired as i32 {
            dead.push(n.id);
        } else if n.id == ctx.node_id {
            self_alive = true;
        }
    }
    swept.dead.retain(|id| dead.contains(id));
    // A broker that meta does not see alive may be the one cut off: it leaves the
    // sessions to brokers that are.
    if !self_alive {
        return Ok(());
    }
    if !swept.earlier_runs {
        let epoch = ctx.registry.epoch();
        // Epoch 0: claimed before brokers had epochs; left to the client's reconnect, as
        // a write expecting "any epoch" could undo a claim of this run.
        take_all(ctx, ctx.node_id, |s| {
            s.owner_epoch != 0 && s.owner_epoch != epoch
        })
        .await?;
        take_wills(ctx, ctx.node_id, |s| s.will_holder_epoch != epoch).await?;
        swept.earlier_runs = true;
    }
    for id in dead {
        if id == ctx.node_id || swept.dead.contains(&id) {
            continue;
        }
        take_all(ctx, id, |_| true).await?;
        take_wills(ctx, id, |_| true).await?;
        swept.dead.insert(id);
    }
    Ok(())
}

async fn list_sessions(ctx: &Context, req: ListSessionsRequest) -> Result<Vec<Session>, Status> {
    Ok(ctx
        .meta
        .client()
        .list_sessions(req)
        .await?
        .into_inner()
        .sessions)
}

/// Takes every connected session `owner` holds in meta that `orphaned` selects.
async fn take_all(
    ctx: &Arc<Context>,
    owner: u64,
    orphaned: impl Fn(&Session) -> bool,
) -> Result<(), Status> {
    let sessions = list_sessions(
        ctx,
        ListSessionsRequest {
            owner_broker: owner,
            ..Default::default()
        },
    )
    .await?;
    for s in sessions {
        if s.owner_broker == owner && s.disconnected_at_ms == 0 && orphaned(&s) {
            take(ctx, s).await?;
        }
    }
    Ok(())
}

/// Takes one session from the owner (and run) it names; goes on with its will if our
/// write won.
async fn take(ctx: &Arc<Context>, s: Session) -> Result<(), Status> {
    let (owner, epoch) = (s.owner_broker, s.owner_epoch);
    let will = will::from_meta(&s.will);
    let delay = if will.is_some() { s.will_delay_secs } else { 0 };
    // The epoch stays: it tells the owner's run, if it still runs (paused past its lease),
    // that the session was taken from it (`takeover`).
    let mut released = Session {
        owner_broker: 0,
        disconnected_at_ms: now_ms(),
        will: Bytes::new(),
        will_delay_secs: 0,
        ..s.clone()
    };
    if delay > 0 {
        (released.will, released.will_delay_secs) = (s.will.clone(), delay);
        will::hold(ctx, &mut released, delay);
    }
    let r = ctx
        .meta
        .client()
        .update_session(UpdateSessionRequest {
            session: Some(released.clone()),
            expected_owner: owner,
            expected_epoch: epoch,
            ..Default::default()
        })
        .await;
    match r {
        Ok(_) => {
            tracing::info!(client_id = %s.client_id, owner, epoch, will = will.is_some(), delay, "took a session its dead (or earlier) owner left connected");
            if let Some(w) = will {
                let guard = if delay > 0 {
                    will::Guard::Held(released)
                } else {
                    will::Guard::Unrecorded {
                        disconnected_at_ms: Some(released.disconnected_at_ms),
                    }
                };
                will::schedule(
                    ctx.clone(),
                    s.client_id,
                    w,
                    Duration::from_secs(delay.into()),
                    guard,
                );
            }
            Ok(())
        }
        // Another broker took it first, or the client reconnected: not ours to publish.
        Err(e) if e.code() == Code::FailedPrecondition => {
            tracing::debug!(client_id = %s.client_id, owner, "orphaned session already taken or reclaimed");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Takes over every pending will `holder` holds in meta that `orphaned` selects, and
/// publishes each when due.
async fn take_wills(
    ctx: &Arc<Context>,
    holder: u64,
    orphaned: impl Fn(&Session) -> bool,
) -> Result<(), Status> {
    let sessions = list_sessions(
        ctx,
        ListSessionsRequest {
            will_holder: holder,
            ..Default::default()
        },
    )
    .await?;
    for s in sessions {
        if s.owner_broker != 0 || s.will_holder != holder || !orphaned(&s) {
            continue;
        }
        let Some(w) = will::from_meta(&s.will) else {
            continue;
        };
        let mut taken = s.clone();
        taken.will_holder = ctx.node_id;
        taken.will_holder_epoch = ctx.registry.epoch();
        let r = ctx
            .meta
            .client()
            .update_session(UpdateSessionRequest {
                session: Some(taken.clone()),
                expected_will_holder: s.will_holder,
                expected_will_holder_epoch: s.will_holder_epoch,
                ..Default::default()
            })
            .await;
        match r {
            Ok(_) => {
                let wait = Duration::from_millis(s.will_due_ms.saturating_sub(now_ms()));
                tracing::info!(client_id = %s.client_id, holder, wait_ms = wait.as_millis() as u64, "took over a pending will its dead (or earlier) holder left");
                will::schedule(ctx.clone(), s.client_id, w, wait, will::Guard::Held(taken));
            }
            Err(e) if e.code() == Code::FailedPrecondition => {
                tracing::debug!(client_id = %s.client_id, holder, "pending will already taken, published or cancelled");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After a claim took `previous` from a live connection on another broker (or on an
/// earlier run of this one): that connection is over, and if its will is due at once,
/// this broker publishes it. The old owner, if it runs, ends the connection with 0x8E
/// and drops its copy (`session`); if it died before its lease lapsed, no sweep will see
/// the will, as the session is claimed. A delayed will is not sent: the client is back.
pub fn after_claim(ctx: &Arc<Context>, previous: &Session) {
    let owner = previous.owner_broker;
    let ours = owner == ctx.node_id
        && (previous.owner_epoch == 0 || previous.owner_epoch == ctx.registry.epoch());
    if owner == 0 || ours || previous.will_delay_secs != 0 {
        // No live connection, or ours (a local takeover: the earlier connection
        // publishes its own will), or the client is back within the delay.
        return;
    }
    let Some(w) = will::from_meta(&previous.will) else {
        return;
    };
    tracing::info!(client_id = %previous.client_id, owner, "publishing the will of the connection this claim took over");
    let guard = will::Guard::Unrecorded {
        disconnected_at_ms: None,
    };
    will::schedule(
        ctx.clone(),
        previous.client_id.clone(),
        w,
        Duration::ZERO,
        guard,
    );
}

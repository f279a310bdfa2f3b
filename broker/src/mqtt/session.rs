//! [`Session`]: one connected client. Owns the [`Connection`], the state that a
//! persistent session carries between connections, and the event loop that joins the
//! client's packets, deliveries from the dispatcher, keep alive, takeover and shutdown.
//!
//! When the loop ends, the session detaches from the dispatcher, works out per shard the
//! first offset it has not finished (the smaller of the dispatcher's position and any
//! message still inflight or queued), saves that to meta as disconnected (which starts
//! the session expiry; meta's next sweep removes a session with expiry 0), and publishes
//! the will unless the client said goodbye with 0x00.
//!
//! Every write of the session to meta is conditional on this broker still owning it
//! (`UpdateSession`): a refused checkpoint means another broker claimed the session (or
//! took it over from us as from a dead broker), so the connection ends with 0x8E
//! without saving or publishing anything more, even if the `takeover` watch has not
//! told us yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::{Disconnect, LastWill, Packet, ProtocolVersion, ReasonCode};
use robustmq_proto::meta::{self, UpdateSessionRequest};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

use super::connection::{Connection, ReadError};
use super::dispatch::Delivery;
use super::outbound::{OutMsg, Outbound};
use super::registry::{Kick, Registration};
use super::state::{AwaitingRel, Persistent, ShardKey};
use super::{Context, Stats, handlers, will};

/// What handling a packet asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The client sent DISCONNECT; `will` is whether to publish the will anyway (0x04).
    ClientDisconnect {
        will: bool,
    },
    /// A protocol violation: tell the client (v5) and close.
    Fail(ReasonCode),
}

pub struct Session {
    pub ctx: Arc<Context>,
    pub conn: Connection,
    pub conn_id: u64,
    pub client_id: String,
    pub username: Option<String>,
    /// Superusers bypass ACLs.
    pub superuser: bool,
    pub version: ProtocolVersion,
    pub expiry_secs: u32,
    pub keep_alive: Option<Duration>,
    pub will: Option<LastWill>,
    pub state: Persistent,
    pub out: Outbound,
    pub awaiting_rel: AwaitingRel,
    pub aliases_in: HashMap<u16, String>,
    pub aliases_out: super::alias::OutAliases,
    /// The largest packet the client accepts (v5 Maximum Packet Size).
    pub client_max_packet: u32,
    /// Packets to write at the next flush.
    pub outbox: Vec<Packet>,
    pub registration: Option<Registration>,
    /// Subscriptions or progress changed since the last checkpoint.
    pub dirty: bool,
    /// Another broker claimed the session: it owns the state in meta now.
    pub claimed_elsewhere: bool,
    pub rx: mpsc::Receiver<Delivery>,
    pub _permit: OwnedSemaphorePermit,
}

/// How often a connected persistent session saves its progress to meta.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The next checkpoint time after `now` on a beat every session of this process shares
/// (whole multiples of [`CHECKPOINT_EVERY`] from one start), so that busy sessions save
/// together and the [`super::saver::SessionSaver`] sends them in a few calls instead of
/// one call per session spread over the second.
fn next_beat(now: Instant) -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| now);
    let every = CHECKPOINT_EVERY.as_nanos();
    let beats = now.saturating_duration_since(start).as_nanos() / every + 1;
    start + Duration::from_nanos((beats * every) as u64)
}

/// Per shard, the smaller of the live position and the first unfinished offset.
fn merge_progress(
    positions: HashMap<ShardKey, u64>,
    unfinished: HashMap<ShardKey, u64>,
) -> HashMap<ShardKey, u64> {
    let mut progress = positions;
    for (k, off) in unfinished {
        let e = progress.entry(k).or_insert(off);
        *e = (*e).min(off);
    }
    progress
}

/// The outcome of a session write to meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Saved {
    Done,
    /// Meta refused it: another broker owns the session.
    Refused,
    /// Meta could not be reached; the next checkpoint tries again.
    Failed,
}

/// How the loop ended.
enum End {
    Client { will: bool },
    Server(Option<ReasonCode>),
}

impl Session {
    /// Turns a dispatcher delivery into an outgoing message.
    pub fn deliver(&mut self, d: Delivery) {
        let retain = d.retain_as_published && d.record.retain;
        self.out.enqueue(
            OutMsg {
                source: d.stored.then_some((d.key, d.offset)),
                record: d.record,
                qos: d.qos,
                retain,
                sub_ids: d.sub_ids,
                ticket: d.ticket,
            },
            &mut self.outbox,
        );
    }

    /// Writes everything in the outbox. PUBLISHes larger than the client accepts are
    /// dropped, as MQTT 5 requires; the others use topic aliases where the client allows.
    async fn flush(&mut self) -> std::io::Result<()> {
        // Drained rather than taken, so that the outbox keeps its allocation.
        let mut outbox = std::mem::take(&mut self.outbox);
        for mut p in outbox.drain(..) {
            if let Packet::Publish(_) = &p {
                let len = p.encoded_len(self.version);
                let max = self.client_max_packet as usize;
                if len > max {
                    Stats::inc(&self.ctx.stats.messages_dropped);
                    tracing::debug!(client_id = %self.client_id, len, "publish larger than the client's maximum dropped");
                    continue;
                }
                // Checked against the full topic: a first use, which also carries the
                // alias, must fit too, or the client would never learn the alias.
                if len + super::alias::FIRST_USE_OVERHEAD <= max
                    && let Packet::Publish(publish) = &mut p
                {
                    self.aliases_out.apply(publish);
                }
                Stats::inc(&self.ctx.stats.messages_out);
            }
            self.conn.queue(&p);
        }
        self.outbox = outbox;
        self.conn.flush().await
    }

    /// Runs the session until the connection ends, then cleans up.
    pub async fn run(mut self) {
        let end = self.event_loop().await;
        let (reason, send_will) = match end {
            End::Client { will } => (None, will),
            End::Server(r) => (r, true),
        };
        if let Some(code) = reason
            && self.version.is_v5()
        {
            self.outbox.clear();
            self.conn.queue(&Packet::Disconnect(Disconnect::new(code)));
        }
        self.conn.shutdown().await;
        self.finish(send_will).await;
    }

    async fn event_loop(&mut self) -> End {
        let Some(mut reg) = self.registration.take() else {
            return End::Server(None);
        };
        // The futures that live as long as the loop are made once: creating a
        // cancellation waiter or a timer per packet costs a lock or a timer-wheel update
        // each time. One timer serves both the keep alive and the checkpoints (every
        // branch is polled on every wake-up); it is not moved on every packet either:
        // when it fires early it is re-armed from the last packet's time.
        let cancel = self.ctx.cancel.clone();
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let grace = self.keep_alive.map(|k| k.mul_f32(1.5));
        let mut last_packet = Instant::now();
        // The first checkpoint is due at once, as the first tick of an interval would be.
        let mut next_checkpoint = last_packet;
        let due = |last_packet: Instant, next_checkpoint: Instant| match grace {
            Some(g) => next_checkpoint.min(last_packet + g),
            None => next_checkpoint,
        };
        let timer = tokio::time::sleep_until(due(last_packet, next_checkpoint));
        tokio::pin!(timer);
        let end = loop {
            if let Err(e) = self.flush().await {
                tracing::debug!(client_id = %self.client_id, error = %e, "write failed");
                break End::Server(None);
            }
            tokio::select! {
                _ = &mut cancelled => break End::Server(Some(ReasonCode::SERVER_SHUTTING_DOWN)),
                k = &mut reg.kicked => {
                    match k {
                        Ok(Kick::Remote) => self.claimed_elsewhere = true,
                        Ok(Kick::Taken) => self.lost_ownership(),
                        Ok(Kick::Local) | Err(_) => {}
                    }
                    tracing::info!(client_id = %self.client_id, remote = self.claimed_elsewhere, "session taken over");
                    break End::Server(Some(ReasonCode::SESSION_TAKEN_OVER));
                }
                _ = &mut timer => {
                    if let Some(g) = grace
                        && Instant::now() >= last_packet + g
                    {
                        tracing::info!(client_id = %self.client_id, "keep alive timed out");
                        break End::Server(Some(ReasonCode::KEEP_ALIVE_TIMEOUT));
                    }
                    if Instant::now() >= next_checkpoint {
                        self.recover_lost().await;
                        if self.expiry_secs > 0 && self.checkpoint().await == Saved::Refused {
                            tracing::info!(client_id = %self.client_id, "checkpoint refused: session owned elsewhere");
                            self.lost_ownership();
                            break End::Server(Some(ReasonCode::SESSION_TAKEN_OVER));
                        }
                        next_checkpoint = next_beat(Instant::now());
                    }
                    timer.as_mut().reset(due(last_packet, next_checkpoint));
                }
                Some(d) = self.rx.recv() => {
                    self.dirty = true;
                    self.deliver(d);
                    // Take whatever else is queued so one flush writes it all.
                    while let Ok(d) = self.rx.try_recv() {
                        self.deliver(d);
                        if self.outbox.len() >= 256 { break; }
                    }
                }
                r = self.conn.read_packet() => match r {
                    Ok(p) => {
                        last_packet = Instant::now();
                        match handlers::handle(self, p).await {
                            Flow::Continue => {}
                            Flow::ClientDisconnect { will } => break End::Client { will },
                            Flow::Fail(code) => {
                                tracing::info!(client_id = %self.client_id, code = code.0, "closing on protocol error");
                                break End::Server(Some(code));
                            }
                        }
                    }
                    Err(ReadError::Decode(e)) => {
                        Stats::inc(&self.ctx.stats.malformed_packets);
                        tracing::info!(client_id = %self.client_id, error = %e, "malformed packet; closing");
                        break End::Server(Some(e.reason_code()));
                    }
                    Err(e) => {
                        tracing::debug!(client_id = %self.client_id, error = %e, "connection ended");
                        break End::Server(None);
                    }
                },
            }
        };
        // Keep `done` alive until state is saved: the successor waits on it.
        self.registration = Some(reg);
        end
    }

    /// Re-reads from storage what did not fit this session's queue (QoS 1/2 only), and
    /// what its share groups fell behind on.
    async fn recover_lost(&mut self) {
        let subs: Vec<_> = self.state.subs.values().cloned().collect();
        for (key, from, to) in self.ctx.dispatcher.take_lost(self.conn_id) {
            tracing::debug!(client_id = %self.client_id, topic = %key.0, shard = key.1, from, to, "re-reading what the queue could not hold");
            match self.ctx.dispatcher.read_range(&key, from, to).await {
                Ok(records) => {
                    for (offset, record) in records {
                        if let Some(d) = super::dispatch::match_plain(
                            &subs,
                            &self.client_id,
                            &key,
                            offset,
                            &record,
                        ) {
                            self.deliver(d);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(client_id = %self.client_id, error = %e, "re-reading lost records")
                }
            }
        }
        // What this session's share groups fell behind on (no member had room): the first
        // member to tick delivers it, through its own queue, which has no bound for QoS 1/2.
        for r in self.ctx.dispatcher.take_share_behind(self.conn_id) {
            tracing::debug!(client_id = %self.client_id, topic = %r.key.0, shard = r.key.1, from = r.from, to = r.to, "re-reading what a share group fell behind on");
            for d in self.ctx.dispatcher.reread_share(&r).await {
                self.dirty = true;
                self.deliver(d);
            }
        }
    }

    /// Another broker owns the session in meta now: it resumed from our last checkpoint
    /// and holds the will (a reconnect replaced it, or a broker that took the session
    /// from us as from a dead one published it), so we neither save nor publish.
    fn lost_ownership(&mut self) {
        self.claimed_elsewhere = true;
        self.will = None;
    }

    /// The session as meta stores it, with `owner` (0 once disconnected) and, while
    /// connected, the will for another broker to publish if this one dies.
    fn to_meta(&self, owner: u64) -> meta::Session {
        let mut s = self.state.to_meta(
            &self.client_id,
            self.expiry_secs,
            self.version.level(),
            owner,
        );
        if owner != 0 {
            s.owner_epoch = self.ctx.registry.epoch();
            (s.will, s.will_delay_secs) = will::to_meta(self.will.as_ref(), self.expiry_secs);
        }
        s
    }

    /// Writes the session to meta if this broker still owns it there.
    async fn save(&mut self, session: meta::Session) -> Saved {
        let req = UpdateSessionRequest {
            session: Some(session),
            expected_owner: self.ctx.node_id,
            expected_epoch: self.ctx.registry.epoch(),
            ..Default::default()
        };
        match self.ctx.saver.save(req).await {
            Ok(_) => Saved::Done,
            Err(e) if e.code() == tonic::Code::FailedPrecondition => Saved::Refused,
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "saving session");
                Saved::Failed
            }
        }
    }

    /// Saves a persistent session while it is connected, so that it survives this
    /// broker dying: another broker resumes it from the saved subscriptions and progress.
    async fn checkpoint(&mut self) -> Saved {
        if !self.dirty {
            return Saved::Done;
        }
        // Positions first, then drain the queue: everything below the positions was
        // queued under the dispatcher's lock before we read them, so after the drain it
        // is all in `out`, and the progress below cannot skip a record.
        let positions = self.ctx.dispatcher.positions_for(self.conn_id);
        while let Ok(d) = self.rx.try_recv() {
            self.deliver(d);
        }
        self.state.progress = merge_progress(positions, self.out.unfinished());
        self.state.inflight.out = self.out.saved();
        self.state.inflight.awaiting_rel = self.awaiting_rel.iter().copied().collect();
        let saved = self.save(self.to_meta(self.ctx.node_id)).await;
        if saved == Saved::Done {
            self.dirty = false;
        }
        saved
    }

    /// Saves the session as disconnected, publishes the will, unregisters.
    async fn finish(mut self, send_will: bool) {
        let ctx = self.ctx.clone();
        // What it holds for its share groups goes back to them, also for a persistent
        // session: a resume re-reads only plain subscriptions, so the group would never
        // get it otherwise (see docs/mqtt.md).
        let held = self.out.held_shared();
        let (positions, queued) = ctx.dispatcher.detach(self.conn_id, &held, &mut self.rx);
        let mut unfinished = self.out.unfinished();
        for d in queued {
            if !d.stored {
                continue;
            }
            let e = unfinished.entry(d.key.clone()).or_insert(d.offset);
            *e = (*e).min(d.offset);
        }
        self.state.progress = merge_progress(positions, unfinished);
        self.state.inflight.out = self.out.saved();
        self.state.inflight.awaiting_rel = self.awaiting_rel.iter().copied().collect();

        // A will with a delay waits in meta as pending, held by this broker, so that it
        // survives this broker dying during the delay; one due at once is published by
        // this broker alone, after the write below cleared it from meta. Not ours when
        // another broker claimed the session (the client is back there: that broker
        // publishes an undelayed will, `orphans::after_claim`, and a delayed one is not
        // sent) or took it from us as from a dead broker (it has the will).
        let mut will = if send_will && !self.claimed_elsewhere {
            self.will.take()
        } else {
            None
        };
        let delay = will
            .as_ref()
            .map_or(0, |w| will::delay_secs(w, self.expiry_secs));
        let mut guard = will::Guard::Unrecorded {
            disconnected_at_ms: None,
        };
        if self.claimed_elsewhere {
            // The new owner resumed from our last checkpoint; writing now would undo its
            // claim (and meta would refuse it anyway).
        } else {
            // Written as disconnected, also with expiry 0 (meta's sweep then removes it):
            // unlike a delete, this write cannot remove a session another broker has
            // claimed meanwhile.
            let mut s = self.to_meta(0);
            let at = s.disconnected_at_ms;
            let pending = will.is_some() && delay > 0;
            if pending {
                (s.will, s.will_delay_secs) = will::to_meta(will.as_ref(), self.expiry_secs);
                will::hold(&ctx, &mut s, delay);
            }
            match self.save(s.clone()).await {
                Saved::Done if pending => guard = will::Guard::Held(s),
                Saved::Done => {
                    guard = will::Guard::Unrecorded {
                        disconnected_at_ms: Some(at),
                    }
                }
                Saved::Refused => {
                    tracing::info!(client_id = %self.client_id, "final save refused: session owned elsewhere");
                    self.lost_ownership();
                    will = None;
                }
                Saved::Failed => {}
            }
        }
        if let Some(w) = will {
            will::schedule(
                ctx.clone(),
                self.client_id.clone(),
                w,
                Duration::from_secs(delay.into()),
                guard,
            );
        }
        ctx.registry.unregister(&self.client_id, self.conn_id);
        ctx.stats
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(client_id = %self.client_id, "session ended");
        // Dropping the registration tells a waiting successor that we are done.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_fall_on_one_beat_for_every_session() {
        let t = Instant::now();
        let a = next_beat(t);
        assert!(a > t && a - t <= CHECKPOINT_EVERY);
        // A session whose turn comes later in the same second saves at the same beat.
        assert_eq!(next_beat(a - Duration::from_millis(1)), a);
        assert_eq!(next_beat(a), a + CHECKPOINT_EVERY);
    }
}

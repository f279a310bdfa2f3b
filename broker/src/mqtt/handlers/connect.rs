//! CONNECT: the first packet of every connection. Checks the connection limit and the
//! credentials, settles the client id, keep alive and session expiry, takes the session
//! over from an earlier connection with the same client id, claims it in meta (with the
//! will, for another broker to publish should this one die), answers CONNACK and resumes
//! a persistent session (catching up from its saved progress).
//!
//! A CONNECT that fails to decode is answered with the reason code in the version it
//! asked for (peeked before decoding), or closed silently when 3.x has no code for it.

use std::sync::Arc;
use std::time::Duration;

use mqtt_codec::{
    ConnAck, Connect, DecodeError, Packet, Properties, ProtocolVersion, ReasonCode,
    peek_connect_version,
};
use robustmq_proto::meta::{AuthenticateRequest, ClaimSessionRequest};
use tokio::sync::mpsc;

use crate::mqtt::connection::{Connection, ReadError, Stream};
use crate::mqtt::dispatch::match_plain;
use crate::mqtt::outbound::Outbound;
use crate::mqtt::session::Session;
use crate::mqtt::state::Persistent;
use crate::mqtt::{Context, Stats, orphans, will};

/// How long a new connection has to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a takeover waits for the earlier connection to save its state.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

enum FirstPacket {
    Connect(Box<Connect>),
    Other,
    Failed(DecodeError, Option<ProtocolVersion>),
    Gone,
}

async fn read_first(conn: &mut Connection) -> FirstPacket {
    loop {
        let peeked = peek_connect_version(conn.buffered());
        match conn.try_decode() {
            Ok(Some(Packet::Connect(c))) => return FirstPacket::Connect(c),
            Ok(Some(_)) => return FirstPacket::Other,
            Ok(None) => {}
            Err(e) => return FirstPacket::Failed(e, peeked),
        }
        if let Err(e) = conn.fill().await {
            if !matches!(e, ReadError::Closed) {
                tracing::debug!(error = %e, "reading CONNECT");
            }
            return FirstPacket::Gone;
        }
    }
}

/// Answers a refused CONNECT and closes. The codec turns the reason code into a 3.x
/// return code for 3.x connections.
async fn refuse(conn: &mut Connection, code: ReasonCode) {
    let _ = conn
        .send(&Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: code,
            properties: Properties::default(),
        }))
        .await;
    conn.shutdown().await;
}

fn assign_client_id() -> String {
    format!("rmq-{:016x}", rand::random::<u64>())
}

/// Serves one accepted connection from CONNECT to the end of its session.
pub async fn serve(ctx: Arc<Context>, stream: Box<dyn Stream>, peer: std::net::SocketAddr) {
    let mut conn = Connection::new(stream, ctx.limits.max_packet_size);
    let first = tokio::select! {
        _ = ctx.cancel.cancelled() => return,
        r = tokio::time::timeout(CONNECT_TIMEOUT, read_first(&mut conn)) => r,
    };
    let c = match first {
        Err(_) => {
            tracing::debug!(%peer, "no CONNECT in time");
            return;
        }
        Ok(FirstPacket::Connect(c)) => c,
        Ok(FirstPacket::Gone) => return,
        Ok(FirstPacket::Other) => {
            tracing::info!(%peer, "first packet is not CONNECT; closing");
            conn.shutdown().await;
            return;
        }
        Ok(FirstPacket::Failed(e, peeked)) => {
            Stats::inc(&ctx.stats.malformed_packets);
            tracing::info!(%peer, error = %e, "malformed CONNECT");
            match peeked {
                Some(v) if v.is_v5() => {
                    conn.version = v;
                    refuse(&mut conn, e.reason_code()).await;
                }
                _ => {
                    if let Some(code) = e
                        .v3_connack_return_code()
                        .and_then(ReasonCode::from_v3_connack)
                    {
                        conn.version = ProtocolVersion::V3_1_1;
                        let _ = conn
                            .send(&Packet::ConnAck(ConnAck {
                                session_present: false,
                                reason_code: code,
                                properties: Properties::default(),
                            }))
                            .await;
                    }
                    conn.shutdown().await;
                }
            }
            return;
        }
    };
    conn.version = c.protocol_version;
    if let Some(session) = establish(&ctx, conn, *c, peer).await {
        session.run().await;
    }
}

async fn establish(
    ctx: &Arc<Context>,
    mut conn: Connection,
    c: Connect,
    peer: std::net::SocketAddr,
) -> Option<Session> {
    let v5 = c.protocol_version.is_v5();
    let limits = &ctx.limits;
    let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
        tracing::warn!(%peer, limit = limits.max_connections, "connection limit reached");
        refuse(&mut conn, ReasonCode::QUOTA_EXCEEDED).await;
        return None;
    };
    let superuser = match authenticate(ctx, &c).await {
        Ok(s) => s,
        Err(code) => {
            tracing::info!(%peer, client_id = %c.client_id, code = code.0, "CONNECT refused");
            refuse(&mut conn, code).await;
            return None;
        }
    };
    let mut props = Properties::default();
    let client_id = if c.client_id.is_empty() {
        if !v5 && !c.clean_start {
            refuse(&mut conn, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID).await;
            return None;
        }
        let id = assign_client_id();
        props.assigned_client_identifier = v5.then(|| id.clone());
        id
    } else {
        c.client_id.clone()
    };
    let expiry_secs = if v5 {
        let asked = c.properties.session_expiry_interval.unwrap_or(0);
        let granted = asked.min(limits.max_session_expiry);
        if granted != asked {
            props.session_expiry_interval = Some(granted);
        }
        granted
    } else if c.clean_start {
        0
    } else {
        limits.max_session_expiry
    };
    let mut keep_alive = c.keep_alive;
    if v5 && keep_alive > limits.max_keep_alive {
        keep_alive = limits.max_keep_alive;
        props.server_keep_alive = Some(keep_alive);
    }

    let conn_id = ctx.registry.next_conn_id();
    let (registration, previous) = ctx.registry.register(&client_id, conn_id);
    if let Some(prev) = previous {
        tracing::info!(%client_id, "taking over an earlier connection");
        prev.take_over(TAKEOVER_WAIT).await;
    }
    // The will goes to meta with the claim, so that another broker can publish it if
    // this one dies while the client is connected.
    let (will, will_delay_secs) = will::to_meta(c.will.as_ref(), expiry_secs);
    let claim = ctx
        .meta
        .client()
        .claim_session(ClaimSessionRequest {
            client_id: client_id.clone(),
            broker_id: ctx.node_id,
            clean_start: c.clean_start,
            expiry_interval_secs: expiry_secs,
            protocol_version: c.protocol_version.level() as u32,
            will,
            will_delay_secs,
            broker_epoch: ctx.registry.epoch(),
        })
        .await;
    let previous = match claim {
        Ok(r) => r.into_inner().previous,
        Err(e) => {
            tracing::warn!(%client_id, error = %e, "claiming the session in meta");
            ctx.registry.unregister(&client_id, conn_id);
            refuse(&mut conn, ReasonCode::SERVER_UNAVAILABLE).await;
            return None;
        }
    };
    if let Some(p) = &previous {
        orphans::after_claim(ctx, p);
    }
    let state = match (&previous, c.clean_start) {
        (Some(p), false) => Persistent::from_meta(p),
        _ => Persistent::default(),
    };
    let session_present = !c.clean_start && previous.is_some();

    if v5 {
        props.receive_maximum = Some(limits.receive_maximum);
        props.maximum_packet_size = Some(limits.max_packet_size);
        props.topic_alias_maximum = Some(limits.topic_alias_maximum);
        props.retain_available = Some(true);
        props.wildcard_subscription_available = Some(true);
        props.subscription_identifier_available = Some(true);
        props.shared_subscription_available = Some(true);
    }
    if let Err(e) = conn
        .send(&Packet::ConnAck(ConnAck {
            session_present,
            reason_code: ReasonCode::SUCCESS,
            properties: props,
        }))
        .await
    {
        tracing::debug!(%client_id, error = %e, "writing CONNACK");
        ctx.registry.unregister(&client_id, conn_id);
        return None;
    }
    Stats::inc(&ctx.stats.connects_total);
    Stats::inc(&ctx.stats.connections);
    tracing::info!(%client_id, %peer, version = ?c.protocol_version, session_present, expiry_secs, keep_alive, "client connected");

    let window = c
        .properties
        .receive_maximum
        .unwrap_or(u16::MAX)
        .min(limits.max_inflight);
    let mut out = Outbound::new(window, limits.max_queued);
    out.restore(&state.inflight);
    let (tx, rx) = mpsc::channel(limits.max_queued.max(16));
    let subs: Vec<_> = state.subs.values().cloned().collect();
    let positions = ctx.dispatcher.attach(conn_id, &client_id, tx, subs.clone());
    let mut session = Session {
        ctx: ctx.clone(),
        conn,
        conn_id,
        client_id,
        username: c.username.clone(),
        superuser,
        version: c.protocol_version,
        expiry_secs,
        keep_alive: (keep_alive > 0).then(|| Duration::from_secs(keep_alive as u64)),
        will: c.will.clone(),
        awaiting_rel: state.inflight.awaiting_rel.iter().copied().collect(),
        state,
        out,
        aliases_in: Default::default(),
        aliases_out: crate::mqtt::alias::OutAliases::new(if c.protocol_version.is_v5() {
            c.properties
                .topic_alias_maximum
                .unwrap_or(0)
                .min(limits.topic_alias_out)
        } else {
            0
        }),
        client_max_packet: c.properties.maximum_packet_size.unwrap_or(u32::MAX),
        outbox: Vec::new(),
        registration: Some(registration),
        // Save once soon after connecting: the claim in meta has no subscriptions yet.
        dirty: true,
        claimed_elsewhere: false,
        rx,
        _permit: permit,
    };
    // Catch up: what was stored between the saved progress and the live positions.
    let saved = session.state.progress.clone();
    for (key, from) in saved {
        let Some(&to) = positions.get(&key) else {
            continue;
        };
        if from >= to {
            continue;
        }
        match ctx.dispatcher.read_range(&key, from, to).await {
            Ok(records) => {
                for (offset, record) in records {
                    if let Some(d) = match_plain(&subs, &session.client_id, &key, offset, &record) {
                        session.deliver(d);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(client_id = %session.client_id, topic = %key.0, shard = key.1, error = %e, "catching up")
            }
        }
    }
    Some(session)
}

/// Checks the credentials; `Ok(superuser)` when accepted.
async fn authenticate(ctx: &Context, c: &Connect) -> Result<bool, ReasonCode> {
    let Some(user) = &c.username else {
        return if ctx.allow_anonymous {
            Ok(false)
        } else {
            Err(ReasonCode::NOT_AUTHORIZED)
        };
    };
    let password = c
        .password
        .as_ref()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    match ctx
        .meta
        .client()
        .authenticate(AuthenticateRequest {
            name: user.clone(),
            password,
        })
        .await
    {
        Ok(r) if r.get_ref().ok => Ok(r.get_ref().superuser),
        Ok(_) => Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        Err(e) => {
            tracing::warn!(error = %e, "authenticating against meta");
            Err(ReasonCode::SERVER_UNAVAILABLE)
        }
    }
}

//! State kept on behalf of clients: consumer-group offsets, MQTT sessions and retained
//! messages.

use robustmq_proto::meta::{ClaimSessionRequest, PartitionOffset, RetainedMessage, Session, Topic};

use crate::error::{MetaError, MetaResult};
use crate::keys;
use crate::store::validate::free_key;
use crate::store::{Output, Pb, State, mqtt_topic};

/// MQTT's "never expires" session expiry interval.
const NEVER: u32 = u32::MAX;

pub(super) fn commit_offsets(
    s: &mut State,
    group: &str,
    offsets: &[Pb<PartitionOffset>],
    now: u64,
) -> MetaResult<Output> {
    free_key("group", group)?;
    for Pb(o) in offsets {
        let Some(t) = s.get::<Topic>(&keys::topic(&o.topic)) else {
            return Err(MetaError::not_found("topic", &o.topic));
        };
        if o.partition >= t.shards {
            return Err(MetaError::not_found(
                "partition",
                format!("{}/{}", o.topic, o.partition),
            ));
        }
    }
    for Pb(o) in offsets {
        let mut o = o.clone();
        o.committed_at_ms = now;
        s.put(keys::offset(group, &o.topic, o.partition), &o);
    }
    Ok(Output::None)
}

pub(super) fn delete_group(s: &mut State, group: &str) -> MetaResult<Output> {
    if s.delete_prefix(&keys::group_offsets(group)) == 0 {
        return Err(MetaError::not_found("group", group));
    }
    Ok(Output::None)
}

fn expired(session: &Session, now: u64) -> bool {
    session.disconnected_at_ms != 0
        && session.expiry_interval_secs != NEVER
        && session.disconnected_at_ms + u64::from(session.expiry_interval_secs) * 1000 <= now
}

/// Whether the sweep removes the session: expired, and no will waits in it. A will's delay
/// is at most the session expiry, so a pending will is due by the time its session
/// expires; the session stays until the will is published (or taken over from a dead
/// holder and then published), as the will would be lost with it.
fn removable(session: &Session, now: u64) -> bool {
    expired(session, now) && !pending_will(session)
}

fn pending_will(session: &Session) -> bool {
    session.owner_broker == 0 && session.will_holder != 0
}

pub(super) fn put_session(s: &mut State, session: &Session) -> MetaResult<Output> {
    free_key("client_id", &session.client_id)?;
    s.put(keys::session(&session.client_id), session);
    Ok(Output::Session(Pb(session.clone())))
}

/// The stored session a conditional write checks against; FAILED_PRECONDITION without one.
fn stored_session(s: &State, id: &str) -> MetaResult<Session> {
    s.get::<Session>(&keys::session(id))
        .ok_or_else(|| MetaError::precondition(format!("session '{id}' is not stored")))
}

/// [`put_session`] only while `expected_owner` owns the stored session (in its run
/// `expected_epoch`, unless 0): a write from a broker that lost the session (another
/// broker claimed it, or took it over from a dead owner) must not bring it back.
pub(super) fn update_session(
    s: &mut State,
    session: &Session,
    expected_owner: u64,
    expected_epoch: u64,
) -> MetaResult<Output> {
    free_key("client_id", &session.client_id)?;
    if expected_owner == 0 {
        return Err(MetaError::invalid(
            "expected_owner",
            "must be a broker id (0 means no owner)",
        ));
    }
    let id = &session.client_id;
    let stored = stored_session(s, id)?;
    if stored.owner_broker != expected_owner {
        return Err(MetaError::precondition(format!(
            "session '{id}' is owned by broker {}, not {expected_owner}",
            stored.owner_broker
        )));
    }
    if expected_epoch != 0 && stored.owner_epoch != expected_epoch {
        return Err(MetaError::precondition(format!(
            "session '{id}' is owned by another run (epoch {}) of broker {expected_owner}",
            stored.owner_epoch
        )));
    }
    put_session(s, session)
}

/// [`put_session`] only while the stored session has no owner and its pending will is
/// held by `holder` (in its run `holder_epoch`, unless 0): exactly one broker publishes
/// the will, or takes it over from a dead holder, and a client that reconnected (a
/// claim clears the holder) gets no will from its previous connection.
pub(super) fn update_session_will(
    s: &mut State,
    session: &Session,
    holder: u64,
    holder_epoch: u64,
) -> MetaResult<Output> {
    free_key("client_id", &session.client_id)?;
    if holder == 0 {
        return Err(MetaError::invalid(
            "expected_will_holder",
            "must be a broker id (0 means no holder)",
        ));
    }
    if session.owner_broker != 0 {
        return Err(MetaError::invalid(
            "session.owner_broker",
            "must be 0 in a write conditional on the will holder",
        ));
    }
    let id = &session.client_id;
    let stored = stored_session(s, id)?;
    if stored.owner_broker != 0 {
        return Err(MetaError::precondition(format!(
            "session '{id}' is connected again (owner broker {})",
            stored.owner_broker
        )));
    }
    if stored.will_holder != holder
        || (holder_epoch != 0 && stored.will_holder_epoch != holder_epoch)
    {
        return Err(MetaError::precondition(format!(
            "the will of session '{id}' is held by broker {} (epoch {}), not {holder}",
            stored.will_holder, stored.will_holder_epoch
        )));
    }
    put_session(s, session)
}

/// Makes `broker_id` the owner of the session, returning what was stored before so that
/// the new owner can resume it and the old owner can be told to let go.
pub(super) fn claim_session(
    s: &mut State,
    claim: &ClaimSessionRequest,
    now: u64,
) -> MetaResult<Output> {
    free_key("client_id", &claim.client_id)?;
    let key = keys::session(&claim.client_id);
    let previous = s.get::<Session>(&key).filter(|p| !expired(p, now));
    let current = match (&previous, claim.clean_start) {
        (Some(prev), false) => Session {
            owner_broker: claim.broker_id,
            disconnected_at_ms: 0,
            expiry_interval_secs: claim.expiry_interval_secs,
            protocol_version: claim.protocol_version,
            will: claim.will.clone(),
            will_delay_secs: claim.will_delay_secs,
            owner_epoch: claim.broker_epoch,
            // The client is back: a will pending from its last connection is not sent.
            will_holder: 0,
            will_holder_epoch: 0,
            will_due_ms: 0,
            ..prev.clone()
        },
        _ => Session {
            client_id: claim.client_id.clone(),
            owner_broker: claim.broker_id,
            expiry_interval_secs: claim.expiry_interval_secs,
            protocol_version: claim.protocol_version,
            will: claim.will.clone(),
            will_delay_secs: claim.will_delay_secs,
            owner_epoch: claim.broker_epoch,
            ..Session::default()
        },
    };
    s.put(key, &current);
    Ok(Output::Claimed {
        previous: previous.map(Pb),
        current: Pb(current),
    })
}

pub(super) fn delete_session(s: &mut State, client_id: &str) -> MetaResult<Output> {
    s.delete(&keys::session(client_id));
    Ok(Output::None)
}

pub(super) fn expire_sessions(s: &mut State, now: u64) {
    let gone: Vec<String> = s
        .list::<Session>(keys::SESSIONS)
        .into_iter()
        .filter(|x| removable(x, now))
        .map(|x| keys::session(&x.client_id))
        .collect();
    for k in gone {
        s.delete(&k);
    }
}

pub(super) fn set_retained(s: &mut State, m: &RetainedMessage, now: u64) -> MetaResult<Output> {
    mqtt_topic::validate_name("topic", &m.topic)?;
    let key = keys::retained(&m.topic);
    if m.payload.is_empty() {
        s.delete(&key);
    } else {
        let mut m = m.clone();
        m.stored_at_ms = now;
        s.put(key, &m);
    }
    Ok(Output::None)
}

pub(super) fn expire_retained(s: &mut State, now: u64) {
    let gone: Vec<String> = s
        .list::<RetainedMessage>(keys::RETAINED)
        .into_iter()
        .filter(|m| m.expires_at_ms != 0 && m.expires_at_ms <= now)
        .map(|m| keys::retained(&m.topic))
        .collect();
    for k in gone {
        s.delete(&k);
    }
}

/// Whether a sweep would remove a session or retained message.
pub(super) fn has_expired(s: &State, now: u64) -> bool {
    s.list::<Session>(keys::SESSIONS)
        .iter()
        .any(|x| removable(x, now))
        || s.list::<RetainedMessage>(keys::RETAINED)
            .iter()
            .any(|m| m.expires_at_ms != 0 && m.expires_at_ms <= now)
}

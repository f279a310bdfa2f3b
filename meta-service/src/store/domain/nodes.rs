//! Broker and journal node registration, heartbeat leases, expiry and draining.

use robustmq_proto::meta::{Lease, Node, NodeRole, NodeState};

use super::placement;
use crate::error::{MetaError, MetaResult};
use crate::keys;
use crate::store::commands::role_from_i32;
use crate::store::{Output, Pb, State};

const DEFAULT_LEASE_TTL_MS: u64 = 10_000;
const MAX_LEASE_TTL_MS: u64 = 600_000;

fn ttl(ms: u64) -> u64 {
    if ms == 0 {
        DEFAULT_LEASE_TTL_MS
    } else {
        ms.min(MAX_LEASE_TTL_MS)
    }
}

fn checked_role(role: i32) -> MetaResult<NodeRole> {
    match role_from_i32(role) {
        NodeRole::Unspecified => Err(MetaError::invalid("role", "must be BROKER or JOURNAL")),
        r => Ok(r),
    }
}

fn node_name(role: NodeRole, id: u64) -> String {
    format!("{}/{id}", keys::role_name(role))
}

pub(super) fn register(
    s: &mut State,
    req: &Node,
    lease_ttl_ms: u64,
    now: u64,
) -> MetaResult<Output> {
    let role = checked_role(req.role)?;
    if req.id == 0 {
        return Err(MetaError::invalid("id", "node ids start at 1"));
    }
    if req.addr.is_empty() {
        return Err(MetaError::invalid("addr", "must not be empty"));
    }
    let key = keys::node(role, req.id);
    let existing = s.get::<Node>(&key);
    let node = Node {
        id: req.id,
        role: role as i32,
        addr: req.addr.clone(),
        state: match &existing {
            Some(n) if n.state == NodeState::Draining as i32 => NodeState::Draining as i32,
            _ => NodeState::Alive as i32,
        },
        registered_at_ms: existing.as_ref().map_or(now, |n| n.registered_at_ms),
        labels: req.labels.clone(),
    };
    if existing.as_ref() != Some(&node) {
        s.put(key, &node);
    }
    s.put(
        keys::lease(role, req.id),
        &Lease {
            expires_at_ms: now + ttl(lease_ttl_ms),
        },
    );
    if role == NodeRole::Journal {
        placement::heal(s);
    }
    Ok(Output::Node(Pb(node)))
}

pub(super) fn heartbeat(
    s: &mut State,
    role: i32,
    id: u64,
    lease_ttl_ms: u64,
    now: u64,
) -> MetaResult<Output> {
    let role = checked_role(role)?;
    let key = keys::node(role, id);
    let Some(mut node) = s.get::<Node>(&key) else {
        return Err(MetaError::not_found("node", node_name(role, id)));
    };
    let expires_at_ms = now + ttl(lease_ttl_ms);
    s.put(keys::lease(role, id), &Lease { expires_at_ms });
    if node.state == NodeState::Expired as i32 {
        node.state = NodeState::Alive as i32;
        s.put(key, &node);
        if role == NodeRole::Journal {
            placement::heal(s);
        }
    }
    Ok(Output::Lease {
        expires_at_ms,
        state: node.state,
    })
}

pub(super) fn unregister(s: &mut State, role: i32, id: u64) -> MetaResult<Output> {
    let role = checked_role(role)?;
    let key = keys::node(role, id);
    if !s.contains(&key) {
        return Err(MetaError::not_found("node", node_name(role, id)));
    }
    s.delete(&key);
    s.delete(&keys::lease(role, id));
    if role == NodeRole::Journal {
        placement::evacuate(s, id, true);
    }
    Ok(Output::None)
}

pub(super) fn drain(s: &mut State, role: i32, id: u64) -> MetaResult<Output> {
    let role = checked_role(role)?;
    let key = keys::node(role, id);
    let Some(mut node) = s.get::<Node>(&key) else {
        return Err(MetaError::not_found("node", node_name(role, id)));
    };
    if node.state != NodeState::Draining as i32 {
        node.state = NodeState::Draining as i32;
        s.put(key, &node);
    }
    if role == NodeRole::Journal {
        placement::evacuate(s, id, true);
    }
    Ok(Output::Node(Pb(node)))
}

/// Nodes not yet expired whose lease has lapsed at `now`.
fn lapsed(s: &State, now: u64) -> Vec<(NodeRole, u64)> {
    [NodeRole::Broker, NodeRole::Journal]
        .into_iter()
        .flat_map(|role| {
            s.list::<Node>(&keys::nodes_of(role))
                .into_iter()
                .filter(|n| n.state != NodeState::Expired as i32)
                .filter(|n| {
                    s.get::<Lease>(&keys::lease(role, n.id))
                        .is_none_or(|l| l.expires_at_ms <= now)
                })
                .map(move |n| (role, n.id))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Marks nodes whose lease lapsed as expired and moves their shard leaderships away.
pub(super) fn expire_leases(s: &mut State, now: u64) {
    let lapsed = lapsed(s, now);
    // Mark every lapsed node first, so that leadership never moves to a node that is
    // lapsing in the same sweep.
    for (role, id) in &lapsed {
        let key = keys::node(*role, *id);
        if let Some(mut node) = s.get::<Node>(&key) {
            node.state = NodeState::Expired as i32;
            s.put(key, &node);
        }
    }
    for (role, id) in lapsed {
        if role == NodeRole::Journal {
            placement::evacuate(s, id, false);
        }
    }
}

/// Whether any live node's lease has lapsed (checked by the leader before proposing a
/// sweep, so that an idle cluster writes nothing).
pub(super) fn has_lapsed_lease(s: &State, now: u64) -> bool {
    !lapsed(s, now).is_empty()
}

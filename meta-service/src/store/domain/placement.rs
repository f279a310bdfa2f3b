//! Shard placement over live journal nodes: least-loaded first, leaders spread by the
//! number of shards each node already leads, and epochs bumped on every leader change so
//! that a deposed leader's appends are fenced.

use robustmq_proto::meta::{Node, NodeRole, NodeState, ShardPlacement, StoragePolicy, Topic};

use crate::keys;
use crate::store::State;

/// Journal nodes that may take new replicas.
pub(super) fn live_journals(s: &State) -> Vec<u64> {
    s.list::<Node>(&keys::nodes_of(NodeRole::Journal))
        .into_iter()
        .filter(|n| n.state == NodeState::Alive as i32)
        .map(|n| n.id)
        .collect()
}

/// Journal nodes that can lead (alive or draining, not expired).
fn leader_capable(s: &State, id: u64) -> bool {
    s.get::<Node>(&keys::node(NodeRole::Journal, id))
        .is_some_and(|n| {
            n.state == NodeState::Alive as i32 || n.state == NodeState::Draining as i32
        })
}

/// Picks up to `n` live journal nodes not in `exclude`, least loaded first.
pub(super) fn pick(s: &State, n: usize, exclude: &[u64]) -> Vec<u64> {
    let mut cands: Vec<u64> = live_journals(s)
        .into_iter()
        .filter(|id| !exclude.contains(id))
        .collect();
    cands.sort_by_key(|id| (s.indexes.journal_load.get(id).copied().unwrap_or(0), *id));
    cands.truncate(n);
    cands
}

fn least_leading(s: &State, among: &[u64]) -> u64 {
    among
        .iter()
        .copied()
        .filter(|id| leader_capable(s, *id))
        .min_by_key(|id| (s.indexes.journal_leads.get(id).copied().unwrap_or(0), *id))
        .unwrap_or(0)
}

pub(super) fn desired_replicas(s: &State, topic: &Topic) -> usize {
    s.get::<StoragePolicy>(&keys::policy(&topic.storage_policy))
        .map_or(1, |p| replicas_of(&p))
}

pub(super) fn replicas_of(policy: &StoragePolicy) -> usize {
    policy.replicas.max(1) as usize
}

/// A fresh placement for a new shard.
pub(super) fn place(s: &State, topic: &str, shard: u32, replicas: usize) -> ShardPlacement {
    let chosen = pick(s, replicas, &[]);
    let leader = least_leading(s, &chosen);
    ShardPlacement {
        topic: topic.to_string(),
        shard,
        replicas: chosen,
        leader,
        epoch: u64::from(leader != 0),
    }
}

/// Fills missing replicas and elects leaders for leaderless shards. Called when journal
/// capacity appears (a node registers or comes back).
pub(super) fn heal(s: &mut State) {
    let shards: Vec<ShardPlacement> = s.list(keys::SHARDS);
    for mut p in shards {
        let Some(topic) = s.get::<Topic>(&keys::topic(&p.topic)) else {
            continue;
        };
        let want = desired_replicas(s, &topic);
        let before = p.clone();
        if p.replicas.len() < want {
            let extra = pick(s, want - p.replicas.len(), &p.replicas);
            p.replicas.extend(extra);
        }
        if p.leader == 0 {
            let leader = least_leading(s, &p.replicas);
            if leader != 0 {
                p.leader = leader;
                p.epoch += 1;
            }
        }
        if p != before {
            s.put(keys::shard(&p.topic, p.shard), &p);
        }
    }
}

/// Moves leadership away from a journal node that is gone or leaving. With `evict`, its
/// replicas are also replaced by other live nodes where any are available.
pub(super) fn evacuate(s: &mut State, node: u64, evict: bool) {
    let shards: Vec<ShardPlacement> = s
        .list::<ShardPlacement>(keys::SHARDS)
        .into_iter()
        .filter(|p| p.replicas.contains(&node))
        .collect();
    for mut p in shards {
        let before = p.clone();
        if evict {
            let replacement = pick(s, 1, &p.replicas);
            p.replicas.retain(|r| *r != node);
            p.replicas.extend(replacement);
        }
        if p.leader == node {
            // Prefer replicas that already hold the data over a just-added one.
            let survivors: Vec<u64> = before
                .replicas
                .iter()
                .copied()
                .filter(|r| *r != node)
                .collect();
            let mut leader = least_leading(s, &survivors);
            if leader == 0 {
                leader = least_leading(s, &p.replicas);
            }
            p.leader = leader;
            p.epoch += 1;
        }
        if p != before {
            s.put(keys::shard(&p.topic, p.shard), &p);
        }
    }
}

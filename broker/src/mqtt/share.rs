//! Shared subscriptions (`$share/{group}/{filter}`) balanced across brokers.
//!
//! Like a Kafka consumer group, a share group's shards are split among the brokers that
//! hold members of it:
//! - each broker registers the groups its sessions are members of in meta
//!   (`kv/mqtt-share/members/{group}/{filter}/{broker}`) and follows everyone's through a
//!   watch;
//! - every broker computes the same assignment from the same view: the bound shards in
//!   order, dealt round-robin over the live member brokers starting at a per-group place;
//! - a broker offers a shard's records to one of its own members only while it owns that
//!   shard for the group ([`Dispatcher`] keeps the ownership).
//!
//! A hand-over loses nothing. The owner checkpoints, per group and shard, the position up
//! to which its members finished the records (`kv/mqtt-share/cursors/...`): the position
//! up to which records were handed to them, lowered to the first record the group fell
//! behind on when no member had room for it ([`super::share_behind`]) and to the first
//! one a member has not acknowledged yet ([`super::share_unfinished`]); about once a
//! second, and at once when it gives a shard up or its last member of the group leaves.
//! So when the owner dies, the records its members held unacknowledged are replayed too.
//! A broker that gains a shard re-reads from that cursor up to its own live position and
//! offers those records too. Brokers whose views differ for a moment (a watch in flight,
//! a crashed broker not yet declared dead) therefore deliver some records twice, never
//! none: the QoS 1 promise.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use robustmq_proto::meta::{KvGetRequest, KvListRequest, KvPutRequest, NodeState};
use tokio_util::sync::CancellationToken;

use super::dispatch::{Dispatcher, GroupKey, ShareOwned};
use super::now_ms;
use super::state::ShardKey;
use crate::freshness::keep_fresh;
use crate::meta::{MetaClient, TopicRoutes};

const MEMBERS: &str = "mqtt-share/members/";
/// The same prefix as meta's watch sees it (user keys live under `kv/`).
const MEMBERS_WATCHED: &str = "kv/mqtt-share/members/";
const CURSORS: &str = "mqtt-share/cursors/";
/// How often owned cursors are written (when they moved) and the view is re-read.
const EVERY: Duration = Duration::from_secs(1);
/// A cursor older than this was left by a group that has had no live member since (its
/// last broker crashed long ago): a new owner starts live instead of replaying history.
const CURSOR_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// A cursor that has not moved is written again this often, to keep it younger than
/// [`CURSOR_MAX_AGE_MS`].
const REFRESH: Duration = Duration::from_secs(60);
/// At most this many records are replayed per gained shard (the newest ones).
const MAX_REPLAY: u64 = 100_000;

/// Escapes a key component so that it holds no `/`.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn unescape(s: &str) -> String {
    s.replace("%2F", "/").replace("%25", "%")
}

fn member_key(g: &GroupKey, broker: u64) -> String {
    format!("{MEMBERS}{}/{}/{broker}", escape(&g.0), escape(&g.1))
}

fn cursor_key(g: &GroupKey, shard: &ShardKey) -> String {
    format!(
        "{CURSORS}{}/{}/{}/{}",
        escape(&g.0),
        escape(&g.1),
        escape(&shard.0),
        shard.1
    )
}

/// `(group, filter, broker)` from a member key (without the `kv/` prefix).
fn parse_member_key(key: &str) -> Option<(GroupKey, u64)> {
    let mut parts = key.strip_prefix(MEMBERS)?.split('/');
    let (g, f, b) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(((unescape(g), unescape(f)), b.parse().ok()?))
}

/// A cursor value: the position, then when it was written (ms since the epoch).
fn encode_cursor(position: u64) -> Vec<u8> {
    let mut v = position.to_be_bytes().to_vec();
    v.extend_from_slice(&now_ms().to_be_bytes());
    v
}

fn decode_cursor(v: &[u8]) -> Option<(u64, u64)> {
    let position = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let written = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((position, written))
}

/// The same 64-bit FNV-1a on every broker: where a group's deal starts.
fn group_hash(g: &GroupKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in g.0.bytes().chain([0]).chain(g.1.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The shards `me` owns for group `g`: `shards` (sorted) dealt round-robin over `brokers`
/// (sorted), starting at a place that depends on the group so that many groups with few
/// shards do not all land on the lowest broker id.
pub fn assign(g: &GroupKey, brokers: &[u64], shards: &[ShardKey], me: u64) -> HashSet<ShardKey> {
    let Some(mine) = brokers.iter().position(|b| *b == me) else {
        return HashSet::new();
    };
    let n = brokers.len() as u64;
    let start = group_hash(g) % n;
    shards
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i as u64 + start) % n == mine as u64)
        .map(|(_, k)| k.clone())
        .collect()
}

/// Who holds members of which group, as last read from meta.
#[derive(Default)]
struct View {
    members: BTreeMap<GroupKey, BTreeSet<u64>>,
    /// Live brokers; `None` until first read (then nobody is filtered out).
    alive: Option<BTreeSet<u64>>,
}

/// The balancer's own state, changed only by [`ShareGroups::reconcile`].
#[derive(Default)]
struct Balance {
    /// Groups this broker has registered in meta.
    registered: BTreeSet<GroupKey>,
    /// Whether leftovers of an earlier run of this broker id were removed.
    swept: bool,
    owned: BTreeMap<GroupKey, HashSet<ShardKey>>,
    /// The last cursor written per owned (group, shard), and when.
    written: HashMap<(GroupKey, ShardKey), (u64, Instant)>,
    last_write: Option<Instant>,
}

pub struct ShareGroups {
    me: u64,
    meta: MetaClient,
    routes: TopicRoutes,
    dispatcher: Arc<Dispatcher>,
    view: Mutex<View>,
    balance: tokio::sync::Mutex<Balance>,
    view_changed: tokio::sync::Notify,
}

impl ShareGroups {
    pub fn new(
        me: u64,
        meta: MetaClient,
        routes: TopicRoutes,
        dispatcher: Arc<Dispatcher>,
    ) -> Arc<Self> {
        Arc::new(ShareGroups {
            me,
            meta,
            routes,
            dispatcher,
            view: Mutex::new(View::default()),
            balance: tokio::sync::Mutex::new(Balance::default()),
            view_changed: tokio::sync::Notify::new(),
        })
    }

    /// Follows the membership view and keeps this broker's registrations, ownership and
    /// cursors in step with its sessions until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let me = self.clone();
        let meta = self.meta.clone();
        let follow = tokio::spawn(keep_fresh(
            meta,
            MEMBERS_WATCHED,
            EVERY,
            cancel.clone(),
            "share group members",
            move || {
                let me = me.clone();
                async move {
                    // A broker without members needs no view (it owns nothing); one
                    // whose first member arrives reads it before taking any shard.
                    if me.dispatcher.share_groups().is_empty() {
                        return Ok(());
                    }
                    me.read_view().await
                }
            },
        ));
        let mut routes = self.routes.subscribe();
        while !cancel.is_cancelled() {
            self.reconcile().await;
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(EVERY) => {}
                _ = self.dispatcher.share_changed() => {}
                _ = self.view_changed.notified() => {}
                r = routes.changed() => if r.is_err() { break },
            }
        }
        follow.abort();
    }

    /// Brings registrations and ownership up to date now: a SUBSCRIBE to a shared filter
    /// waits for this before its SUBACK, so that a publish right after it is delivered.
    pub async fn sync(&self) {
        self.reconcile().await;
    }

    async fn read_view(&self) -> Result<(), tonic::Status> {
        let entries = self
            .meta
            .client()
            .kv_list(KvListRequest {
                prefix: MEMBERS.into(),
                limit: 0,
            })
            .await?
            .into_inner()
            .entries;
        let nodes = self.meta.broker_nodes().await?;
        let mut members: BTreeMap<GroupKey, BTreeSet<u64>> = BTreeMap::new();
        for (g, b) in entries.iter().filter_map(|e| parse_member_key(&e.key)) {
            members.entry(g).or_default().insert(b);
        }
        let alive = nodes
            .into_iter()
            .filter(|n| n.state == NodeState::Alive as i32)
            .map(|n| n.id)
            .collect();
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if v.members != members || v.alive.as_ref() != Some(&alive) {
            v.members = members;
            v.alive = Some(alive);
            drop(v);
            self.view_changed.notify_one();
        }
        Ok(())
    }

    /// The live brokers holding members of `g`, this one included when it has members.
    fn brokers_of(&self, g: &GroupKey, local: bool) -> Vec<u64> {
        let v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: BTreeSet<u64> = v
            .members
            .get(g)
            .into_iter()
            .flatten()
            .copied()
            .filter(|b| v.alive.as_ref().is_none_or(|a| a.contains(b)))
            .collect();
        // Our own registration may not be back through the watch yet.
        if local {
            out.insert(self.me);
        } else {
            out.remove(&self.me);
        }
        out.into_iter().collect()
    }

    async fn reconcile(&self) {
        let mut b = self.balance.lock().await;
        if !b.swept {
            b.swept = self.sweep_leftovers().await;
        }
        let local = self.dispatcher.share_groups();
        let left = self.dispatcher.take_share_left();
        if local.iter().any(|g| !b.registered.contains(g))
            && let Err(e) = self.read_view().await
        {
            tracing::warn!(error = %e, "reading share group members");
        }

        for g in local.difference(&b.registered.clone()) {
            match self.put(&member_key(g, self.me), Vec::new()).await {
                Ok(()) => {
                    b.registered.insert(g.clone());
                }
                Err(e) => {
                    tracing::warn!(group = %g.0, filter = %g.1, error = %e, "registering a share group member")
                }
            }
        }

        // Ownership first, so that a group whose last member left stops here before
        // anyone else is told to take over.
        let shards = self.routes.shards();
        let mut owned: BTreeMap<GroupKey, HashSet<ShardKey>> = BTreeMap::new();
        for g in &local {
            let mine = assign(g, &self.brokers_of(g, true), &shards, self.me);
            if !mine.is_empty() {
                owned.insert(g.clone(), mine);
            }
        }
        let mut table = ShareOwned::new();
        for (g, keys) in &owned {
            table
                .entry(g.0.clone())
                .or_default()
                .insert(g.1.clone(), keys.clone());
        }
        let positions = self.dispatcher.set_share_owned(table);
        let left: HashMap<GroupKey, HashMap<ShardKey, u64>> = left.into_iter().collect();

        // Shards given up: their cursor is where offering stopped here.
        for (g, keys) in &b.owned.clone() {
            for k in keys {
                if owned.get(g).is_some_and(|o| o.contains(k)) {
                    continue;
                }
                let at = left
                    .get(g)
                    .and_then(|p| p.get(k).copied())
                    .or_else(|| positions.delivered(g, k));
                if let Some(at) = at {
                    self.write_cursor(&mut b, g, k, at).await;
                }
                b.written.remove(&(g.clone(), k.clone()));
            }
        }
        // Deregister groups without local members only now, after their final cursors.
        for g in b.registered.clone().difference(&local) {
            match self.delete(&member_key(g, self.me)).await {
                Ok(()) => {
                    b.registered.remove(g);
                }
                Err(e) => {
                    tracing::warn!(group = %g.0, filter = %g.1, error = %e, "leaving a share group")
                }
            }
        }

        // Shards gained: re-read from the previous owner's cursor.
        let mut gained = HashSet::new();
        for (g, keys) in &owned {
            for k in keys {
                if b.owned.get(g).is_some_and(|o| o.contains(k)) {
                    continue;
                }
                if let Some(live) = positions.live(k) {
                    let from = self.take_over(g, k, live).await;
                    // At once, not when records first flow: if this broker crashes
                    // before, the next owner must still know where to start (where the
                    // replay starts: it is not finished yet either).
                    self.write_cursor(&mut b, g, k, from).await;
                    gained.insert((g.clone(), k.clone()));
                }
            }
        }
        b.owned = owned;

        if b.last_write.is_none_or(|t| t.elapsed() >= EVERY) {
            b.last_write = Some(Instant::now());
            let owned = b.owned.clone();
            for (g, keys) in &owned {
                for k in keys {
                    // `positions` predates a replay started just now.
                    if gained.contains(&(g.clone(), k.clone())) {
                        continue;
                    }
                    let Some(at) = positions.delivered(g, k) else {
                        continue;
                    };
                    // Also rewritten when it has not moved for a while: a member that
                    // holds a record unacknowledged holds the cursor, and a cursor whose
                    // write time is older than CURSOR_MAX_AGE_MS is ignored by the next
                    // owner.
                    let fresh = b
                        .written
                        .get(&(g.clone(), k.clone()))
                        .is_some_and(|(w, when)| *w == at && when.elapsed() < REFRESH);
                    if !fresh {
                        self.write_cursor(&mut b, g, k, at).await;
                    }
                }
            }
        }
    }

    /// Starts offering a gained shard: replays `[cursor, live)` on a task. Returns where
    /// the replay starts (`live` when there is nothing to replay); until its records are
    /// queued, the group's cursor does not pass that point.
    async fn take_over(&self, g: &GroupKey, k: &ShardKey, live: u64) -> u64 {
        let cursor = match self
            .meta
            .client()
            .kv_get(KvGetRequest {
                key: cursor_key(g, k),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                r.found.then(|| decode_cursor(&r.value)).flatten()
            }
            Err(e) => {
                tracing::warn!(group = %g.0, topic = %k.0, shard = k.1, error = %e, "reading a share cursor; starting live");
                None
            }
        };
        let Some((from, written)) = cursor else {
            return live;
        };
        if from >= live || now_ms().saturating_sub(written) > CURSOR_MAX_AGE_MS {
            return live;
        }
        let from = from.max(live.saturating_sub(MAX_REPLAY));
        tracing::info!(group = %g.0, filter = %g.1, topic = %k.0, shard = k.1, from, to = live, "share group shard taken over; replaying");
        let ticket = self.dispatcher.share_ticket(g, k, from);
        let (dispatcher, g, k) = (self.dispatcher.clone(), g.clone(), k.clone());
        tokio::spawn(async move {
            match dispatcher.read_range(&k, from, live).await {
                Ok(records) => dispatcher.offer_share_replay(&g, &k, &records),
                Err(e) => {
                    tracing::warn!(group = %g.0, topic = %k.0, shard = k.1, error = %e, "replaying a share group shard");
                    // A member's next tick re-reads it.
                    dispatcher.share_fall_behind(&g.0, &g.1, &k, from);
                }
            }
            drop(ticket);
        });
        from
    }

    async fn write_cursor(&self, b: &mut Balance, g: &GroupKey, k: &ShardKey, at: u64) {
        match self.put(&cursor_key(g, k), encode_cursor(at)).await {
            Ok(()) => {
                b.written
                    .insert((g.clone(), k.clone()), (at, Instant::now()));
            }
            Err(e) => {
                tracing::warn!(group = %g.0, topic = %k.0, shard = k.1, error = %e, "writing a share cursor")
            }
        }
    }

    /// Removes member keys an earlier run of this broker id left (it crashed): this run
    /// registers what its own sessions hold.
    async fn sweep_leftovers(&self) -> bool {
        let entries = match self
            .meta
            .client()
            .kv_list(KvListRequest {
                prefix: MEMBERS.into(),
                limit: 0,
            })
            .await
        {
            Ok(r) => r.into_inner().entries,
            Err(e) => {
                tracing::warn!(error = %e, "listing share group members");
                return false;
            }
        };
        for e in entries {
            if parse_member_key(&e.key).is_some_and(|(_, b)| b == self.me)
                && let Err(err) = self.delete(&e.key).await
            {
                tracing::warn!(key = %e.key, error = %err, "removing a stale share group member");
                return false;
            }
        }
        true
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), tonic::Status> {
        self.meta
            .client()
            .kv_put(KvPutRequest {
                key: key.into(),
                value: value.into(),
                expected_revision: None,
            })
            .await
            .map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<(), tonic::Status> {
        self.meta
            .client()
            .kv_delete(KvGetRequest { key: key.into() })
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: u32) -> Vec<ShardKey> {
        let t: Arc<str> = "t".into();
        (0..n).map(|i| (t.clone(), i)).collect()
    }

    #[test]
    fn every_shard_has_exactly_one_owner_and_owners_are_balanced() {
        let brokers = [1, 2, 3];
        let all = shards(10);
        for g in ["a", "b", "c", "d"] {
            let g: GroupKey = (g.into(), "x/#".into());
            let per: Vec<HashSet<ShardKey>> = brokers
                .iter()
                .map(|b| assign(&g, &brokers, &all, *b))
                .collect();
            for k in &all {
                assert_eq!(per.iter().filter(|s| s.contains(k)).count(), 1, "{k:?}");
            }
            for s in &per {
                assert!((3..=4).contains(&s.len()), "unbalanced: {per:?}");
            }
        }
        // A broker that is not a member owns nothing; a lone member owns everything.
        let g: GroupKey = ("g".into(), "f".into());
        assert!(assign(&g, &[1, 2], &all, 3).is_empty());
        assert_eq!(assign(&g, &[3], &all, 3).len(), 10);
        // Two shards over two brokers: one each, whatever the group.
        for name in ["g1", "g2", "g3"] {
            let g: GroupKey = (name.into(), "f".into());
            assert_eq!(assign(&g, &[1, 2], &shards(2), 1).len(), 1);
        }
    }

    #[test]
    fn keys_round_trip_through_escaping() {
        let g: GroupKey = ("g/%1".into(), "a/+/#".into());
        let k = member_key(&g, 7);
        assert_eq!(k.matches('/').count(), 4, "{k}");
        assert_eq!(parse_member_key(&k), Some((g.clone(), 7)));
        assert_eq!(parse_member_key("mqtt-share/members/a/b"), None);
        let (pos, written) = decode_cursor(&encode_cursor(42)).unwrap();
        assert_eq!(pos, 42);
        assert!(written > 0);
        assert!(cursor_key(&g, &("t/x".into(), 3)).ends_with("/t%2Fx/3"));
    }
}

//! [`Dispatcher`]: storage as the bus. One tailer per shard of every topic that binds an
//! MQTT filter reads from the shard's tail and hands each record to the local sessions
//! whose subscriptions match it.
//!
//! Invariant: under the table lock, a tailer dispatches a chunk of records *and* advances
//! its position. A session attaching under the same lock therefore gets every record at
//! or after the position it was shown live, and reads older ones itself (catch-up from
//! its saved progress).
//!
//! A session's queue is bounded and the tailer never waits for it. A QoS 1/2 record that
//! does not fit marks the shard "lost from offset X" for that session: nothing more of the
//! shard is queued for it until the session re-reads `[X, position)` from storage (on its
//! next one-second tick), and its saved progress never passes X meanwhile.
//!
//! Records this broker appended itself are handed over by the appender (see
//! [`AppendObserver`]) with the offsets they landed at, and dispatched at once when they
//! start exactly at the tailer's position: the tailer then neither reads nor decodes them.
//! Anything else (other brokers' or Kafka producers' records, or a hand-off that found the
//! position elsewhere) is read by the tailer as before. Both dispatch under the table lock
//! and only records at or after the position, so each record is dispatched once, in
//! offset order. In process, the tailer waits on the shard's high watermark instead of a
//! long-poll read, and while one of our appends is under way it first waits for its
//! hand-off (once per position, so foreign records are never held up for longer).
//!
//! Shared subscriptions (`$share/g/f`): a record goes to one of this broker's members of
//! the group (by offset, so consecutive records rotate), and only on the shards this broker
//! owns for the group; [`super::share`] splits a group's shards among the brokers holding
//! members and sets the ownership here. A member whose queue is full passes the record to
//! the next member in the rotation. When no member has room, a QoS 1/2 record marks the
//! group behind on the shard ([`super::share_behind`]): like a plain session's loss, the
//! group gets nothing more of that shard until one of its members re-reads the range from
//! storage on its next tick, and the group's cursor never passes the mark. QoS 0 records
//! that fit no member are dropped, as MQTT allows. The shared QoS 1/2 records a member
//! had not finished when its session ended are offered to the group's other members here
//! in the same way; with none left, they mark the group behind, so that the cursor the
//! next owner replays from does not pass them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_codec::{QoS, topic};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::share_behind::{ShareBehind, SharePositions};
use super::share_unfinished::{Ticket, Unfinished};
use super::state::{ShardKey, Sub};
use crate::meta::TopicRoutes;
use crate::storage::StorageAdapter;
use crate::storage::appender::{AppendObserver, ShardObserver};
use crate::storage::record::{MqttRecord, decode_batches};

const READ_BYTES: usize = 1 << 20;
const READ_WAIT: Duration = Duration::from_millis(500);

/// A record handed to a session, with the strongest matching subscription's options.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// False for messages that never went through storage ($SYS): no progress to track.
    pub stored: bool,
    pub key: ShardKey,
    pub offset: u64,
    pub record: Arc<MqttRecord>,
    pub qos: QoS,
    pub retain_as_published: bool,
    pub sub_ids: Vec<u32>,
    /// Set when handed to this session as one member of a share group at QoS 1/2: the
    /// record stays unfinished for the group until this is dropped (acknowledged, or
    /// discarded), and if the session ends first the group gets it again
    /// ([`Dispatcher::detach`]).
    pub ticket: Option<Ticket>,
}

struct Entry {
    client_id: String,
    tx: mpsc::Sender<Delivery>,
    subs: Vec<Sub>,
    /// Per shard, the first offset whose QoS 1/2 delivery did not fit the session's
    /// queue. Nothing more of that shard is queued until the session re-reads from here
    /// ([`Dispatcher::take_lost`]), so the re-read neither skips nor repeats a record.
    lost: HashMap<ShardKey, u64>,
}

/// Hashes connection ids, which the broker hands out itself (a counter; no client picks
/// them), with one multiplication instead of SipHash: the table looks sessions up several
/// times per record.
#[derive(Default, Clone, Copy)]
struct ConnIdHasher(u64);

impl std::hash::Hasher for ConnIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type ConnIds = std::hash::BuildHasherDefault<ConnIdHasher>;

/// For the maps looked up per record by shard key or topic (SipHash cost ~240
/// instructions a lookup there); foldhash is seeded per process like SipHash.
type FastHash = foldhash::fast::RandomState;

#[derive(Default)]
struct Table {
    sessions: HashMap<u64, Entry, ConnIds>,
    /// Next offset each tailer dispatches.
    positions: HashMap<ShardKey, u64, FastHash>,
    /// Sessions by the wildcard-free, non-shared filters they hold: a record is offered
    /// only to the sessions under its exact topic plus those in `wild`, not to every
    /// session (most IoT subscriptions name one topic; publishers hold none).
    exact: HashMap<String, HashSet<u64, ConnIds>, FastHash>,
    /// Sessions holding a wildcard or shared filter: offered every record.
    wild: HashSet<u64, ConnIds>,
    /// The sessions in `wild` that hold a shared filter.
    shared: HashSet<u64, ConnIds>,
    /// Reused for each record's candidates, so that dispatching allocates nothing per record.
    scratch: Vec<u64>,
    /// Per share group and filter, the shards whose records this broker delivers to its
    /// members of the group (other brokers deliver the rest).
    share_owned: ShareOwned,
    /// Share groups whose last local member left, with the positions at that moment: up
    /// to there the group's records were offered to a member here, so the broker that
    /// takes the group's shards over starts there.
    share_left: Vec<(GroupKey, HashMap<ShardKey, u64>)>,
    /// Where share groups fell behind on shards they own here (no member had room).
    share_behind: ShareBehind,
    /// The shared records members here have not finished, per group and shard.
    share_unfinished: Unfinished,
}

/// A share group and the filter its members subscribed to.
pub type GroupKey = (String, String);

/// group -> filter -> shards (nested so that lookups by `&str` need no allocation).
pub type ShareOwned = HashMap<String, HashMap<String, HashSet<ShardKey>>>;

/// Whether this broker delivers `key`'s records to its members of `group` / `filter`.
fn owns(owned: &ShareOwned, group: &str, filter: &str, key: &ShardKey) -> bool {
    owned
        .get(group)
        .and_then(|f| f.get(filter))
        .is_some_and(|keys| keys.contains(key))
}

fn groups_of(subs: &[Sub]) -> BTreeSet<GroupKey> {
    subs.iter()
        .filter_map(|s| Some((s.share_group.clone()?, s.filter.clone())))
        .collect()
}

impl Table {
    /// A copy of the positions, for callers outside the dispatch path.
    fn live_positions(&self) -> HashMap<ShardKey, u64> {
        self.positions
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    fn index(&mut self, conn: u64, subs: &[Sub]) {
        for s in subs {
            if s.share_group.is_none() && !s.filter.contains(['+', '#']) {
                self.exact.entry(s.filter.clone()).or_default().insert(conn);
            } else {
                self.wild.insert(conn);
                if s.share_group.is_some() {
                    self.shared.insert(conn);
                }
            }
        }
    }

    fn has_member(&self, g: &GroupKey) -> bool {
        self.shared.iter().any(|c| {
            self.sessions.get(c).is_some_and(|e| {
                e.subs
                    .iter()
                    .any(|s| s.share_group.as_ref() == Some(&g.0) && s.filter == g.1)
            })
        })
    }

    fn groups_of_conn(&self, conn: u64) -> BTreeSet<GroupKey> {
        self.sessions
            .get(&conn)
            .map(|e| groups_of(&e.subs))
            .unwrap_or_default()
    }

    /// Local share groups across all sessions.
    fn share_groups(&self) -> BTreeSet<GroupKey> {
        self.shared
            .iter()
            .filter_map(|c| self.sessions.get(c))
            .flat_map(|e| groups_of(&e.subs))
            .collect()
    }

    fn unindex(&mut self, conn: u64) {
        let Some(e) = self.sessions.get(&conn) else {
            return;
        };
        for s in &e.subs {
            if let Some(set) = self.exact.get_mut(&s.filter) {
                set.remove(&conn);
                if set.is_empty() {
                    self.exact.remove(&s.filter);
                }
            }
        }
        self.wild.remove(&conn);
        self.shared.remove(&conn);
    }

    /// The sessions a record on `topic` may match, each once, in a stable order, into
    /// `out` (reused across records so that dispatching allocates nothing per record).
    fn candidates(&self, topic: &str, out: &mut Vec<u64>) {
        out.clear();
        out.extend(self.wild.iter().copied());
        if let Some(set) = self.exact.get(topic) {
            out.extend(set.iter().copied());
        }
        out.sort_unstable();
        out.dedup();
    }
}

pub struct Dispatcher {
    table: Mutex<Table>,
    /// Woken when a share group gains its first or loses its last local member.
    share_changed: Notify,
    storage: Arc<dyn StorageAdapter>,
    dropped: std::sync::atomic::AtomicU64,
    /// Per shard, this broker's appends under way (shared by its appender and tailer).
    local: Mutex<HashMap<ShardKey, Arc<LocalAppends>, FastHash>>,
}

/// This broker's appends to one shard that have not ended yet: the tailer leaves their
/// records to the appender's hand-off rather than reading them back.
#[derive(Default)]
struct LocalAppends {
    under_way: AtomicUsize,
    ended: Notify,
}

/// The appender's view of one shard: hands landed records to the dispatcher.
struct ShardHandOff {
    dispatcher: Arc<Dispatcher>,
    key: ShardKey,
    local: Arc<LocalAppends>,
}

impl ShardObserver for ShardHandOff {
    /// Batches holding a QoS 0 record are left to the tailer. Measured (fan-in 999 -> 1 and
    /// 500 pairs at QoS 0, broker on one core): dispatching every append at once fed
    /// subscribers in small bursts and ran at about half the rate of the tailer, which
    /// reads whatever piled up since its last read in one go; at QoS 1 (the inflight window
    /// bounds the bursts anyway) the hand-off was as fast or faster (fan-in 36k vs 31k).
    fn wants(&self, records: &[MqttRecord]) -> bool {
        records.iter().all(|r| r.qos > 0)
    }

    fn begin(&self) {
        self.local.under_way.fetch_add(1, Ordering::SeqCst);
    }

    fn appended(&self, base_offset: u64, records: &mut Vec<MqttRecord>) {
        self.dispatcher.hand_off(&self.key, base_offset, records);
    }

    fn end(&self) {
        self.local.under_way.fetch_sub(1, Ordering::SeqCst);
        self.local.ended.notify_waiters();
    }
}

impl AppendObserver for Arc<Dispatcher> {
    fn shard(&self, topic: &str, shard: u32) -> Arc<dyn ShardObserver> {
        let key: ShardKey = (topic.into(), shard);
        Arc::new(ShardHandOff {
            dispatcher: self.clone(),
            local: self.local_appends(&key),
            key,
        })
    }
}

/// The strongest match of `subs` (non-shared) for `record`, as a delivery.
pub fn match_plain(
    subs: &[Sub],
    client_id: &str,
    key: &ShardKey,
    offset: u64,
    record: &Arc<MqttRecord>,
) -> Option<Delivery> {
    let mut best: Option<Delivery> = None;
    for s in subs.iter().filter(|s| s.share_group.is_none()) {
        if !topic::matches(&s.filter, &record.topic) {
            continue;
        }
        if s.no_local && record.from_client == client_id {
            continue;
        }
        let qos = s.qos.min(QoS::from_u8(record.qos).unwrap_or_default());
        let d = best.get_or_insert_with(|| Delivery {
            stored: true,
            key: key.clone(),
            offset,
            record: record.clone(),
            qos,
            retain_as_published: false,
            sub_ids: vec![],
            ticket: None,
        });
        d.qos = d.qos.max(qos);
        d.retain_as_published |= s.retain_as_published;
        if let Some(id) = s.id {
            d.sub_ids.push(id);
        }
    }
    best
}

/// The delivery of `record` to a share group member subscribed with `s`; `reuse` is a
/// delivery of the same record another member's full queue gave back (a delivery to
/// the same group). At QoS 1/2 it carries a ticket of the group's slot in `unfinished`.
fn shared_delivery(
    s: &Sub,
    key: &ShardKey,
    offset: u64,
    record: &Arc<MqttRecord>,
    reuse: Option<Delivery>,
    unfinished: &mut Unfinished,
) -> Delivery {
    let qos = s.qos.min(QoS::from_u8(record.qos).unwrap_or_default());
    let mut d = match reuse {
        Some(mut d) => {
            d.qos = qos;
            d.retain_as_published = s.retain_as_published;
            d.sub_ids.clear();
            d.sub_ids.extend(s.id);
            d
        }
        None => Delivery {
            stored: true,
            key: key.clone(),
            offset,
            record: record.clone(),
            qos,
            retain_as_published: s.retain_as_published,
            sub_ids: s.id.into_iter().collect(),
            ticket: None,
        },
    };
    if qos == QoS::AtMostOnce {
        d.ticket = None;
    } else if d.ticket.is_none()
        && let Some(g) = &s.share_group
    {
        d.ticket = Some(unfinished.ticket(g, &s.filter, key, offset));
    }
    d
}

/// The delivery of `record` to a member subscribed with the shared `s`, if it matches.
fn match_shared(
    s: &Sub,
    key: &ShardKey,
    offset: u64,
    record: &Arc<MqttRecord>,
    unfinished: &mut Unfinished,
) -> Option<Delivery> {
    topic::matches(&s.filter, &record.topic)
        .then(|| shared_delivery(s, key, offset, record, None, unfinished))
}

/// A shared QoS 1/2 record a session that ended had not finished (queued in its
/// outbound queue, or sent and not acknowledged), with a ticket that keeps it unfinished
/// until it is handed back.
#[derive(Debug, Clone)]
pub struct HeldShared {
    pub key: ShardKey,
    pub offset: u64,
    pub record: Arc<MqttRecord>,
    pub ticket: Option<Ticket>,
}

/// A range of one shard that a share group fell behind on, claimed by one member (whose
/// shared subscription `sub` is) to re-read from storage and deliver itself.
#[derive(Debug, Clone)]
pub struct ShareReread {
    pub sub: Sub,
    pub key: ShardKey,
    pub from: u64,
    pub to: u64,
    /// Keeps `from` unfinished for the group from the claim until the re-read records,
    /// with tickets of their own, are queued: the cursor must not pass the range meanwhile.
    pub ticket: Ticket,
}

impl Dispatcher {
    pub fn new(storage: Arc<dyn StorageAdapter>) -> Self {
        Dispatcher {
            table: Mutex::new(Table::default()),
            share_changed: Notify::new(),
            storage,
            dropped: Default::default(),
            local: Mutex::new(HashMap::default()),
        }
    }

    fn local_appends(&self, key: &ShardKey) -> Arc<LocalAppends> {
        let mut m = self.local.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(key.clone()).or_default().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Registers a connection's subscriptions; returns the live positions it starts from.
    pub fn attach(
        &self,
        conn: u64,
        client_id: &str,
        tx: mpsc::Sender<Delivery>,
        subs: Vec<Sub>,
    ) -> HashMap<ShardKey, u64> {
        let mut t = self.lock();
        let before = t.groups_of_conn(conn);
        t.unindex(conn);
        t.index(conn, &subs);
        let after = groups_of(&subs);
        t.sessions.insert(
            conn,
            Entry {
                client_id: client_id.to_string(),
                tx,
                subs,
                lost: HashMap::new(),
            },
        );
        self.groups_changed(&mut t, before, after);
        t.live_positions()
    }

    pub fn set_subs(&self, conn: u64, subs: Vec<Sub>) {
        let mut t = self.lock();
        if !t.sessions.contains_key(&conn) {
            return;
        }
        let before = t.groups_of_conn(conn);
        t.unindex(conn);
        t.index(conn, &subs);
        let after = groups_of(&subs);
        if let Some(e) = t.sessions.get_mut(&conn) {
            e.subs = subs;
        }
        self.groups_changed(&mut t, before, after);
    }

    /// After one connection's share groups went from `before` to `after`: notes groups
    /// that lost their last local member (and where), and wakes [`super::share`] when
    /// the set of local groups changed.
    fn groups_changed(&self, t: &mut Table, before: BTreeSet<GroupKey>, after: BTreeSet<GroupKey>) {
        if before == after {
            return;
        }
        let mut changed = after.iter().any(|g| !before.contains(g));
        for g in before.into_iter().filter(|g| !after.contains(g)) {
            if !t.has_member(&g) {
                // Up to there the group's records were handed to a member, save those it
                // fell behind on: nobody here re-reads them now, the next owner must.
                let mut at = t.live_positions();
                t.share_behind.lower(&g, &mut at);
                t.share_behind.take(&g.0, &g.1);
                t.share_left.push((g, at));
                changed = true;
            }
        }
        if changed {
            self.share_changed.notify_one();
        }
    }

    /// The share groups this broker's sessions are members of.
    pub fn share_groups(&self) -> BTreeSet<GroupKey> {
        self.lock().share_groups()
    }

    /// Share groups whose last local member left since the last call, each with the
    /// positions at that moment.
    pub fn take_share_left(&self) -> Vec<(GroupKey, HashMap<ShardKey, u64>)> {
        std::mem::take(&mut self.lock().share_left)
    }

    /// Resolves when a share group gained its first or lost its last local member.
    pub async fn share_changed(&self) {
        self.share_changed.notified().await
    }

    /// Replaces the shards this broker delivers per share group; returns the positions and
    /// the groups' behind marks at that moment (a gained shard's records from there on are
    /// delivered live; a given-up shard's cursor is where its group's deliveries stopped).
    /// Marks on shards no longer owned are dropped: their next owner replays from the
    /// cursor, which is at or below the mark.
    pub fn set_share_owned(&self, owned: ShareOwned) -> SharePositions {
        let mut t = self.lock();
        let at = SharePositions {
            positions: t.live_positions(),
            behind: t.share_behind.clone(),
            unfinished: t.share_unfinished.lowest(),
        };
        t.share_owned = owned;
        let Table {
            share_owned,
            share_behind,
            share_unfinished,
            ..
        } = &mut *t;
        share_behind.retain(|g, f, k| owns(share_owned, g, f, k));
        share_unfinished.retain(|g, f, k| owns(share_owned, g, f, k));
        at
    }

    /// Marks group `g` (filter `f`) behind on `key` from `from`, while this broker owns
    /// the shard for it: a re-read that failed is retried by the next member's tick.
    pub fn share_fall_behind(&self, g: &str, f: &str, key: &ShardKey, from: u64) {
        let mut t = self.lock();
        let Table {
            share_owned,
            share_behind,
            ..
        } = &mut *t;
        if owns(share_owned, g, f, key) {
            share_behind.fall_behind(g, f, key, from);
        }
    }

    /// Keeps `offset` of `key` unfinished for group `g` while the ticket lives (a replay
    /// under way: its records get tickets of their own only once read).
    pub fn share_ticket(&self, g: &GroupKey, key: &ShardKey, offset: u64) -> Ticket {
        self.lock().share_unfinished.ticket(&g.0, &g.1, key, offset)
    }

    /// Offers records of `key` re-read from storage to this broker's members of one
    /// share group, while it still owns the shard for the group (a hand-over). A record
    /// no member has room for marks the group behind there, like a live one.
    pub fn offer_share_replay(
        &self,
        g: &GroupKey,
        key: &ShardKey,
        records: &[(u64, Arc<MqttRecord>)],
    ) {
        let mut t = self.lock();
        for (offset, record) in records {
            self.offer_shared(&mut t, key, *offset, record, Some(g));
        }
    }

    /// The current positions, for a checkpoint of a live session: every record below
    /// them is already in the sessions' queues.
    pub fn positions(&self) -> HashMap<ShardKey, u64> {
        self.lock().live_positions()
    }

    /// Removes a connection whose session ended. `held` are the shared QoS 1/2 records
    /// its session had not finished (queued or unacknowledged); the deliveries still in
    /// `rx` are drained under the lock (nothing more is queued after the removal) and
    /// returned. Each unfinished shared record goes back to its group (MQTT 5.0 4.8.2:
    /// the server should deliver it to another member): it is offered to the remaining
    /// members here like a live one (no room: the group falls behind there and a member
    /// re-reads); with none left, the group is marked behind there, so the cursor
    /// written for the next owner does not pass it.
    ///
    /// Returns the positions at which the connection stopped receiving, lowered to the
    /// first record it lost on shards where it fell behind, and the drained deliveries.
    pub fn detach(
        &self,
        conn: u64,
        held: &[HeldShared],
        rx: &mut mpsc::Receiver<Delivery>,
    ) -> (HashMap<ShardKey, u64>, Vec<Delivery>) {
        let mut t = self.lock();
        let before = t.groups_of_conn(conn);
        t.unindex(conn);
        let entry = t.sessions.remove(&conn);
        let queued: Vec<Delivery> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        if let Some(e) = &entry {
            let mut unfinished: Vec<(&ShardKey, u64, &Arc<MqttRecord>)> = held
                .iter()
                .map(|h| (&h.key, h.offset, &h.record))
                .chain(
                    queued
                        .iter()
                        .filter(|d| d.ticket.is_some())
                        .map(|d| (&d.key, d.offset, &d.record)),
                )
                .collect();
            unfinished.sort_by_key(|(k, o, _)| (*k, *o));
            // Which of its groups a delivery came from is not kept: each matching group
            // the session is a member of gets it again (at worst a duplicate).
            for g in groups_of(&e.subs) {
                if t.has_member(&g) {
                    for (key, offset, record) in &unfinished {
                        self.offer_shared(&mut t, key, *offset, record, Some(&g));
                    }
                    continue;
                }
                // Nobody left here: the cursor written for the next owner stops at it.
                let Table {
                    share_owned,
                    share_behind,
                    ..
                } = &mut *t;
                for (key, offset, record) in &unfinished {
                    if owns(share_owned, &g.0, &g.1, key) && topic::matches(&g.1, &record.topic) {
                        share_behind.fall_behind(&g.0, &g.1, key, *offset);
                    }
                }
            }
        }
        self.groups_changed(&mut t, before, BTreeSet::new());
        let mut positions = t.live_positions();
        for (k, from) in entry.map(|e| e.lost).unwrap_or_default() {
            positions.insert(k, from);
        }
        (positions, queued)
    }

    /// Like [`Dispatcher::positions`], lowered to the first record `conn` lost per shard.
    pub fn positions_for(&self, conn: u64) -> HashMap<ShardKey, u64> {
        let t = self.lock();
        let mut positions = t.live_positions();
        if let Some(e) = t.sessions.get(&conn) {
            for (k, from) in &e.lost {
                positions.insert(k.clone(), *from);
            }
        }
        positions
    }

    /// Hands one chunk of records read from `read_from` to matching sessions and advances
    /// the position to `next`; returns the position to read from next. Records below the
    /// position (a hand-off got there first) are left out.
    fn dispatch(
        &self,
        key: &ShardKey,
        read_from: u64,
        mut records: Vec<(u64, Arc<MqttRecord>)>,
        next: u64,
    ) -> u64 {
        let mut t = self.lock();
        let pos = t.positions.get(key).copied().unwrap_or(read_from);
        // `next` below `read_from` is storage resetting a reader past its end (after a
        // truncation): follow it. Otherwise only a hand-off moves the position ahead.
        if pos > read_from && next >= read_from {
            if next <= pos {
                return pos;
            }
            records.retain(|(o, _)| *o >= pos);
        }
        for (offset, record) in &records {
            self.offer(&mut t, key, *offset, record);
        }
        t.positions.insert(key.clone(), next);
        next
    }

    /// Dispatches records this broker's appender stored at `base_offset` if they are the
    /// next the tailer would read; otherwise leaves them to the tailer (which reads from
    /// storage whatever was appended before them).
    fn hand_off(&self, key: &ShardKey, base_offset: u64, records: &mut Vec<MqttRecord>) {
        let mut t = self.lock();
        if t.positions.get(key) != Some(&base_offset) {
            return;
        }
        let mut offset = base_offset;
        for record in records.drain(..) {
            self.offer(&mut t, key, offset, &Arc::new(record));
            offset += 1;
        }
        if let Some(p) = t.positions.get_mut(key) {
            *p = offset;
        }
    }

    /// Queues one record for every session it matches.
    fn offer(&self, t: &mut Table, key: &ShardKey, offset: u64, record: &Arc<MqttRecord>) {
        let mut candidates = std::mem::take(&mut t.scratch);
        t.candidates(&record.topic, &mut candidates);
        for conn in candidates.iter() {
            let Some(e) = t.sessions.get_mut(conn) else {
                continue;
            };
            if e.lost.contains_key(key) {
                continue;
            }
            if let Some(d) = match_plain(&e.subs, &e.client_id, key, offset, record)
                && !self.send(&e.tx, d)
                && QoS::from_u8(record.qos).unwrap_or_default() != QoS::AtMostOnce
            {
                e.lost.insert(key.clone(), offset);
            }
        }
        t.scratch = candidates;
        self.offer_shared(t, key, offset, record, None);
    }

    /// Queues one record for one member of each share group (or only of `only`) that
    /// matches it, among the groups this broker owns `key` for and is not behind on. The
    /// member is picked by offset, so consecutive records rotate; a member whose queue is
    /// full passes the record on to the next in that order. If none has room, the
    /// delivery counts as dropped (as a plain one that does not fit does) and a QoS 1/2
    /// record marks the group behind from here.
    fn offer_shared(
        &self,
        t: &mut Table,
        key: &ShardKey,
        offset: u64,
        record: &Arc<MqttRecord>,
        only: Option<&GroupKey>,
    ) {
        if t.shared.is_empty() {
            return;
        }
        let Table {
            sessions,
            shared,
            share_owned,
            share_behind,
            share_unfinished,
            ..
        } = t;
        let mut groups: BTreeMap<(&str, &str), Vec<(u64, &Sub)>> = BTreeMap::new();
        for conn in shared.iter() {
            let Some(e) = sessions.get(conn) else {
                continue;
            };
            for s in e.subs.iter() {
                if let Some(g) = &s.share_group
                    && only.is_none_or(|o| o.0 == *g && o.1 == s.filter)
                    && owns(share_owned, g, &s.filter, key)
                    && topic::matches(&s.filter, &record.topic)
                {
                    groups.entry((g, &s.filter)).or_default().push((*conn, s));
                }
            }
        }
        for ((g, f), mut members) in groups {
            if !share_behind.is_empty()
                && share_behind
                    .from(g, f, key)
                    .is_some_and(|from| from <= offset)
            {
                // The member that re-reads the range delivers this one too.
                continue;
            }
            members.sort_by_key(|(c, _)| *c);
            let n = members.len();
            let first = (offset % n as u64) as usize;
            // A delivery a full queue gave back, reused for the next member.
            let mut spare = None;
            let mut reliable = false;
            let delivered = (0..n).any(|i| {
                let (conn, s) = members[(first + i) % n];
                let Some(e) = sessions.get(&conn) else {
                    return false;
                };
                let d = shared_delivery(s, key, offset, record, spare.take(), share_unfinished);
                reliable |= d.qos != QoS::AtMostOnce;
                match e.tx.try_send(d) {
                    Ok(()) => true,
                    Err(TrySendError::Full(d) | TrySendError::Closed(d)) => {
                        spare = Some(d);
                        false
                    }
                }
            });
            if !delivered {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if reliable {
                    share_behind.fall_behind(g, f, key, offset);
                }
            }
        }
    }

    /// Delivers a broker-generated message ($SYS) to this broker's matching sessions at
    /// QoS 0, without storing it.
    pub fn deliver_local(&self, record: MqttRecord) {
        let record = Arc::new(record);
        let key: ShardKey = (Arc::from(""), 0);
        let t = self.lock();
        for e in t.sessions.values() {
            if let Some(mut d) = match_plain(&e.subs, &e.client_id, &key, 0, &record) {
                d.stored = false;
                d.qos = QoS::AtMostOnce;
                self.send(&e.tx, d);
            }
        }
    }

    /// Queues a delivery without waiting: one slow session must never stall the tailer.
    /// Returns false when the queue was full (QoS 1/2 records are then re-read from
    /// storage by the session, see `lost`; QoS 0 ones are dropped, as MQTT allows).
    fn send(&self, tx: &mpsc::Sender<Delivery>, d: Delivery) -> bool {
        if tx.try_send(d).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The shards where `conn` fell behind, each as `(from, to)`: re-read `[from, to)`
    /// from storage; later records arrive through the queue again.
    pub fn take_lost(&self, conn: u64) -> Vec<(ShardKey, u64, u64)> {
        let mut t = self.lock();
        let Table {
            sessions,
            positions,
            ..
        } = &mut *t;
        let Some(e) = sessions.get_mut(&conn) else {
            return Vec::new();
        };
        e.lost
            .drain()
            .map(|(k, from)| {
                let to = positions.get(&k).copied().unwrap_or(from);
                (k, from, to)
            })
            .collect()
    }

    /// Claims, for member `conn`, the ranges its share groups fell behind on: the caller
    /// re-reads each ([`Dispatcher::reread_share`]) and delivers it itself. From here on the
    /// groups get those shards' records live again (the ranges end at the live position).
    pub fn take_share_behind(&self, conn: u64) -> Vec<ShareReread> {
        let mut t = self.lock();
        if t.share_behind.is_empty() {
            return Vec::new();
        }
        let Table {
            sessions,
            positions,
            share_behind,
            share_unfinished,
            ..
        } = &mut *t;
        let Some(e) = sessions.get(&conn) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in &e.subs {
            let Some(g) = &s.share_group else {
                continue;
            };
            for (key, from) in share_behind.take(g, &s.filter) {
                // No position: the shard is no longer tailed (its binding went away).
                if let Some(&to) = positions.get(&key)
                    && from < to
                {
                    out.push(ShareReread {
                        ticket: share_unfinished.ticket(g, &s.filter, &key, from),
                        sub: s.clone(),
                        key,
                        from,
                        to,
                    });
                }
            }
        }
        out
    }

    /// Reads a claimed range back from storage as deliveries for the member that claimed
    /// it. If the read fails, the group is marked behind there again (while this broker
    /// still owns the shard for it) for the next member's tick.
    pub async fn reread_share(&self, r: &ShareReread) -> Vec<Delivery> {
        match self.read_range(&r.key, r.from, r.to).await {
            Ok(records) => {
                let mut t = self.lock();
                records
                    .iter()
                    .filter_map(|(offset, record)| {
                        match_shared(&r.sub, &r.key, *offset, record, &mut t.share_unfinished)
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!(topic = %r.key.0, shard = r.key.1, from = r.from, to = r.to, error = %e, "re-reading what a share group fell behind on");
                if let Some(g) = &r.sub.share_group {
                    self.share_fall_behind(g, &r.sub.filter, &r.key, r.from);
                }
                Vec::new()
            }
        }
    }

    /// Starts tailers for every bound shard and returns once each has its starting
    /// position (so sessions attaching afterwards can catch up to it); then follows
    /// binding changes on a task until cancelled.
    pub async fn start(
        self: Arc<Self>,
        routes: TopicRoutes,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let mut changes = routes.subscribe();
        changes.borrow_and_update();
        let mut tailers: HashMap<ShardKey, CancellationToken> = HashMap::new();
        self.sync(&routes, &mut tailers, &cancel).await;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
                self.sync(&routes, &mut tailers, &cancel).await;
            }
        })
    }

    async fn sync(
        self: &Arc<Self>,
        routes: &TopicRoutes,
        tailers: &mut HashMap<ShardKey, CancellationToken>,
        cancel: &CancellationToken,
    ) {
        let wanted: Vec<ShardKey> = routes.shards();
        tailers.retain(|k, tok| {
            let keep = wanted.contains(k);
            if !keep {
                tok.cancel();
                self.lock().positions.remove(k);
            }
            keep
        });
        for key in wanted {
            if tailers.contains_key(&key) {
                continue;
            }
            let start = self.start_offset(&key, cancel).await;
            self.lock().positions.insert(key.clone(), start);
            let tok = cancel.child_token();
            tokio::spawn(self.clone().tail(key.clone(), start, tok.clone()));
            tailers.insert(key, tok);
        }
    }

    /// The high watermark: new subscriptions start from "now".
    async fn start_offset(&self, key: &ShardKey, cancel: &CancellationToken) -> u64 {
        for attempt in 0..50u32 {
            match self.storage.offsets(&key.0, key.1).await {
                Ok(o) => return o.high_watermark,
                Err(e) => {
                    tracing::warn!(topic = %key.0, shard = key.1, attempt, error = %e, "reading shard offsets");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return 0,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        0
    }

    async fn tail(self: Arc<Self>, key: ShardKey, mut offset: u64, cancel: CancellationToken) {
        let (topic, shard) = (key.0.clone(), key.1);
        let local = self.local_appends(&key);
        let mut hw = None;
        let mut watched = false;
        // The last attempt to watch the high watermark failed (the journal was
        // unreachable): long-poll reads until a retry after the next read succeeds.
        let mut watch_failed = false;
        // The position at which the tailer last waited for one of our appends to end.
        let mut deferred_at = None;
        // A read the watch said had records returned none: long-poll once instead.
        let mut poll = false;
        loop {
            if !watched {
                // Where storage cannot follow the high watermark, `read` long-polls.
                let w = self.storage.watch_high_watermark(&topic, shard).await;
                watch_failed = w.is_err();
                hw = w.ok().flatten();
                watched = true;
            }
            let mut wait = READ_WAIT;
            if let Some(w) = hw.as_mut().filter(|_| !std::mem::take(&mut poll)) {
                let ended = local.ended.notified();
                tokio::pin!(ended);
                // Registered before the checks below, so an end between them still wakes us.
                ended.as_mut().enable();
                let high = *w.borrow_and_update();
                offset = self.position(&key).unwrap_or(offset);
                let ours = local.under_way.load(Ordering::SeqCst) > 0;
                if offset == high || (offset < high && ours && deferred_at != Some(offset)) {
                    if offset < high {
                        deferred_at = Some(offset);
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = w.changed() => if r.is_err() {
                            // The shard was closed or replaced: follow it anew.
                            hw = None;
                            watched = false;
                        },
                        _ = &mut ended => {}
                    }
                    continue;
                }
                // Past the high watermark (a truncation) or records to read: read now.
                wait = Duration::ZERO;
            } else {
                offset = self.position(&key).unwrap_or(offset);
            }
            let read = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.storage.read(&topic, shard, offset, READ_BYTES, wait) => r,
            };
            match read {
                Ok(r) => {
                    let next = r.next_offset;
                    poll = wait.is_zero() && r.records.is_empty() && next == offset;
                    // A hand-off may have dispatched some or all of these already.
                    let from = self.position(&key).unwrap_or(offset).max(offset);
                    if from > offset && next <= from && next >= offset {
                        offset = from;
                        continue;
                    }
                    let records = match decode_batches(&r.records, from) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::error!(%topic, shard, offset, error = %e, "undecodable records skipped");
                            Vec::new()
                        }
                    };
                    let records = records
                        .into_iter()
                        .map(|s| (s.offset, Arc::new(s.record)))
                        .collect();
                    offset = self.dispatch(&key, offset, records, next);
                    if watch_failed {
                        watched = false;
                    }
                }
                Err(e) => {
                    tracing::warn!(%topic, shard, offset, error = %e, "tailing shard");
                    watched = false;
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }

    /// The next offset the tailer of `key` dispatches.
    fn position(&self, key: &ShardKey) -> Option<u64> {
        self.lock().positions.get(key).copied()
    }

    /// Reads `[from, to)` of a shard for a resuming session.
    pub async fn read_range(
        &self,
        key: &ShardKey,
        from: u64,
        to: u64,
    ) -> crate::Result<Vec<(u64, Arc<MqttRecord>)>> {
        let mut out = Vec::new();
        let mut offset = from;
        while offset < to {
            let r = self
                .storage
                .read(&key.0, key.1, offset, READ_BYTES, Duration::from_millis(1))
                .await?;
            if r.records.is_empty() || r.next_offset <= offset {
                break;
            }
            for s in decode_batches(&r.records, offset)? {
                if s.offset < to {
                    out.push((s.offset, Arc::new(s.record)));
                }
            }
            offset = r.next_offset;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::memory_for_tests;
    use mqtt_codec::{RetainHandling, SubscriptionOptions};

    fn qos1_options() -> SubscriptionOptions {
        SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }

    fn record(qos: u8) -> Arc<MqttRecord> {
        Arc::new(MqttRecord {
            topic: "a/b".into(),
            qos,
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_full_queue_marks_qos1_records_lost_and_skips_the_shard_until_reread() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let key: ShardKey = ("t".into(), 0);
        let opts = qos1_options();
        let (tx, mut rx) = mpsc::channel(1);
        d.attach(7, "c", tx, vec![Sub::new("a/#", &opts, None).unwrap()]);

        d.dispatch(&key, 0, (0..3).map(|o| (o, record(1))).collect(), 3);
        assert_eq!(rx.try_recv().unwrap().offset, 0);
        // Room again, but the shard stays skipped until the session re-reads.
        d.dispatch(&key, 3, vec![(3, record(1))], 4);
        assert!(rx.try_recv().is_err(), "nothing after a loss is queued");
        assert_eq!(d.positions_for(7)[&key], 1, "progress holds at the loss");
        assert_eq!(d.take_lost(7), vec![(key.clone(), 1, 4)]);
        d.dispatch(&key, 4, vec![(4, record(1))], 5);
        assert_eq!(
            rx.try_recv().unwrap().offset,
            4,
            "live again after the re-read"
        );

        // QoS 0 records that do not fit are simply dropped.
        d.dispatch(&key, 5, vec![(5, record(0)), (6, record(0))], 7);
        assert!(d.take_lost(7).is_empty());
        assert_eq!(d.detach(7, &[], &mut rx).0[&key], 7);
    }

    fn shared_member(d: &Dispatcher, conn: u64, room: usize) -> mpsc::Receiver<Delivery> {
        let (tx, rx) = mpsc::channel(room);
        let sub = Sub::new("$share/g/a/#", &qos1_options(), None).unwrap();
        d.attach(conn, &format!("m{conn}"), tx, vec![sub]);
        rx
    }

    fn queued(rx: &mut mpsc::Receiver<Delivery>) -> Vec<u64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|d| d.offset)
            .collect()
    }

    #[tokio::test]
    async fn a_shared_record_its_member_has_no_room_for_goes_to_the_next_member() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let key: ShardKey = ("t".into(), 0);
        let g: GroupKey = ("g".into(), "a/#".into());
        let mut rx1 = shared_member(&d, 1, 1);
        let mut rx2 = shared_member(&d, 2, 16);
        d.set_share_owned(owned("g", "a/#", std::slice::from_ref(&key)));

        // Member 1's turns are the even offsets; after the first its queue is full.
        d.dispatch(&key, 0, (0..6).map(|o| (o, record(1))).collect(), 6);
        assert_eq!(queued(&mut rx1), [0]);
        assert_eq!(queued(&mut rx2), [1, 2, 3, 4, 5]);
        assert_eq!(d.dropped(), 0);
        let at = d.set_share_owned(owned("g", "a/#", std::slice::from_ref(&key)));
        assert_eq!(at.delivered(&g, &key), Some(6));
        assert!(d.take_share_behind(1).is_empty() && d.take_share_behind(2).is_empty());
    }

    #[tokio::test]
    async fn a_group_without_room_falls_behind_and_a_member_rereads_what_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageAdapter> = Arc::new(memory_for_tests(dir.path()));
        let d = Dispatcher::new(storage.clone());
        let key: ShardKey = ("t".into(), 0);
        let g: GroupKey = ("g".into(), "a/#".into());
        for n in 0..8 {
            let r = MqttRecord {
                topic: if n == 3 { "x/y" } else { "a/b" }.into(),
                qos: 1,
                payload: bytes::Bytes::from(format!("m{n}")),
                ..Default::default()
            };
            let batch = crate::storage::record::encode_batch(&[r]);
            storage.append("t", 0, vec![batch]).await.unwrap();
        }
        let mut rx1 = shared_member(&d, 1, 1);
        let mut rx2 = shared_member(&d, 2, 1);
        let own = || owned("g", "a/#", std::slice::from_ref(&key));
        d.set_share_owned(own());

        // 0 and 1 fill both queues; 2 fits nobody.
        d.dispatch(&key, 0, (0..3).map(|o| (o, record(1))).collect(), 3);
        assert_eq!(d.dropped(), 1);
        assert_eq!(
            d.set_share_owned(own()).delivered(&g, &key),
            Some(0),
            "the cursor stops at the first record a member has not finished"
        );
        assert_eq!((queued(&mut rx1), queued(&mut rx2)), (vec![0], vec![1]));
        assert_eq!(
            d.set_share_owned(own()).delivered(&g, &key),
            Some(2),
            "the members finished theirs; the cursor stops at the record no member took"
        );

        // Room again, but the group stays behind until a member re-reads.
        d.dispatch(&key, 3, (3..5).map(|o| (o, record(1))).collect(), 5);
        assert!(queued(&mut rx1).is_empty() && queued(&mut rx2).is_empty());
        assert_eq!(d.set_share_owned(own()).delivered(&g, &key), Some(2));

        // One member claims the range up to the live position and delivers it itself
        // (3 is on another topic); the group is live again.
        let claimed = d.take_share_behind(2);
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (&claimed[0].key, claimed[0].from, claimed[0].to),
            (&key, 2, 5)
        );
        assert!(d.take_share_behind(1).is_empty(), "claimed once");
        let reread: Vec<(u64, String)> = d
            .reread_share(&claimed[0])
            .await
            .into_iter()
            .map(|d| {
                let payload = String::from_utf8_lossy(&d.record.payload).into_owned();
                (d.offset, payload)
            })
            .collect();
        assert_eq!(reread, [(2, "m2".to_string()), (4, "m4".to_string())]);
        assert_eq!(
            d.set_share_owned(own()).delivered(&g, &key),
            Some(2),
            "the claim holds the cursor until its records are in the member's session"
        );
        drop(claimed);
        d.dispatch(&key, 5, vec![(5, record(1))], 6);
        assert_eq!(queued(&mut rx2), [5]);
        assert_eq!(d.set_share_owned(own()).delivered(&g, &key), Some(6));

        // QoS 0 records that fit nobody are dropped (and counted), not re-read.
        d.dispatch(&key, 6, (6..8).map(|o| (o, record(1))).collect(), 8);
        d.dispatch(&key, 8, vec![(8, record(0))], 9);
        assert_eq!(d.dropped(), 2);
        assert!(d.take_share_behind(1).is_empty());
        assert_eq!(
            d.set_share_owned(own()).delivered(&g, &key),
            Some(6),
            "6 and 7 wait in the members' queues"
        );

        // The group's last member leaving while it is behind: the next owner starts at
        // the record nobody took.
        d.dispatch(&key, 9, vec![(9, record(1))], 10);
        // (The members finished what they had been handed.)
        assert_eq!((queued(&mut rx1), queued(&mut rx2)), (vec![6], vec![7]));
        assert_eq!(d.set_share_owned(own()).delivered(&g, &key), Some(9));
        d.detach(1, &[], &mut rx1);
        d.detach(2, &[], &mut rx2);
        let left = d.take_share_left();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1[&key], 9);
    }

    #[tokio::test]
    async fn the_cursor_stops_at_the_first_shared_record_a_member_has_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let key: ShardKey = ("t".into(), 0);
        let g: GroupKey = ("g".into(), "a/#".into());
        let mut rx1 = shared_member(&d, 1, 16);
        let mut rx2 = shared_member(&d, 2, 16);
        let own = || owned("g", "a/#", std::slice::from_ref(&key));
        d.set_share_owned(own());
        let delivered = || d.set_share_owned(own()).delivered(&g, &key);

        // 0..6 at QoS 1 alternate between the members; 6 is QoS 0 (nothing to finish).
        d.dispatch(&key, 0, (0..6).map(|o| (o, record(1))).collect(), 6);
        d.dispatch(&key, 6, vec![(6, record(0))], 7);
        let mut held1: Vec<Delivery> = std::iter::from_fn(|| rx1.try_recv().ok()).collect();
        let held2: Vec<Delivery> = std::iter::from_fn(|| rx2.try_recv().ok()).collect();
        let offsets = |v: &[Delivery]| v.iter().map(|d| d.offset).collect::<Vec<_>>();
        assert_eq!(
            (offsets(&held1), offsets(&held2)),
            (vec![0, 2, 4, 6], vec![1, 3, 5])
        );
        assert_eq!(delivered(), Some(0), "nothing acknowledged yet");

        // Member 1 acknowledges 0 and 2; member 2's 1 is now the first open one.
        held1.drain(..2);
        assert_eq!(delivered(), Some(1));
        drop(held2);
        assert_eq!(delivered(), Some(4));
        drop(held1);
        assert_eq!(delivered(), Some(7), "all finished: the live position");
    }

    #[tokio::test]
    async fn what_a_leaving_member_had_not_finished_goes_back_to_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let (key, other): (ShardKey, ShardKey) = (("t".into(), 0), ("t".into(), 1));
        let g: GroupKey = ("g".into(), "a/#".into());
        let mut rx1 = shared_member(&d, 1, 16);
        let mut rx2 = shared_member(&d, 2, 16);
        let mut rx3 = shared_member(&d, 3, 2);
        let own = || owned("g", "a/#", std::slice::from_ref(&key));
        d.set_share_owned(own());
        d.dispatch(&other, 0, vec![], 10);
        let held = |key: &ShardKey, offset| HeldShared {
            key: key.clone(),
            offset,
            record: record(1),
            ticket: None,
        };

        // 0..6 rotate over the three members; member 3's queue is full after 2 and 5.
        d.dispatch(&key, 0, (0..6).map(|o| (o, record(1))).collect(), 6);
        assert_eq!(queued(&mut rx1), [0, 3]);
        // Member 2 took 1 into its session and has not acknowledged it; 4 is still in
        // its queue. Both go to the member with room, nothing is re-read.
        assert_eq!(rx2.try_recv().unwrap().offset, 1);
        let (_, queued_at_exit) = d.detach(2, &[held(&key, 1)], &mut rx2);
        assert_eq!(
            queued_at_exit.iter().map(|d| d.offset).collect::<Vec<_>>(),
            [4]
        );
        assert_eq!(queued(&mut rx1), [1, 4]);
        assert_eq!(
            d.set_share_owned(own()).delivered(&g, &key),
            Some(2),
            "member 3 has not finished 2 and 5"
        );

        // Member 1 leaves holding both unacknowledged; member 3 has no room: the group
        // falls behind from the lowest, and member 3 re-reads from there on its tick.
        d.detach(1, &[held(&key, 4), held(&key, 1)], &mut rx1);
        assert_eq!(d.set_share_owned(own()).delivered(&g, &key), Some(1));
        let claimed = d.take_share_behind(3);
        assert_eq!(claimed.len(), 1);
        assert_eq!(
            (&claimed[0].key, claimed[0].from, claimed[0].to),
            (&key, 1, 6)
        );

        // The last member leaves holding 2 (unacknowledged) and 5 (queued), and 3 of a
        // shard this broker does not own for the group (left to that shard's owner):
        // the next owner starts at 2.
        assert_eq!(rx3.try_recv().unwrap().offset, 2);
        d.detach(3, &[held(&key, 2), held(&other, 3)], &mut rx3);
        let left = d.take_share_left();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].1[&key], left[0].1[&other]), (2, 10));
    }

    #[tokio::test]
    async fn hand_offs_at_the_position_are_dispatched_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let key: ShardKey = ("t".into(), 0);
        let (tx, mut rx) = mpsc::channel(16);
        d.attach(
            1,
            "c",
            tx,
            vec![Sub::new("a/#", &qos1_options(), None).unwrap()],
        );
        d.lock().positions.insert(key.clone(), 10);
        let plain =
            |n: usize| -> Vec<MqttRecord> { (0..n).map(|_| (*record(1)).clone()).collect() };
        let offsets = |rx: &mut mpsc::Receiver<Delivery>| -> Vec<u64> {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|d| d.offset)
                .collect()
        };

        // Not at the position (someone else appended 10..12 first): left to the tailer.
        d.hand_off(&key, 12, &mut plain(2));
        assert!(offsets(&mut rx).is_empty());
        assert_eq!(d.position(&key), Some(10));

        // The tailer reads 10..14 (its read includes the records handed off above).
        assert_eq!(
            d.dispatch(&key, 10, (10..14).map(|o| (o, record(1))).collect(), 14),
            14
        );
        assert_eq!(offsets(&mut rx), [10, 11, 12, 13]);

        // At the position: dispatched at once, and the tailer's later read of the same
        // records (and one more) delivers only what is new.
        d.hand_off(&key, 14, &mut plain(3));
        assert_eq!(offsets(&mut rx), [14, 15, 16]);
        assert_eq!(d.position(&key), Some(17));
        assert_eq!(
            d.dispatch(&key, 14, (14..17).map(|o| (o, record(1))).collect(), 17),
            17
        );
        assert!(offsets(&mut rx).is_empty(), "nothing is delivered twice");
        assert_eq!(
            d.dispatch(&key, 14, (14..18).map(|o| (o, record(1))).collect(), 18),
            18
        );
        assert_eq!(offsets(&mut rx), [17]);

        // Batches holding a QoS 0 record are left to the tailer.
        let d = Arc::new(d);
        let observer = AppendObserver::shard(&d, "t", 0);
        assert!(observer.wants(&plain(2)));
        let mut mixed = plain(2);
        mixed[1].qos = 0;
        assert!(!observer.wants(&mixed));

        // A reader reset past a truncation follows storage back.
        assert_eq!(d.dispatch(&key, 18, vec![], 15), 15);
        assert_eq!(d.position(&key), Some(15));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishes_and_foreign_appends_arrive_once_in_offset_order() {
        use crate::storage::appender::Appender;
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageAdapter> = Arc::new(memory_for_tests(dir.path()));
        let d = Arc::new(Dispatcher::new(storage.clone()));
        let cancel = CancellationToken::new();
        let key: ShardKey = ("t".into(), 0);
        d.lock().positions.insert(key.clone(), 0);
        tokio::spawn(d.clone().tail(key.clone(), 0, cancel.clone()));
        let (tx, mut rx) = mpsc::channel(4096);
        d.attach(
            1,
            "c",
            tx,
            vec![Sub::new("a/#", &qos1_options(), None).unwrap()],
        );
        let appender = Arc::new(
            Appender::new(storage.clone(), cancel.clone()).with_observer(Arc::new(d.clone())),
        );
        let record = |p: String| MqttRecord {
            topic: "a/b".into(),
            payload: bytes::Bytes::from(p),
            qos: 1,
            ..Default::default()
        };
        let mut tasks = Vec::new();
        for publisher in 0..4 {
            let appender = appender.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    appender
                        .append("t", 0, record(format!("p{publisher}-{i}")))
                        .await
                        .unwrap();
                }
            }));
        }
        // Another writer (a Kafka producer, another broker): only the tailer reads these.
        let foreign = storage.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let batch = crate::storage::record::encode_batch(&[record(format!("k-{i}"))]);
                foreign.append("t", 0, vec![batch]).await.unwrap();
                tokio::task::yield_now().await;
            }
        }));
        for t in tasks {
            t.await.unwrap();
        }
        let total = 450;
        let mut offsets = Vec::new();
        let mut payloads = HashSet::new();
        while offsets.len() < total {
            let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("every record is delivered")
                .unwrap();
            offsets.push(d.offset);
            payloads.insert(d.record.payload.clone());
        }
        assert_eq!(
            offsets,
            (0..total as u64).collect::<Vec<_>>(),
            "once each, in offset order"
        );
        assert_eq!(payloads.len(), total);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(rx.try_recv().is_err(), "nothing is delivered twice");
        cancel.cancel();
    }

    #[tokio::test]
    async fn records_reach_exact_wildcard_and_shared_subscribers_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let key: ShardKey = ("t".into(), 0);
        let opts = qos1_options();
        let sub = |f: &str| Sub::new(f, &opts, None).unwrap();
        let mut rxs = Vec::new();
        for (conn, subs) in [
            (1, vec![sub("a/b")]),
            (2, vec![sub("a/c")]),
            (3, vec![sub("a/+")]),
            (4, vec![]),
            (5, vec![sub("$share/g/a/b")]),
        ] {
            let (tx, rx) = mpsc::channel(8);
            d.attach(conn, &format!("c{conn}"), tx, subs);
            rxs.push(rx);
        }
        let got = |rxs: &mut Vec<mpsc::Receiver<Delivery>>| -> Vec<usize> {
            rxs.iter_mut()
                .map(|rx| std::iter::from_fn(|| rx.try_recv().ok()).count())
                .collect()
        };
        d.set_share_owned(owned("g", "a/b", std::slice::from_ref(&key)));
        d.dispatch(&key, 0, vec![(0, record(1))], 1);
        assert_eq!(got(&mut rxs), [1, 0, 1, 0, 1]);

        // Re-subscribing moves a session between the exact index and the wildcard set.
        d.set_subs(2, vec![sub("a/b")]);
        d.set_subs(3, vec![sub("x/y")]);
        d.dispatch(&key, 1, vec![(1, record(1))], 2);
        assert_eq!(got(&mut rxs), [1, 1, 0, 0, 1]);

        d.detach(1, &[], &mut rxs[0]);
        d.detach(2, &[], &mut rxs[1]);
        d.dispatch(&key, 2, vec![(2, record(1))], 3);
        assert_eq!(got(&mut rxs)[2..], [0, 0, 1]);
    }

    fn owned(group: &str, filter: &str, keys: &[ShardKey]) -> ShareOwned {
        let mut o = ShareOwned::new();
        o.entry(group.into())
            .or_default()
            .insert(filter.into(), keys.iter().cloned().collect());
        o
    }

    #[tokio::test]
    async fn share_groups_get_only_owned_shards_and_note_where_their_last_member_left() {
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::new(Arc::new(memory_for_tests(dir.path())));
        let (mine, theirs): (ShardKey, ShardKey) = (("t".into(), 0), ("t".into(), 1));
        let opts = qos1_options();
        let g: GroupKey = ("g".into(), "a/#".into());
        let (tx1, mut rx1) = mpsc::channel(16);
        let (tx2, mut rx2) = mpsc::channel(16);
        d.attach(
            1,
            "m1",
            tx1,
            vec![Sub::new("$share/g/a/#", &opts, None).unwrap()],
        );
        d.attach(
            2,
            "m2",
            tx2,
            vec![Sub::new("$share/g/a/#", &opts, None).unwrap()],
        );
        assert_eq!(d.share_groups(), BTreeSet::from([g.clone()]));
        d.set_share_owned(owned("g", "a/#", std::slice::from_ref(&mine)));
        d.dispatch(&mine, 0, (0..4).map(|o| (o, record(1))).collect(), 4);
        d.dispatch(&theirs, 0, (0..4).map(|o| (o, record(1))).collect(), 4);
        let offsets = |rx: &mut mpsc::Receiver<Delivery>| -> Vec<(u32, u64)> {
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|d| (d.key.1, d.offset))
                .collect()
        };
        // Each record of the owned shard reaches one member, rotating; none of the other.
        assert_eq!(offsets(&mut rx1), [(0, 0), (0, 2)]);
        assert_eq!(offsets(&mut rx2), [(0, 1), (0, 3)]);

        // A hand-over replay reaches the group's members only while the shard is owned.
        d.offer_share_replay(&g, &mine, &[(9, record(1))]);
        assert_eq!(offsets(&mut rx2), [(0, 9)]);
        d.offer_share_replay(&g, &theirs, &[(9, record(1))]);
        assert!(offsets(&mut rx1).is_empty() && offsets(&mut rx2).is_empty());

        // One member leaving changes nothing; the last one leaving is noted with the
        // positions it left at.
        d.detach(1, &[], &mut rx1);
        assert!(d.take_share_left().is_empty());
        d.set_subs(2, vec![]);
        let left = d.take_share_left();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, g);
        assert_eq!(left[0].1[&mine], 4);
        assert!(d.share_groups().is_empty());
    }
}

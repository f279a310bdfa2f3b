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
//! Shared subscriptions (`$share/g/f`) pick one member per record among this broker's
//! members of the group (by offset, so consecutive records rotate). Balancing a group
//! across brokers (splitting shards like a consumer group) is not done yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_codec::{QoS, topic};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::state::{ShardKey, Sub};
use crate::meta::TopicRoutes;
use crate::storage::StorageAdapter;
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

#[derive(Default)]
struct Table {
    sessions: HashMap<u64, Entry>,
    /// Next offset each tailer dispatches.
    positions: HashMap<ShardKey, u64>,
    /// Sessions by the wildcard-free, non-shared filters they hold: a record is offered
    /// only to the sessions under its exact topic plus those in `wild`, not to every
    /// session (most IoT subscriptions name one topic; publishers hold none).
    exact: HashMap<String, HashSet<u64>>,
    /// Sessions holding a wildcard or shared filter: offered every record.
    wild: HashSet<u64>,
}

impl Table {
    fn index(&mut self, conn: u64, subs: &[Sub]) {
        for s in subs {
            if s.share_group.is_none() && !s.filter.contains(['+', '#']) {
                self.exact.entry(s.filter.clone()).or_default().insert(conn);
            } else {
                self.wild.insert(conn);
            }
        }
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
    storage: Arc<dyn StorageAdapter>,
    dropped: std::sync::atomic::AtomicU64,
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
        });
        d.qos = d.qos.max(qos);
        d.retain_as_published |= s.retain_as_published;
        if let Some(id) = s.id {
            d.sub_ids.push(id);
        }
    }
    best
}

impl Dispatcher {
    pub fn new(storage: Arc<dyn StorageAdapter>) -> Self {
        Dispatcher {
            table: Mutex::new(Table::default()),
            storage,
            dropped: Default::default(),
        }
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
        t.unindex(conn);
        t.index(conn, &subs);
        t.sessions.insert(
            conn,
            Entry {
                client_id: client_id.to_string(),
                tx,
                subs,
                lost: HashMap::new(),
            },
        );
        t.positions.clone()
    }

    pub fn set_subs(&self, conn: u64, subs: Vec<Sub>) {
        let mut t = self.lock();
        if !t.sessions.contains_key(&conn) {
            return;
        }
        t.unindex(conn);
        t.index(conn, &subs);
        if let Some(e) = t.sessions.get_mut(&conn) {
            e.subs = subs;
        }
    }

    /// The current positions, for a checkpoint of a live session: every record below
    /// them is already in the sessions' queues.
    pub fn positions(&self) -> HashMap<ShardKey, u64> {
        self.lock().positions.clone()
    }

    /// Removes a connection; returns the positions at which it stopped receiving, lowered
    /// to the first record it lost on shards where it fell behind.
    pub fn detach(&self, conn: u64) -> HashMap<ShardKey, u64> {
        let mut t = self.lock();
        t.unindex(conn);
        let lost = t.sessions.remove(&conn).map(|e| e.lost).unwrap_or_default();
        let mut positions = t.positions.clone();
        for (k, from) in lost {
            positions.insert(k, from);
        }
        positions
    }

    /// Like [`Dispatcher::positions`], lowered to the first record `conn` lost per shard.
    pub fn positions_for(&self, conn: u64) -> HashMap<ShardKey, u64> {
        let t = self.lock();
        let mut positions = t.positions.clone();
        if let Some(e) = t.sessions.get(&conn) {
            for (k, from) in &e.lost {
                positions.insert(k.clone(), *from);
            }
        }
        positions
    }

    /// Hands one chunk of records to matching sessions and advances the position.
    fn dispatch(&self, key: &ShardKey, records: Vec<(u64, Arc<MqttRecord>)>, next: u64) {
        let mut t = self.lock();
        let mut candidates = Vec::new();
        for (offset, record) in &records {
            t.candidates(&record.topic, &mut candidates);
            let mut shared: BTreeMap<(&str, &str), Vec<(u64, &Sub)>> = BTreeMap::new();
            for conn in &candidates {
                let Some(e) = t.sessions.get_mut(conn) else {
                    continue;
                };
                if e.lost.contains_key(key) {
                    continue;
                }
                if let Some(d) = match_plain(&e.subs, &e.client_id, key, *offset, record)
                    && !self.send(&e.tx, d)
                    && QoS::from_u8(record.qos).unwrap_or_default() != QoS::AtMostOnce
                {
                    e.lost.insert(key.clone(), *offset);
                }
            }
            for conn in &candidates {
                let Some(e) = t.sessions.get(conn) else {
                    continue;
                };
                for s in e.subs.iter() {
                    if let Some(g) = &s.share_group
                        && topic::matches(&s.filter, &record.topic)
                    {
                        shared.entry((g, &s.filter)).or_default().push((*conn, s));
                    }
                }
            }
            for (_, mut members) in shared {
                members.sort_by_key(|(c, _)| *c);
                let (conn, s) = members[(*offset % members.len() as u64) as usize];
                if let Some(e) = t.sessions.get(&conn) {
                    // Shared deliveries that do not fit are dropped (not re-read yet).
                    let _ = self.send(
                        &e.tx,
                        Delivery {
                            stored: true,
                            key: key.clone(),
                            offset: *offset,
                            record: record.clone(),
                            qos: s.qos.min(QoS::from_u8(record.qos).unwrap_or_default()),
                            retain_as_published: s.retain_as_published,
                            sub_ids: s.id.into_iter().collect(),
                        },
                    );
                }
            }
        }
        t.positions.insert(key.clone(), next);
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
        let wanted: Vec<ShardKey> = routes
            .all()
            .into_iter()
            .flat_map(|b| {
                let topic: Arc<str> = b.topic.as_str().into();
                (0..b.shards).map(move |s| (topic.clone(), s))
            })
            .collect();
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
        loop {
            let read = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.storage.read(&topic, shard, offset, READ_BYTES, READ_WAIT) => r,
            };
            match read {
                Ok(r) => {
                    let records = match decode_batches(&r.records, offset) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::error!(%topic, shard, offset, error = %e, "undecodable records skipped");
                            Vec::new()
                        }
                    };
                    let next = r.next_offset;
                    let records = records
                        .into_iter()
                        .map(|s| (s.offset, Arc::new(s.record)))
                        .collect();
                    self.dispatch(&key, records, next);
                    offset = next;
                }
                Err(e) => {
                    tracing::warn!(%topic, shard, offset, error = %e, "tailing shard");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
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

        d.dispatch(&key, (0..3).map(|o| (o, record(1))).collect(), 3);
        assert_eq!(rx.try_recv().unwrap().offset, 0);
        // Room again, but the shard stays skipped until the session re-reads.
        d.dispatch(&key, vec![(3, record(1))], 4);
        assert!(rx.try_recv().is_err(), "nothing after a loss is queued");
        assert_eq!(d.positions_for(7)[&key], 1, "progress holds at the loss");
        assert_eq!(d.take_lost(7), vec![(key.clone(), 1, 4)]);
        d.dispatch(&key, vec![(4, record(1))], 5);
        assert_eq!(
            rx.try_recv().unwrap().offset,
            4,
            "live again after the re-read"
        );

        // QoS 0 records that do not fit are simply dropped.
        d.dispatch(&key, vec![(5, record(0)), (6, record(0))], 7);
        assert!(d.take_lost(7).is_empty());
        assert_eq!(d.detach(7)[&key], 7);
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
        d.dispatch(&key, vec![(0, record(1))], 1);
        assert_eq!(got(&mut rxs), [1, 0, 1, 0, 1]);

        // Re-subscribing moves a session between the exact index and the wildcard set.
        d.set_subs(2, vec![sub("a/b")]);
        d.set_subs(3, vec![sub("x/y")]);
        d.dispatch(&key, vec![(1, record(1))], 2);
        assert_eq!(got(&mut rxs), [1, 1, 0, 0, 1]);

        d.detach(1);
        d.detach(2);
        d.dispatch(&key, vec![(2, record(1))], 3);
        assert_eq!(got(&mut rxs)[2..], [0, 0, 1]);
    }
}

//! [`Appender`]: coalesces concurrent publishes to one shard into one append. Each shard
//! gets a task fed by a bounded channel; the task takes everything queued (up to
//! `MAX_COALESCE` records), writes one RecordBatch, and answers every publisher with its
//! record's offset. Under load, throughput is then records per storage round trip, not
//! one round trip per message; with one publisher it adds no wait.
//!
//! An [`AppendObserver`] (the MQTT dispatcher) is told before each append and handed the
//! records with the offset they landed at, so that it can deliver what this broker stored
//! without reading it back from storage and decoding it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use foldhash::fast::RandomState as FastHash;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::StorageAdapter;
use super::record::{MqttRecord, encode_batch};
use crate::error::{BrokerError, Result};

const MAX_COALESCE: usize = 512;
const QUEUE: usize = 4096;

type Job = (MqttRecord, oneshot::Sender<Result<u64>>);

/// One topic's shard queues, by shard index.
type ShardQueues = HashMap<u32, mpsc::Sender<Job>, FastHash>;

/// Follows the appends of one shard's appender task.
pub trait ShardObserver: Send + Sync {
    /// Whether to follow the append of `records` (the calls below happen only if so).
    fn wants(&self, records: &[MqttRecord]) -> bool;
    /// An append is about to start.
    fn begin(&self);
    /// The append of `records` landed at `base_offset` (records get consecutive offsets).
    /// The observer may take the records; whatever is left is dropped.
    fn appended(&self, base_offset: u64, records: &mut Vec<MqttRecord>);
    /// The append begun last is over (after `appended` if it landed; also when it failed
    /// or its task stopped).
    fn end(&self);
}

/// Gives each shard's appender task its [`ShardObserver`].
pub trait AppendObserver: Send + Sync {
    fn shard(&self, topic: &str, shard: u32) -> Arc<dyn ShardObserver>;
}

/// Calls [`ShardObserver::end`] when dropped, so that an append is ended on every path.
struct Begun<'a>(&'a dyn ShardObserver);

impl Drop for Begun<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

pub struct Appender {
    storage: Arc<dyn StorageAdapter>,
    observer: Option<Arc<dyn AppendObserver>>,
    /// By topic, then shard: looked up by `&str` on every publish, without allocating
    /// (foldhash: SipHash cost ~240 instructions a lookup here).
    queues: Mutex<HashMap<String, ShardQueues, FastHash>>,
    cancel: CancellationToken,
}

impl Appender {
    pub fn new(storage: Arc<dyn StorageAdapter>, cancel: CancellationToken) -> Self {
        Appender {
            storage,
            observer: None,
            queues: Mutex::new(HashMap::default()),
            cancel,
        }
    }

    /// Tells `observer` about every append from now on (before the first publish).
    pub fn with_observer(mut self, observer: Arc<dyn AppendObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Appends `record` to `(topic, shard)`; resolves to its offset once stored.
    pub async fn append(&self, topic: &str, shard: u32, record: MqttRecord) -> Result<u64> {
        let tx = self.queue(topic, shard);
        let (done, wait) = oneshot::channel();
        tx.send((record, done))
            .await
            .map_err(|_| BrokerError::storage(topic, shard, "appender stopped"))?;
        wait.await
            .map_err(|_| BrokerError::storage(topic, shard, "appender stopped"))?
    }

    fn queue(&self, topic: &str, shard: u32) -> mpsc::Sender<Job> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = queues
            .get(topic)
            .and_then(|m| m.get(&shard))
            .filter(|tx| !tx.is_closed())
        {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(
            self.storage.clone(),
            self.observer.as_ref().map(|o| o.shard(topic, shard)),
            topic.to_string(),
            shard,
            rx,
            self.cancel.clone(),
        ));
        queues
            .entry(topic.to_string())
            .or_default()
            .insert(shard, tx.clone());
        tx
    }
}

async fn run(
    storage: Arc<dyn StorageAdapter>,
    observer: Option<Arc<dyn ShardObserver>>,
    topic: String,
    shard: u32,
    mut rx: mpsc::Receiver<Job>,
    cancel: CancellationToken,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_COALESCE);
    let mut records: Vec<MqttRecord> = Vec::with_capacity(MAX_COALESCE);
    let mut replies = Vec::with_capacity(MAX_COALESCE);
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let n = tokio::select! {
            _ = &mut cancelled => return,
            n = rx.recv_many(&mut jobs, MAX_COALESCE) => n,
        };
        if n == 0 {
            return;
        }
        for (record, reply) in jobs.drain(..) {
            records.push(record);
            replies.push(reply);
        }
        let batch = encode_batch(&records);
        let observed = observer.as_deref().filter(|o| o.wants(&records));
        let begun = observed.map(|o| {
            o.begin();
            Begun(o)
        });
        match storage.append(&topic, shard, vec![batch]).await {
            Ok(a) => {
                for (i, done) in replies.drain(..).enumerate() {
                    let _ = done.send(Ok(a.base_offset + i as u64));
                }
                if let Some(o) = observed {
                    o.appended(a.base_offset, &mut records);
                }
            }
            Err(e) => {
                tracing::warn!(%topic, shard, error = %e, records = n, "append failed");
                let reason = e.to_string();
                for done in replies.drain(..) {
                    let _ = done.send(Err(BrokerError::storage(&topic, shard, &reason)));
                }
            }
        }
        records.clear();
        drop(begun);
    }
}

//! [`GrpcStorage`]: the journal tier over gRPC. Each call goes to the shard's leader, found
//! through meta (`ListShards` for leader and epoch, `ListNodes` for its address) and
//! cached until a call fails, when the cache entry is dropped and the next call asks again.
//!
//! Reads open one `Read` stream per call and ask for a single response (`single_response`),
//! so that the journal reads no further ahead than the one chunk a Fetch or a tailer takes;
//! at the tail that response long-polls for the call's `max_wait`. Journal channels use
//! large HTTP/2 frames and windows, since they carry record batches of up to MiBs.
//!
//! A shard's high watermark is followed over one long-lived `WatchHighWatermark` stream
//! per tailed shard, so that a tailer at the tail waits without asking: an idle shard
//! costs no requests (with long-polled reads it cost two a second per shard and broker).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use robustmq_proto::journal::journal_service_client::JournalServiceClient;
use robustmq_proto::journal::{AppendRequest, OffsetForTimestampRequest, ReadRequest, ShardRef};
use robustmq_proto::meta::{ListNodesRequest, ListShardsRequest, NodeRole};
use tonic::transport::{Channel, Endpoint};

use super::{Appended, Offsets, ReadResult, StorageAdapter};
use crate::error::{BrokerError, Result};
use crate::meta::MetaClient;

/// A high-watermark stream that sent nothing for this long (the journal repeats the value
/// every 5 s) is taken for dead: the tailer watches anew.
const WATCH_SILENCE: Duration = Duration::from_secs(15);

/// HTTP/2 settings for journal channels: large frames and windows, because reads and
/// appends carry whole record batches (up to MiBs), not small RPC messages.
const H2_MAX_FRAME: u32 = 1 << 20;
const H2_STREAM_WINDOW: u32 = 8 << 20;
const H2_CONNECTION_WINDOW: u32 = 32 << 20;

#[derive(Clone)]
struct Leader {
    channel: Channel,
    epoch: u64,
}

pub struct GrpcStorage {
    meta: MetaClient,
    leaders: Mutex<HashMap<(String, u32), Leader>>,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcStorage {
    pub fn new(meta: MetaClient) -> Self {
        GrpcStorage {
            meta,
            leaders: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let uri = if addr.starts_with("http") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        let c = Endpoint::from_shared(uri)
            .map_err(|e| BrokerError::Config(format!("journal address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            // A Fetch moves up to a MiB per partition through this channel: with h2's
            // defaults (16 KiB frames) that is ~64 frames and writes each way per MiB.
            .max_frame_size(H2_MAX_FRAME)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .connect_lazy();
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    async fn leader(&self, topic: &str, shard: u32) -> Result<Leader> {
        let key = (topic.to_string(), shard);
        if let Some(l) = self
            .leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(l.clone());
        }
        let mut client = self.meta.client();
        let shards = client
            .list_shards(ListShardsRequest {
                topic: topic.to_string(),
                journal_node: 0,
            })
            .await
            .map_err(|s| BrokerError::meta("ListShards", s))?
            .into_inner()
            .shards;
        let placement = shards
            .into_iter()
            .find(|p| p.shard == shard)
            .ok_or_else(|| BrokerError::storage(topic, shard, "meta has no such shard"))?;
        if placement.leader == 0 {
            return Err(BrokerError::storage(topic, shard, "shard has no leader"));
        }
        let nodes = client
            .list_nodes(ListNodesRequest {
                role: NodeRole::Journal as i32,
            })
            .await
            .map_err(|s| BrokerError::meta("ListNodes", s))?
            .into_inner()
            .nodes;
        let addr = nodes
            .into_iter()
            .filter_map(|n| n.node)
            .find(|n| n.id == placement.leader)
            .map(|n| n.addr)
            .ok_or_else(|| {
                BrokerError::storage(
                    topic,
                    shard,
                    format!("leader node {} is not registered", placement.leader),
                )
            })?;
        let leader = Leader {
            channel: self.channel(&addr)?,
            epoch: placement.epoch,
        };
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, leader.clone());
        Ok(leader)
    }

    fn forget(&self, topic: &str, shard: u32) {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(topic.to_string(), shard));
    }

    fn shard_ref(topic: &str, shard: u32) -> Option<ShardRef> {
        Some(ShardRef {
            topic: topic.to_string(),
            shard,
        })
    }
}

#[async_trait]
impl StorageAdapter for GrpcStorage {
    async fn append(&self, topic: &str, shard: u32, batches: Vec<Bytes>) -> Result<Appended> {
        let leader = self.leader(topic, shard).await?;
        let resp = JournalServiceClient::new(leader.channel)
            .max_decoding_message_size(64 << 20)
            .append(AppendRequest {
                shard: Self::shard_ref(topic, shard),
                leader_epoch: leader.epoch,
                batches,
            })
            .await;
        match resp {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Appended {
                    base_offset: r.base_offset.max(0) as u64,
                    log_end: r.log_end_offset.max(0) as u64,
                })
            }
            Err(s) => {
                self.forget(topic, shard);
                Err(BrokerError::storage(topic, shard, s.message()))
            }
        }
    }

    async fn read(
        &self,
        topic: &str,
        shard: u32,
        offset: u64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<ReadResult> {
        let leader = self.leader(topic, shard).await?;
        let req = ReadRequest {
            shard: Self::shard_ref(topic, shard),
            offset: offset as i64,
            max_bytes: max_bytes.min(u32::MAX as usize) as u32,
            max_wait_ms: max_wait.as_millis().clamp(1, u32::MAX as u128) as u32,
            // A poll: one response, which long-polls at the tail for `max_wait`. Only a
            // zero wait asks to stop at the tail at once; stopping there on every poll
            // turned each long poll into a busy loop (tailers and Fetch waits re-asking
            // in a tight loop while nothing arrived).
            stop_at_tail: max_wait.is_zero(),
            // Only the first response is taken: the server must not read further ahead.
            single_response: true,
        };
        let result = async {
            let mut stream = JournalServiceClient::new(leader.channel)
                .max_decoding_message_size(64 << 20)
                .read(req)
                .await?
                .into_inner();
            stream.message().await
        }
        .await;
        match result {
            Ok(Some(r)) => Ok(ReadResult {
                records: r.records,
                next_offset: r.next_offset.max(0) as u64,
                high_watermark: r.high_watermark.max(0) as u64,
                log_start: r.log_start_offset.max(0) as u64,
            }),
            Ok(None) => Ok(ReadResult {
                records: Bytes::new(),
                next_offset: offset,
                high_watermark: offset,
                log_start: 0,
            }),
            Err(s) => {
                self.forget(topic, shard);
                Err(BrokerError::storage(topic, shard, s.message()))
            }
        }
    }

    async fn offsets(&self, topic: &str, shard: u32) -> Result<Offsets> {
        let leader = self.leader(topic, shard).await?;
        match JournalServiceClient::new(leader.channel)
            .get_shard_stats(ShardRef {
                topic: topic.to_string(),
                shard,
            })
            .await
        {
            Ok(s) => {
                let s = s.into_inner();
                Ok(Offsets {
                    log_start: s.log_start_offset.max(0) as u64,
                    high_watermark: s.high_watermark.max(0) as u64,
                })
            }
            Err(s) => {
                self.forget(topic, shard);
                Err(BrokerError::storage(topic, shard, s.message()))
            }
        }
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        shard: u32,
        timestamp_ms: i64,
    ) -> Result<Option<u64>> {
        let leader = self.leader(topic, shard).await?;
        match JournalServiceClient::new(leader.channel)
            .offset_for_timestamp(OffsetForTimestampRequest {
                shard: Self::shard_ref(topic, shard),
                timestamp_ms,
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                Ok(r.found.then_some(r.offset.max(0) as u64))
            }
            Err(s) => {
                self.forget(topic, shard);
                Err(BrokerError::storage(topic, shard, s.message()))
            }
        }
    }

    async fn watch_high_watermark(
        &self,
        topic: &str,
        shard: u32,
    ) -> Result<Option<tokio::sync::watch::Receiver<u64>>> {
        let leader = self.leader(topic, shard).await?;
        let opened = JournalServiceClient::new(leader.channel)
            .watch_high_watermark(ShardRef {
                topic: topic.to_string(),
                shard,
            })
            .await;
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            // A journal without the call: tailers long-poll Read instead.
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(s) => {
                self.forget(topic, shard);
                return Err(BrokerError::storage(topic, shard, s.message()));
            }
        };
        let first = match tokio::time::timeout(WATCH_SILENCE, stream.message()).await {
            Ok(Ok(Some(m))) => m.high_watermark.max(0) as u64,
            Ok(Err(s)) => {
                self.forget(topic, shard);
                return Err(BrokerError::storage(topic, shard, s.message()));
            }
            _ => {
                return Err(BrokerError::storage(
                    topic,
                    shard,
                    "high watermark watch ended",
                ));
            }
        };
        let (tx, rx) = tokio::sync::watch::channel(first);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // The tailer stopped following the shard.
                    _ = tx.closed() => break,
                    m = tokio::time::timeout(WATCH_SILENCE, stream.message()) => match m {
                        Ok(Ok(Some(m))) => {
                            tx.send_if_modified(|hw| {
                                let new = m.high_watermark.max(0) as u64;
                                std::mem::replace(hw, new) != new
                            });
                        }
                        // Ended, failed or silent: dropping `tx` tells the tailer.
                        _ => break,
                    },
                }
            }
        });
        Ok(Some(rx))
    }
}

//! `JournalService` handlers: request checks and limits, leadership fencing, and the
//! long-polling Read stream. Storage work is delegated to the shard's engine.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;
use robustmq_proto::journal as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::status::to_status;
use crate::engine::read_wait;
use crate::error::JournalError;
use crate::metrics::Metrics;
use crate::registry::{Origin, ShardHandle, ShardManager};
use crate::shard::{EngineKind, FsyncPolicy, ShardId, ShardSpec};

/// Request limits, from the node config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_append_bytes: usize,
    pub max_read_bytes: usize,
}

/// Longest a Read waits at the tail before sending an empty response.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);
const DEFAULT_WAIT: Duration = Duration::from_millis(500);
/// A high-watermark watch repeats the current value this often when it does not change.
const WATCH_HEARTBEAT: Duration = Duration::from_secs(5);

/// The JournalService implementation.
pub struct JournalGrpc {
    shards: Arc<ShardManager>,
    metrics: Arc<Metrics>,
    limits: Limits,
    cancel: CancellationToken,
}

impl JournalGrpc {
    pub fn new(
        shards: Arc<ShardManager>,
        metrics: Arc<Metrics>,
        limits: Limits,
        cancel: CancellationToken,
    ) -> Self {
        JournalGrpc {
            shards,
            metrics,
            limits,
            cancel,
        }
    }

    fn fail(&self, rpc: &str, e: JournalError) -> Status {
        self.metrics.error(rpc, e.kind());
        if matches!(e, JournalError::Corrupt { .. } | JournalError::Io { .. }) {
            tracing::error!(rpc, error = %e, "storage error");
        }
        to_status(&e)
    }

    fn shard(&self, rpc: &str, r: Option<pb::ShardRef>) -> Result<Arc<ShardHandle>, Status> {
        let id = shard_id(r)?;
        self.shards.get(&id).map_err(|e| self.fail(rpc, e))
    }
}

fn shard_id(r: Option<pb::ShardRef>) -> Result<ShardId, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("shard: missing (topic and shard index)"))?;
    if r.topic.is_empty() {
        return Err(Status::invalid_argument("shard.topic: empty"));
    }
    Ok(ShardId::new(r.topic, r.shard))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn stats_of(h: &ShardHandle) -> pb::ShardStats {
    let s = h.stats();
    let l = h.leadership();
    pb::ShardStats {
        shard: Some(pb::ShardRef {
            topic: h.id.topic.clone(),
            shard: h.id.index,
        }),
        engine: h.spec.engine.as_str().to_string(),
        log_start_offset: to_i64(s.log_start),
        high_watermark: to_i64(s.high_watermark),
        log_end_offset: to_i64(s.log_end),
        size_bytes: s.size_bytes,
        segments: s.segments,
        leader: l.leader,
        epoch: l.epoch,
        origin: h.origin.as_str().to_string(),
    }
}

/// Fills a proto spec's zero fields from the node defaults.
pub(crate) fn spec_from_proto(p: Option<pb::ShardSpec>, d: &ShardSpec) -> ShardSpec {
    let p = p.unwrap_or_default();
    let or = |v: u64, dv: u64| if v == 0 { dv } else { v };
    let engine = match pb::Engine::try_from(p.engine) {
        Ok(pb::Engine::Memory) => EngineKind::Memory,
        Ok(pb::Engine::Segment) => EngineKind::Segment,
        _ => d.engine,
    };
    let fsync = match pb::Fsync::try_from(p.fsync) {
        Ok(pb::Fsync::Always) => FsyncPolicy::Always,
        Ok(pb::Fsync::Never) => FsyncPolicy::Never,
        Ok(pb::Fsync::Interval) => FsyncPolicy::Interval {
            ms: or(
                p.fsync_interval_ms,
                match d.fsync {
                    FsyncPolicy::Interval { ms } => ms,
                    _ => 100,
                },
            ),
        },
        _ => d.fsync,
    };
    ShardSpec {
        engine,
        fsync,
        retention_ms: or(p.retention_ms, d.retention_ms),
        retention_bytes: or(p.retention_bytes, d.retention_bytes),
        segment_bytes: or(p.segment_bytes, d.segment_bytes),
        segment_ms: or(p.segment_ms, d.segment_ms),
        memory_max_bytes: or(p.memory_max_bytes, d.memory_max_bytes),
        index_interval_bytes: d.index_interval_bytes,
        tail_cache_bytes: d.tail_cache_bytes,
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadResponse, Status>> + Send>>;
type HighWatermarkStream = Pin<Box<dyn Stream<Item = Result<pb::HighWatermark, Status>> + Send>>;

#[tonic::async_trait]
impl pb::journal_service_server::JournalService for JournalGrpc {
    #[tracing::instrument(skip_all, fields(shard, epoch = request.get_ref().leader_epoch))]
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let h = self.shard("append", req.shard)?;
        tracing::Span::current().record("shard", tracing::field::display(&h.id));
        let size: usize = req.batches.iter().map(|b| b.len()).sum();
        if size > self.limits.max_append_bytes {
            return Err(self.fail(
                "append",
                JournalError::TooLarge {
                    shard: h.id.clone(),
                    size,
                    limit: self.limits.max_append_bytes,
                },
            ));
        }
        self.shards
            .check_leader(&h, req.leader_epoch)
            .await
            .map_err(|e| self.fail("append", e))?;
        let n = req.batches.len() as u64;
        let out = h
            .log
            .append(req.batches)
            .await
            .map_err(|e| self.fail("append", e))?;
        self.metrics.append_bytes.inc_by(size as u64);
        self.metrics.append_batches.inc_by(n);
        self.metrics
            .append_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(pb::AppendResponse {
            base_offset: to_i64(out.base_offset),
            log_end_offset: to_i64(out.log_end),
        }))
    }

    type ReadStream = ReadStream;
    type WatchHighWatermarkStream = HighWatermarkStream;

    #[tracing::instrument(skip_all, fields(offset = request.get_ref().offset))]
    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = request.into_inner();
        self.metrics.read_requests.inc();
        let h = self.shard("read", req.shard)?;
        if req.offset < 0 {
            return Err(Status::invalid_argument(format!(
                "offset: {} is negative",
                req.offset
            )));
        }
        let max_bytes = match req.max_bytes as usize {
            0 => self.limits.max_read_bytes,
            n => n.min(self.limits.max_read_bytes),
        };
        let max_wait = match req.max_wait_ms {
            0 => DEFAULT_WAIT,
            ms => Duration::from_millis(ms as u64).min(MAX_WAIT_CAP),
        };
        // Fail fast on a bad starting offset, before the stream opens.
        let started = Instant::now();
        let first = h
            .log
            .read(req.offset as u64, max_bytes)
            .await
            .map_err(|e| self.fail("read", e))?;
        // Only this read is timed: the later ones include long-poll waits.
        self.metrics
            .read_seconds
            .observe(started.elapsed().as_secs_f64());
        let (tx, rx) = mpsc::channel::<Result<pb::ReadResponse, Status>>(4);
        let metrics = self.metrics.clone();
        let cancel = self.cancel.clone();
        let stop_at_tail = req.stop_at_tail;
        let single_response = req.single_response;
        tokio::spawn(async move {
            let mut offset = req.offset as u64;
            // At the tail, a reader that keeps streaming gets a long poll, not an
            // immediate empty response.
            let mut pending = (!first.records.is_empty() || stop_at_tail).then_some(first);
            loop {
                let chunk = match pending.take() {
                    Some(c) => Ok(c),
                    None => {
                        if h.is_deleted() {
                            Err(JournalError::ShardNotFound {
                                shard: h.id.clone(),
                            })
                        } else {
                            tokio::select! {
                                _ = cancel.cancelled() => break,
                                _ = tx.closed() => break,
                                r = read_wait(h.log.as_ref(), offset, max_bytes, max_wait) => r,
                            }
                        }
                    }
                };
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        metrics.error("read", e.kind());
                        let _ = tx.send(Err(to_status(&e))).await;
                        break;
                    }
                };
                let at_tail = chunk.next_offset >= chunk.high_watermark;
                metrics.read_bytes.inc_by(chunk.records.len() as u64);
                offset = chunk.next_offset;
                let resp = pb::ReadResponse {
                    records: chunk.records,
                    next_offset: to_i64(chunk.next_offset),
                    high_watermark: to_i64(chunk.high_watermark),
                    log_start_offset: to_i64(chunk.log_start),
                };
                // Empty responses are heartbeats: they tell a reader at the tail the current
                // high watermark and that the stream is alive.
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
                if single_response || (stop_at_tail && at_tail) {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn watch_high_watermark(
        &self,
        request: Request<pb::ShardRef>,
    ) -> Result<Response<Self::WatchHighWatermarkStream>, Status> {
        let h = self.shard("watch_high_watermark", Some(request.into_inner()))?;
        let mut hw = h.log.watch_high_watermark();
        let (tx, rx) = mpsc::channel::<Result<pb::HighWatermark, Status>>(1);
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            loop {
                let high_watermark = to_i64(*hw.borrow_and_update());
                if tx
                    .send(Ok(pb::HighWatermark { high_watermark }))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tx.closed() => break,
                    _ = tokio::time::sleep(WATCH_HEARTBEAT) => {}
                    // The shard was closed (deleted, or replaced): the stream ends and
                    // the reader watches anew.
                    r = hw.changed() => if r.is_err() || h.is_deleted() { break },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn offset_for_timestamp(
        &self,
        request: Request<pb::OffsetForTimestampRequest>,
    ) -> Result<Response<pb::OffsetForTimestampResponse>, Status> {
        let req = request.into_inner();
        let h = self.shard("offset_for_timestamp", req.shard)?;
        let found = h
            .log
            .offset_for_timestamp(req.timestamp_ms)
            .await
            .map_err(|e| self.fail("offset_for_timestamp", e))?;
        Ok(Response::new(pb::OffsetForTimestampResponse {
            found: found.is_some(),
            offset: found.map_or(-1, to_i64),
        }))
    }

    async fn get_shard_stats(
        &self,
        request: Request<pb::ShardRef>,
    ) -> Result<Response<pb::ShardStats>, Status> {
        let h = self.shard("get_shard_stats", Some(request.into_inner()))?;
        Ok(Response::new(stats_of(&h)))
    }

    async fn list_shards(
        &self,
        request: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        let topic = request.into_inner().topic;
        let shards = self
            .shards
            .list()
            .iter()
            .filter(|h| topic.is_empty() || h.id.topic == topic)
            .map(|h| stats_of(h))
            .collect();
        Ok(Response::new(pb::ListShardsResponse { shards }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_shard(
        &self,
        request: Request<pb::CreateShardRequest>,
    ) -> Result<Response<pb::ShardStats>, Status> {
        let req = request.into_inner();
        let id = shard_id(req.shard)?;
        let spec = spec_from_proto(req.spec, self.shards.defaults());
        let h = self
            .shards
            .create(id, spec, req.leader, req.epoch, Origin::Local)
            .await
            .map_err(|e| self.fail("create_shard", e))?;
        Ok(Response::new(stats_of(&h)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_shard(
        &self,
        request: Request<pb::ShardRef>,
    ) -> Result<Response<pb::Empty>, Status> {
        let id = shard_id(Some(request.into_inner()))?;
        self.shards
            .delete(&id)
            .await
            .map_err(|e| self.fail("delete_shard", e))?;
        Ok(Response::new(pb::Empty {}))
    }
}

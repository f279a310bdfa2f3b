//! The shards this node holds: creating, opening, deleting them, their leadership
//! (leader node and epoch, which fence appends) and the background retention sweep.
//!
//! Both administration paths end here: the `CreateShard`/`DeleteShard` RPCs (standalone
//! nodes) and the meta watcher (`meta` module), which calls the same methods with
//! [`Origin::Meta`]. Segment shards persist their id, spec and leadership in `shard.yaml`
//! inside their directory, so a restart reopens them and keeps fencing with the same epoch.
//! Memory shards are not persisted.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use foldhash::fast::RandomState as FastHash;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::memory::MemoryLog;
use crate::engine::segment::SegmentLog;
use crate::engine::{EngineHooks, LogStats, ShardLog};
use crate::error::{JournalError, Result, StartupError};
use crate::shard::{EngineKind, ShardId, ShardSpec};

const SHARD_FILE: &str = "shard.yaml";

/// Who created a shard, and so who may delete it when reconciling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Created through the CreateShard RPC on a node without meta.
    Local,
    /// Assigned by the meta-service; removed when meta no longer places it here.
    Meta,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Meta => "meta",
        }
    }
}

/// The shard's leader node and its epoch, as last told by meta (or CreateShard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// Node id of the leader; 0 while no replica can lead.
    pub leader: u64,
    pub epoch: u64,
}

/// What `shard.yaml` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardFile {
    shard: ShardId,
    spec: ShardSpec,
    leadership: Leadership,
    origin: Origin,
}

/// Looks up a journal node's gRPC address, so that a NotLeader error can name it.
#[async_trait]
pub trait NodeDirectory: Send + Sync {
    async fn addr_of(&self, node_id: u64) -> Option<String>;
}

/// One shard held by this node.
pub struct ShardHandle {
    pub id: ShardId,
    pub spec: ShardSpec,
    pub origin: Origin,
    pub log: Arc<dyn ShardLog>,
    leadership: Mutex<Leadership>,
    dir: Option<PathBuf>,
    deleted: AtomicBool,
}

impl ShardHandle {
    pub fn leadership(&self) -> Leadership {
        *self.leadership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set once the shard was deleted; long-running readers stop on it.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }
}

/// Every shard on this node.
pub struct ShardManager {
    node_id: u64,
    data_dir: PathBuf,
    defaults: ShardSpec,
    hooks: EngineHooks,
    /// foldhash: looked up on every append and read, where SipHash of the shard name
    /// cost ~240 instructions.
    shards: RwLock<HashMap<ShardId, Arc<ShardHandle>, FastHash>>,
    /// Serializes create and delete, which do I/O between checking and inserting.
    admin: tokio::sync::Mutex<()>,
    directory: OnceLock<Arc<dyn NodeDirectory>>,
}

impl ShardManager {
    pub fn new(node_id: u64, data_dir: PathBuf, defaults: ShardSpec, hooks: EngineHooks) -> Self {
        ShardManager {
            node_id,
            data_dir,
            defaults,
            hooks,
            shards: RwLock::new(HashMap::default()),
            admin: tokio::sync::Mutex::new(()),
            directory: OnceLock::new(),
        }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn defaults(&self) -> &ShardSpec {
        &self.defaults
    }

    /// Installs the node directory used to name leaders (set once, by the meta client).
    pub fn set_directory(&self, d: Arc<dyn NodeDirectory>) {
        let _ = self.directory.set(d);
    }

    fn read_map(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<ShardId, Arc<ShardHandle>, FastHash>> {
        self.shards.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<ShardId, Arc<ShardHandle>, FastHash>> {
        self.shards.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens every segment shard found under the data dir (each directory with a
    /// `shard.yaml`), running recovery on each. Returns how many were opened.
    pub async fn open_existing(&self) -> std::result::Result<usize, StartupError> {
        let _guard = self.admin.lock().await;
        fs::create_dir_all(&self.data_dir).map_err(|e| StartupError::io(&self.data_dir, e))?;
        let mut n = 0;
        let entries =
            fs::read_dir(&self.data_dir).map_err(|e| StartupError::io(&self.data_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StartupError::io(&self.data_dir, e))?;
            let dir = entry.path();
            let file = dir.join(SHARD_FILE);
            if !file.is_file() {
                continue;
            }
            let text = fs::read_to_string(&file).map_err(|e| StartupError::io(&file, e))?;
            let sf: ShardFile =
                serde_yaml::from_str(&text).map_err(|e| StartupError::BadShardFile {
                    path: file.clone(),
                    reason: e.to_string(),
                })?;
            let (log, report) = SegmentLog::open(
                sf.shard.clone(),
                dir.clone(),
                sf.spec.clone(),
                self.hooks.clone(),
            )
            .await?;
            match &report.truncated {
                Some((bytes, why)) => tracing::warn!(shard = %sf.shard, bytes, reason = %why,
                    log_end = report.log_end, "recovery cut a torn or corrupt tail"),
                None => tracing::info!(shard = %sf.shard, segments = report.segments,
                    log_start = report.log_start, log_end = report.log_end,
                    recycled_tail = ?report.recycled_tail, recycle_pool = report.pool_files,
                    "shard recovered"),
            }
            self.insert(ShardHandle {
                id: sf.shard,
                spec: sf.spec,
                origin: sf.origin,
                log: Arc::new(log),
                leadership: Mutex::new(sf.leadership),
                dir: Some(dir),
                deleted: AtomicBool::new(false),
            });
            n += 1;
        }
        Ok(n)
    }

    fn insert(&self, h: ShardHandle) -> Arc<ShardHandle> {
        let h = Arc::new(h);
        self.write_map().insert(h.id.clone(), h.clone());
        h
    }

    pub fn get(&self, id: &ShardId) -> Result<Arc<ShardHandle>> {
        self.read_map()
            .get(id)
            .cloned()
            .ok_or_else(|| JournalError::ShardNotFound { shard: id.clone() })
    }

    /// Every shard, sorted by id.
    pub fn list(&self) -> Vec<Arc<ShardHandle>> {
        let mut v: Vec<_> = self.read_map().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Creates a shard, or, when it exists with the same engine, updates its leadership.
    /// `leader == 0` with [`Origin::Local`] means this node. An existing shard with a
    /// different engine is an error for [`Origin::Local`] callers; meta-driven calls keep
    /// the existing data (changing engines would lose it) and log the difference.
    pub async fn create(
        &self,
        id: ShardId,
        spec: ShardSpec,
        leader: u64,
        epoch: u64,
        origin: Origin,
    ) -> Result<Arc<ShardHandle>> {
        id.validate().map_err(|reason| JournalError::InvalidSpec {
            shard: id.clone(),
            reason,
        })?;
        spec.validate()
            .map_err(|reason| JournalError::InvalidSpec {
                shard: id.clone(),
                reason,
            })?;
        let leader = if leader == 0 && origin == Origin::Local {
            self.node_id
        } else {
            leader
        };
        let _guard = self.admin.lock().await;
        if let Ok(h) = self.get(&id) {
            if h.spec != spec {
                if origin == Origin::Local && h.spec.engine != spec.engine {
                    return Err(JournalError::ShardExists { shard: id });
                }
                tracing::warn!(shard = %id, "shard exists with another spec; keeping the existing one");
            }
            self.update_leadership(&h, Leadership { leader, epoch })?;
            return Ok(h);
        }
        let leadership = Leadership { leader, epoch };
        let (log, dir): (Arc<dyn ShardLog>, Option<PathBuf>) = match spec.engine {
            EngineKind::Memory => (Arc::new(MemoryLog::new(id.clone(), &spec)), None),
            EngineKind::Segment => {
                let dir = self.data_dir.join(id.dir_name());
                fs::create_dir_all(&dir)
                    .map_err(|e| JournalError::io(&id, format!("creating {}", dir.display()), e))?;
                write_shard_file(
                    &dir,
                    &ShardFile {
                        shard: id.clone(),
                        spec: spec.clone(),
                        leadership,
                        origin,
                    },
                )
                .map_err(|e| JournalError::io(&id, "writing shard.yaml", e))?;
                let (log, _) =
                    SegmentLog::open(id.clone(), dir.clone(), spec.clone(), self.hooks.clone())
                        .await?;
                (Arc::new(log), Some(dir))
            }
        };
        tracing::info!(shard = %id, engine = spec.engine.as_str(), leader, epoch,
            origin = origin.as_str(), "shard created");
        Ok(self.insert(ShardHandle {
            id,
            spec,
            origin,
            log,
            leadership: Mutex::new(leadership),
            dir,
            deleted: AtomicBool::new(false),
        }))
    }

    /// Applies a leadership change unless it is older than what the shard has (epochs
    /// never go back).
    pub fn update_leadership(&self, h: &ShardHandle, new: Leadership) -> Result<()> {
        let mut cur = h.leadership.lock().unwrap_or_else(|p| p.into_inner());
        if new.epoch < cur.epoch || *cur == new {
            return Ok(());
        }
        if let Some(dir) = &h.dir {
            write_shard_file(
                dir,
                &ShardFile {
                    shard: h.id.clone(),
                    spec: h.spec.clone(),
                    leadership: new,
                    origin: h.origin,
                },
            )
            .map_err(|e| JournalError::io(&h.id, "writing shard.yaml", e))?;
        }
        tracing::info!(shard = %h.id, leader = new.leader, epoch = new.epoch, "leadership changed");
        *cur = new;
        Ok(())
    }

    /// Removes a shard and its data.
    pub async fn delete(&self, id: &ShardId) -> Result<()> {
        let _guard = self.admin.lock().await;
        let h = self
            .write_map()
            .remove(id)
            .ok_or_else(|| JournalError::ShardNotFound { shard: id.clone() })?;
        h.deleted.store(true, Ordering::Release);
        if let Err(e) = h.log.close().await {
            tracing::warn!(shard = %id, error = %e, "closing a deleted shard");
        }
        if let Some(dir) = &h.dir {
            fs::remove_dir_all(dir)
                .map_err(|e| JournalError::io(id, format!("removing {}", dir.display()), e))?;
        }
        tracing::info!(shard = %id, "shard deleted");
        Ok(())
    }

    /// Checks that this node leads the shard at exactly `epoch`.
    pub async fn check_leader(&self, h: &ShardHandle, epoch: u64) -> Result<()> {
        let l = h.leadership();
        if l.leader != self.node_id {
            let leader_addr = match (l.leader, self.directory.get()) {
                (0, _) | (_, None) => None,
                (id, Some(d)) => d.addr_of(id).await,
            };
            return Err(JournalError::NotLeader {
                shard: h.id.clone(),
                leader_id: l.leader,
                leader_addr,
            });
        }
        if epoch != l.epoch {
            return Err(JournalError::FencedEpoch {
                shard: h.id.clone(),
                requested: epoch,
                current: l.epoch,
            });
        }
        Ok(())
    }

    /// Total bytes stored by segment shards.
    pub fn disk_bytes(&self) -> u64 {
        self.read_map()
            .values()
            .filter(|h| h.spec.engine == EngineKind::Segment)
            .map(|h| h.log.stats().size_bytes)
            .sum()
    }

    /// Applies retention to every shard every `every`, until cancelled.
    pub async fn run_retention(self: Arc<Self>, every: Duration, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            for h in self.list() {
                if let Err(e) = h.log.enforce_retention(now).await {
                    tracing::warn!(shard = %h.id, error = %e, "retention failed");
                }
            }
        }
    }

    /// Closes every shard (final fsync per policy).
    pub async fn close_all(&self) {
        for h in self.list() {
            if let Err(e) = h.log.close().await {
                tracing::warn!(shard = %h.id, error = %e, "closing shard");
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn write_shard_file(dir: &Path, sf: &ShardFile) -> std::io::Result<()> {
    let text = serde_yaml::to_string(sf).map_err(std::io::Error::other)?;
    let tmp = dir.join("shard.yaml.tmp");
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(SHARD_FILE))?;
    fs::File::open(dir)?.sync_all()
}

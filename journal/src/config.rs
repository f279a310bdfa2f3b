//! The journal node's configuration: one YAML file (`--config`), every key overridable by
//! a flag or an environment variable. Precedence: flag/env > file > built-in default.
//! Validated at start-up with messages that name the bad key.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::shard::{EngineKind, FsyncPolicy, ShardSpec};

/// The fsync mode as a flag/YAML value (the interval comes from `fsync_interval_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

/// The whole configuration. Field names are the YAML keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id, unique among journal nodes.
    pub node_id: u64,
    /// Where the gRPC JournalService listens (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// Address other tiers use to reach this node; empty means `grpc_addr` as bound.
    pub advertised_addr: String,
    /// Where /healthz, /readyz, /metrics and /v1/shards are served.
    pub admin_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Meta-service endpoints (host:port); empty runs standalone (shards via CreateShard).
    pub meta: Vec<String>,
    pub lease_ttl_ms: u32,
    /// Largest Append request (sum of its batches), in bytes.
    pub max_append_bytes: usize,
    /// Largest `max_bytes` a Read may ask for; also the default.
    pub max_read_bytes: usize,
    /// How often retention runs.
    pub retention_check_ms: u64,
    /// Defaults for shards whose spec (from CreateShard or meta's policy) leaves a field 0.
    pub default_engine: EngineKind,
    pub default_fsync: FsyncMode,
    pub fsync_interval_ms: u64,
    pub retention_ms: u64,
    pub retention_bytes: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub memory_max_bytes: u64,
    pub index_interval_bytes: u64,
    /// Bytes of each segment shard's newest batches kept in memory for readers at the
    /// tail; 0 turns the cache off.
    pub tail_cache_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        let spec = ShardSpec::default();
        Config {
            node_id: 1,
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 1778)),
            advertised_addr: String::new(),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            data_dir: PathBuf::from("data/journal"),
            meta: Vec::new(),
            lease_ttl_ms: 10_000,
            max_append_bytes: 8 << 20,
            max_read_bytes: 4 << 20,
            retention_check_ms: 30_000,
            default_engine: spec.engine,
            default_fsync: FsyncMode::Always,
            fsync_interval_ms: 100,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            segment_bytes: spec.segment_bytes,
            segment_ms: spec.segment_ms,
            memory_max_bytes: spec.memory_max_bytes,
            index_interval_bytes: spec.index_interval_bytes,
            tail_cache_bytes: spec.tail_cache_bytes,
        }
    }
}

/// Command line of `robustmq-journal`.
#[derive(Debug, Parser)]
#[command(
    name = "robustmq-journal",
    version,
    about = "RobustMQ journal node: durable shard storage over gRPC"
)]
pub struct Cli {
    /// YAML configuration file.
    #[arg(long, env = "ROBUSTMQ_JOURNAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the default configuration as YAML and exit.
    #[arg(long)]
    pub print_default_config: bool,
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Flags (and env vars) that override keys of the file.
#[derive(Debug, Default, Args)]
pub struct Overrides {
    #[arg(long, env = "ROBUSTMQ_JOURNAL_NODE_ID")]
    pub node_id: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Meta-service endpoints, comma-separated host:port.
    #[arg(long, env = "ROBUSTMQ_JOURNAL_META", value_delimiter = ',')]
    pub meta: Option<Vec<String>>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u32>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_MAX_APPEND_BYTES")]
    pub max_append_bytes: Option<usize>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_MAX_READ_BYTES")]
    pub max_read_bytes: Option<usize>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_DEFAULT_ENGINE")]
    pub default_engine: Option<EngineKind>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_DEFAULT_FSYNC")]
    pub default_fsync: Option<FsyncMode>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_FSYNC_INTERVAL_MS")]
    pub fsync_interval_ms: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_RETENTION_MS")]
    pub retention_ms: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_RETENTION_BYTES")]
    pub retention_bytes: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_SEGMENT_MS")]
    pub segment_ms: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_MEMORY_MAX_BYTES")]
    pub memory_max_bytes: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_INDEX_INTERVAL_BYTES")]
    pub index_interval_bytes: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_JOURNAL_TAIL_CACHE_BYTES")]
    pub tail_cache_bytes: Option<u64>,
}

macro_rules! overlay {
    ($cfg:expr, $o:expr, $($f:ident),*) => { $( if let Some(v) = $o.$f.clone() { $cfg.$f = v; } )* };
}

impl Config {
    /// Builds the configuration from the file named by `--config` (if any) and overrides.
    pub fn load(cli: &Cli) -> Result<Config, String> {
        let mut cfg = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?;
                serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        let o = &cli.overrides;
        overlay!(
            cfg,
            o,
            node_id,
            grpc_addr,
            advertised_addr,
            admin_addr,
            data_dir,
            meta,
            lease_ttl_ms,
            max_append_bytes,
            max_read_bytes,
            retention_check_ms,
            default_engine,
            default_fsync,
            fsync_interval_ms,
            retention_ms,
            retention_bytes,
            segment_bytes,
            segment_ms,
            memory_max_bytes,
            index_interval_bytes,
            tail_cache_bytes
        );
        cfg.meta.retain(|m| !m.trim().is_empty());
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.node_id == 0 {
            return Err("node_id: must be > 0 (0 means \"no node\" in shard placements)".into());
        }
        if self.max_append_bytes < 1024 {
            return Err("max_append_bytes: must be at least 1024".into());
        }
        if self.max_read_bytes < 1024 {
            return Err("max_read_bytes: must be at least 1024".into());
        }
        if self.retention_check_ms == 0 {
            return Err("retention_check_ms: must be > 0".into());
        }
        if self.lease_ttl_ms < 1000 {
            return Err("lease_ttl_ms: must be at least 1000".into());
        }
        for m in &self.meta {
            if !m.contains(':') {
                return Err(format!("meta: {m:?} is not host:port"));
            }
        }
        self.default_spec()
            .validate()
            .map_err(|e| format!("shard defaults: {e}"))
    }

    pub fn fsync_policy(&self, mode: FsyncMode, interval_ms: u64) -> FsyncPolicy {
        match mode {
            FsyncMode::Always => FsyncPolicy::Always,
            FsyncMode::Never => FsyncPolicy::Never,
            FsyncMode::Interval => FsyncPolicy::Interval {
                ms: if interval_ms == 0 {
                    self.fsync_interval_ms
                } else {
                    interval_ms
                },
            },
        }
    }

    /// The spec a shard gets when nothing more specific is given.
    pub fn default_spec(&self) -> ShardSpec {
        ShardSpec {
            engine: self.default_engine,
            fsync: self.fsync_policy(self.default_fsync, self.fsync_interval_ms),
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            memory_max_bytes: self.memory_max_bytes,
            index_interval_bytes: self.index_interval_bytes,
            tail_cache_bytes: self.tail_cache_bytes,
        }
    }

    /// The default configuration as commented YAML.
    pub fn default_yaml() -> String {
        let body = serde_yaml::to_string(&Config::default()).unwrap_or_default();
        format!(
            "# robustmq-journal configuration. Every key can also be set by a flag\n\
             # (--node-id, --grpc-addr, ...) or an env var (ROBUSTMQ_JOURNAL_NODE_ID, ...).\n\
             # meta: [] runs standalone; shards are then created with the CreateShard RPC.\n\
             # default_fsync: always | interval | never; default_engine: segment | memory.\n\
             # retention_ms / retention_bytes: 0 keeps data forever / any amount.\n{body}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.yaml");
        std::fs::write(&path, "node_id: 7\nsegment_bytes: 4096\nmeta: [\"a:1\"]\n").expect("write");
        let cli = Cli::parse_from([
            "robustmq-journal",
            "--config",
            path.to_str().expect("utf8"),
            "--segment-bytes",
            "8192",
            "--meta",
            "m1:1228,m2:1228",
        ]);
        let cfg = Config::load(&cli).expect("load");
        assert_eq!(cfg.node_id, 7);
        assert_eq!(cfg.segment_bytes, 8192);
        assert_eq!(cfg.meta, vec!["m1:1228".to_string(), "m2:1228".to_string()]);

        std::fs::write(&path, "node_idd: 7\n").expect("write");
        let cli = Cli::parse_from(["robustmq-journal", "--config", path.to_str().expect("utf8")]);
        let err = Config::load(&cli).expect_err("unknown key accepted");
        assert!(
            err.contains("node_idd"),
            "error does not name the key: {err}"
        );

        std::fs::write(&path, "segment_bytes: 10\n").expect("write");
        let err = Config::load(&cli).expect_err("tiny segments accepted");
        assert!(
            err.contains("segment_bytes"),
            "error does not name the key: {err}"
        );
    }

    #[test]
    fn default_yaml_parses_back() {
        let text = Config::default_yaml();
        let cfg: Config = serde_yaml::from_str(&text).expect("parse");
        assert_eq!(cfg, Config::default());
    }
}

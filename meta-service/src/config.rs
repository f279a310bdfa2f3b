//! Configuration of `robustmq-meta`: a YAML file, overridden key by key by flags or
//! environment variables, validated at start-up with messages that name the bad key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(
    name = "robustmq-meta",
    about = "RobustMQ meta-service node (Raft metadata store)",
    version
)]
pub struct Args {
    /// YAML config file; flags and env override its keys.
    #[arg(long, env = "ROBUSTMQ_META_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's Raft id (> 0).
    #[arg(long, env = "ROBUSTMQ_META_NODE_ID")]
    pub node_id: Option<u64>,
    /// Take the id from the StatefulSet ordinal in the hostname (ordinal + 1).
    #[arg(long, env = "ROBUSTMQ_META_NODE_ID_FROM_HOSTNAME")]
    pub node_id_from_hostname: bool,
    /// Address the gRPC server binds (public API and internal Raft service).
    #[arg(long, env = "ROBUSTMQ_META_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Address other nodes use to reach this one (default: --grpc-addr, or the peer entry).
    #[arg(long, env = "ROBUSTMQ_META_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Address of the admin HTTP server (/healthz, /readyz, /metrics, /v1/cluster).
    #[arg(long, env = "ROBUSTMQ_META_ADMIN_ADDR")]
    pub admin_addr: Option<String>,
    /// Directory of the sled database.
    #[arg(long, env = "ROBUSTMQ_META_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial voters: `1=host:port,2=host:port,3=host:port`.
    #[arg(long, env = "ROBUSTMQ_META_PEERS")]
    pub peers: Option<String>,
    /// Never initialize a cluster: wait to be added with AddLearner (for new members).
    #[arg(long, env = "ROBUSTMQ_META_JOIN")]
    pub join: bool,
    /// Kubernetes: headless Service whose pod DNS names are the peers (with --replicas).
    #[arg(long, env = "ROBUSTMQ_META_PEER_SERVICE")]
    pub peer_service: Option<String>,
    /// Kubernetes: number of StatefulSet replicas (initial voters).
    #[arg(long, env = "ROBUSTMQ_META_REPLICAS")]
    pub replicas: Option<u32>,
    #[arg(long, env = "ROBUSTMQ_META_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_META_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    #[arg(long, env = "ROBUSTMQ_META_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many new log entries.
    #[arg(long, env = "ROBUSTMQ_META_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// Print the default configuration as YAML and exit.
    #[arg(long)]
    pub print_default_config: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaConfig {
    pub node_id: u64,
    pub node_id_from_hostname: bool,
    pub grpc_addr: String,
    pub advertise_addr: Option<String>,
    pub admin_addr: String,
    pub data_dir: PathBuf,
    /// Initial voters by id. Empty: a single-node cluster of this node.
    pub peers: BTreeMap<u64, String>,
    pub peer_service: Option<String>,
    pub replicas: Option<u32>,
    /// Never initialize a cluster; wait to be added (for members beyond the initial ones).
    pub join: bool,
    pub raft: RaftSettings,
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSettings {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_logs: u64,
    /// Log entries kept behind a snapshot, so that slightly lagging followers need none.
    pub logs_kept_after_snapshot: u64,
    /// Changes kept for watchers to resume from.
    pub watch_history: usize,
    /// Most commands batched into one Raft entry.
    pub max_batch: usize,
    /// Most batches proposed and not yet committed. One is best on the loopback benchmark:
    /// while it is in flight the next entry gathers every write that arrives, whereas more
    /// slots split the same writes into many small entries (64 slots: ~2 commands per entry
    /// and a third of the throughput at 64 clients).
    pub max_inflight_batches: usize,
    /// How often the leader checks for lapsed leases and expired sessions.
    pub sweep_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_concurrent_streams: u32,
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 200,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs: 20_000,
            logs_kept_after_snapshot: 1000,
            watch_history: 100_000,
            max_batch: 4096,
            max_inflight_batches: 1,
            sweep_interval_ms: 500,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 << 20,
            max_concurrent_streams: 4096,
        }
    }
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            node_id_from_hostname: false,
            grpc_addr: "0.0.0.0:1228".into(),
            advertise_addr: None,
            admin_addr: "0.0.0.0:8080".into(),
            data_dir: PathBuf::from("./data/meta"),
            peers: BTreeMap::new(),
            peer_service: None,
            replicas: None,
            join: false,
            raft: RaftSettings::default(),
            limits: Limits::default(),
        }
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("peers: '{part}' is not id=host:port"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("peers: '{id}' in '{part}' is not a node id"))?;
        if id == 0 {
            anyhow::bail!("peers: node ids start at 1 ('{part}')");
        }
        peers.insert(id, addr.trim().to_string());
    }
    Ok(peers)
}

/// Splits a StatefulSet pod hostname (`name-2`) into its set name and ordinal.
pub fn statefulset_ordinal(hostname: &str) -> anyhow::Result<(String, u64)> {
    let host = hostname.split('.').next().unwrap_or(hostname);
    let (base, ordinal) = host.rsplit_once('-').ok_or_else(|| {
        anyhow::anyhow!("node_id_from_hostname: hostname '{hostname}' has no '-<ordinal>' suffix")
    })?;
    let ordinal = ordinal.parse().map_err(|_| {
        anyhow::anyhow!(
            "node_id_from_hostname: '{ordinal}' in hostname '{hostname}' is not a number"
        )
    })?;
    Ok((base.to_string(), ordinal))
}

impl MetaConfig {
    pub fn load(args: &Args) -> anyhow::Result<Self> {
        let mut c: MetaConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
                serde_yaml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?
            }
            None => MetaConfig::default(),
        };
        if let Some(v) = args.node_id {
            c.node_id = v;
        }
        c.node_id_from_hostname |= args.node_id_from_hostname;
        c.join |= args.join;
        if let Some(v) = &args.grpc_addr {
            c.grpc_addr = v.clone();
        }
        if let Some(v) = &args.advertise_addr {
            c.advertise_addr = Some(v.clone());
        }
        if let Some(v) = &args.admin_addr {
            c.admin_addr = v.clone();
        }
        if let Some(v) = &args.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &args.peers {
            c.peers = parse_peers(v)?;
        }
        if let Some(v) = &args.peer_service {
            c.peer_service = Some(v.clone());
        }
        if let Some(v) = args.replicas {
            c.replicas = Some(v);
        }
        let r = &mut c.raft;
        r.heartbeat_ms = args.heartbeat_ms.unwrap_or(r.heartbeat_ms);
        r.election_timeout_min_ms = args
            .election_timeout_min_ms
            .unwrap_or(r.election_timeout_min_ms);
        r.election_timeout_max_ms = args
            .election_timeout_max_ms
            .unwrap_or(r.election_timeout_max_ms);
        r.snapshot_logs = args.snapshot_logs.unwrap_or(r.snapshot_logs);
        c.resolve_kubernetes()?;
        c.validate()?;
        Ok(c)
    }

    /// Derives the id and the peers from the StatefulSet identity when asked to.
    fn resolve_kubernetes(&mut self) -> anyhow::Result<()> {
        if !self.node_id_from_hostname {
            return Ok(());
        }
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        self.apply_statefulset_identity(&hostname)
    }

    /// Sets the id (ordinal + 1) and, with a peer service and replica count, the peers as
    /// the StatefulSet pods' DNS names.
    fn apply_statefulset_identity(&mut self, hostname: &str) -> anyhow::Result<()> {
        let (base, ordinal) = statefulset_ordinal(hostname)?;
        self.node_id = ordinal + 1;
        if let (Some(service), Some(replicas)) = (&self.peer_service, self.replicas) {
            let port = self
                .grpc_addr
                .rsplit_once(':')
                .map(|(_, p)| p.to_string())
                .ok_or_else(|| anyhow::anyhow!("grpc_addr '{}' has no port", self.grpc_addr))?;
            self.peers = (0..u64::from(replicas))
                .map(|i| (i + 1, format!("{base}-{i}.{service}:{port}")))
                .collect();
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.node_id == 0 {
            anyhow::bail!("node_id: must be > 0");
        }
        self.grpc_addr
            .parse::<SocketAddr>()
            .map_err(|e| anyhow::anyhow!("grpc_addr '{}': {e}", self.grpc_addr))?;
        self.admin_addr
            .parse::<SocketAddr>()
            .map_err(|e| anyhow::anyhow!("admin_addr '{}': {e}", self.admin_addr))?;
        if !self.join && !self.peers.is_empty() && !self.peers.contains_key(&self.node_id) {
            anyhow::bail!(
                "peers: this node's id {} is not among the peers {:?}",
                self.node_id,
                self.peers
            );
        }
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            anyhow::bail!(
                "raft.election_timeout_min_ms must be larger than raft.heartbeat_ms (> 0)"
            );
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            anyhow::bail!(
                "raft.election_timeout_max_ms must be larger than raft.election_timeout_min_ms"
            );
        }
        Ok(())
    }

    /// The address peers use for this node.
    pub fn advertised(&self) -> String {
        self.advertise_addr
            .clone()
            .or_else(|| self.peers.get(&self.node_id).cloned())
            .unwrap_or_else(|| self.grpc_addr.clone())
    }

    /// The initial voters (this node alone when no peers are configured).
    pub fn initial_voters(&self) -> BTreeMap<u64, String> {
        if self.peers.is_empty() {
            BTreeMap::from([(self.node_id, self.advertised())])
        } else {
            self.peers.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_reject_garbage() {
        let p = parse_peers("1=a:1, 2=b:2").unwrap();
        assert_eq!(p.get(&2).map(String::as_str), Some("b:2"));
        assert!(parse_peers("x=a:1").is_err());
        assert!(parse_peers("0=a:1").is_err());
        assert!(parse_peers("1a:1").is_err());
    }

    #[test]
    fn statefulset_identity_sets_id_and_peer_dns_names() {
        let mut c = MetaConfig {
            grpc_addr: "0.0.0.0:1228".into(),
            peer_service: Some("rmq-meta-headless".into()),
            replicas: Some(3),
            ..MetaConfig::default()
        };
        c.apply_statefulset_identity("rmq-meta-1").unwrap();
        assert_eq!(c.node_id, 2);
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.peers[&1], "rmq-meta-0.rmq-meta-headless:1228");
        assert_eq!(c.advertised(), "rmq-meta-1.rmq-meta-headless:1228");
        c.validate().unwrap();
    }

    #[test]
    fn statefulset_hostnames_give_ordinals() {
        assert_eq!(
            statefulset_ordinal("rmq-meta-2").unwrap(),
            ("rmq-meta".into(), 2)
        );
        assert_eq!(
            statefulset_ordinal("rmq-meta-0.svc.ns").unwrap(),
            ("rmq-meta".into(), 0)
        );
        assert!(statefulset_ordinal("meta").is_err());
    }
}

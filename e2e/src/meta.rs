//! Meta-service clusters of real `robustmq-meta` processes on loopback.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use robustmq_proto::meta::meta_service_client::MetaServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::harness::{Process, TestDir, bin, free_port, http_get, wait_for};

pub struct MetaNodeProc {
    pub id: u64,
    pub grpc: String,
    pub admin: String,
    pub data: PathBuf,
    pub process: Process,
}

pub struct MetaCluster {
    pub nodes: BTreeMap<u64, MetaNodeProc>,
    // Dropped last, so that processes are gone before logs are dumped.
    pub dir: TestDir,
}

/// Raft timings for tests: quick failover, tolerant of a loaded 2-core machine.
pub const FAST_RAFT: &[&str] = &[
    "--heartbeat-ms",
    "100",
    "--election-timeout-min-ms",
    "800",
    "--election-timeout-max-ms",
    "1600",
];

impl MetaCluster {
    /// Starts `n` voters and waits until a leader is elected and every node is ready.
    pub async fn start(name: &str, n: u64, extra_args: &[&str]) -> Result<Self> {
        let dir = TestDir::new(name);
        let ids: Vec<u64> = (1..=n).collect();
        let addrs: BTreeMap<u64, (String, String)> = ids
            .iter()
            .map(|id| {
                (
                    *id,
                    (
                        format!("127.0.0.1:{}", free_port()),
                        format!("127.0.0.1:{}", free_port()),
                    ),
                )
            })
            .collect();
        let peers = addrs
            .iter()
            .map(|(id, (g, _))| format!("{id}={g}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = BTreeMap::new();
        for (id, (grpc, admin)) in addrs {
            let data = dir.path().join(format!("meta-{id}"));
            let mut args = node_args(id, &grpc, &admin, &data);
            args.extend(["--peers".to_string(), peers.clone()]);
            args.extend(extra_args.iter().map(|s| s.to_string()));
            let mut process = Process::new(
                &format!("meta-{id}"),
                bin("robustmq-meta"),
                args,
                dir.path(),
            );
            process.start()?;
            nodes.insert(
                id,
                MetaNodeProc {
                    id,
                    grpc,
                    admin,
                    data,
                    process,
                },
            );
        }
        let cluster = Self { nodes, dir };
        for id in ids {
            cluster.wait_ready(id, Duration::from_secs(30)).await?;
        }
        Ok(cluster)
    }

    /// Marks the test as passed (its directory is deleted instead of kept).
    pub fn pass(&self) {
        self.dir.pass();
    }

    pub fn node(&self, id: u64) -> &MetaNodeProc {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: u64) -> &mut MetaNodeProc {
        self.nodes.get_mut(&id).expect("node id")
    }

    pub async fn client(&self, id: u64) -> Result<MetaServiceClient<Channel>> {
        client(&self.node(id).grpc).await
    }

    /// `GET /v1/cluster` of one node.
    pub fn cluster_json(&self, id: u64) -> Result<serde_json::Value> {
        let (status, body) = http_get(&self.node(id).admin, "/v1/cluster")?;
        if status != 200 {
            bail!("/v1/cluster answered {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("parsing {body}"))
    }

    pub async fn wait_ready(&self, id: u64, timeout: Duration) -> Result<()> {
        let admin = self.node(id).admin.clone();
        wait_for(&format!("meta node {id} /readyz"), timeout, || {
            let admin = admin.clone();
            async move {
                let (status, _) = http_get(&admin, "/readyz")?;
                Ok((status == 200).then_some(()))
            }
        })
        .await
    }

    /// The leader that every running node agrees on.
    pub async fn leader(&self, timeout: Duration) -> Result<u64> {
        let running: Vec<u64> = self.nodes.keys().copied().collect();
        wait_for("an agreed leader", timeout, || {
            let running = running.clone();
            async move {
                let mut seen = None;
                for id in running {
                    let Ok(j) = self.cluster_json(id) else {
                        continue;
                    };
                    let Some(leader) = j["leader_id"].as_u64() else {
                        return Ok(None);
                    };
                    if seen.is_some_and(|s| s != leader) {
                        return Ok(None);
                    }
                    seen = Some(leader);
                }
                Ok(seen)
            }
        })
        .await
    }

    /// The leader as seen by a subset of nodes (e.g. the survivors of a kill).
    pub async fn leader_among(&self, ids: &[u64], timeout: Duration) -> Result<u64> {
        wait_for("a leader among the survivors", timeout, || async move {
            let mut seen = None;
            for id in ids {
                let j = self.cluster_json(*id)?;
                let Some(leader) = j["leader_id"].as_u64() else {
                    return Ok(None);
                };
                if !ids.contains(&leader) || seen.is_some_and(|s| s != leader) {
                    return Ok(None);
                }
                seen = Some(leader);
            }
            Ok(seen)
        })
        .await
    }

    pub fn kill(&mut self, id: u64) {
        self.node_mut(id).process.kill();
    }

    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.node_mut(id).process.start()
    }

    pub fn wipe(&mut self, id: u64) -> Result<()> {
        let data = self.node(id).data.clone();
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| format!("wiping {}", data.display()))?;
        }
        Ok(())
    }
}

/// The arguments every test node gets: identity, loopback addresses, data dir, fast Raft.
fn node_args(id: u64, grpc: &str, admin: &str, data: &std::path::Path) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--node-id".into(),
        id.to_string(),
        "--grpc-addr".into(),
        grpc.into(),
        "--admin-addr".into(),
        admin.into(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    args.extend(FAST_RAFT.iter().map(|s| s.to_string()));
    args
}

/// A gRPC client of a meta node, connecting with retries for up to 10 s.
pub async fn client(addr: &str) -> Result<MetaServiceClient<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15));
    let channel = wait_for(
        &format!("a gRPC connection to {addr}"),
        Duration::from_secs(10),
        || {
            let endpoint = endpoint.clone();
            async move { Ok(Some(endpoint.connect().await?)) }
        },
    )
    .await?;
    Ok(MetaServiceClient::new(channel))
}

impl MetaCluster {
    /// Starts a new node that joins no cluster by itself (`--join`), for membership tests.
    pub fn start_joiner(&mut self, id: u64) -> Result<()> {
        let grpc = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let data = self.dir.path().join(format!("meta-{id}"));
        let mut args = node_args(id, &grpc, &admin, &data);
        args.push("--join".into());
        let mut process = Process::new(
            &format!("meta-{id}"),
            bin("robustmq-meta"),
            args,
            self.dir.path(),
        );
        process.start()?;
        self.nodes.insert(
            id,
            MetaNodeProc {
                id,
                grpc,
                admin,
                data,
                process,
            },
        );
        Ok(())
    }
}

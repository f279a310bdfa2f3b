//! Kafka e2e support: the server a scenario runs against and the clients it drives.
//!
//! A scenario picks its server with `ROBUSTMQ_KAFKA_TARGET`: `robustmq` (the default:
//! `robustmq standalone`, or a split deployment when it needs several brokers) or `apache`
//! (one Apache Kafka KRaft node from the Maven jars, to prove the scenario itself right).
//!
//! - [`apache`]: the reference Apache Kafka node;
//! - [`clients`]: the real clients (Java console tools, kafka-python, confluent-kafka,
//!   kcat, franz-go) and the tool checks;
//! - [`wire`]: a raw protocol client for what real clients cannot express.

pub mod apache;
pub mod clients;
pub mod wire;

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::harness::TestDir;
use crate::robustmq::{Split, Standalone};
use apache::{ApacheKafka, ApacheOptions};

/// Which implementation the Kafka scenarios run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Apache,
    RobustMq,
}

impl Target {
    /// From `ROBUSTMQ_KAFKA_TARGET` (`apache` or `robustmq`, default `robustmq`).
    pub fn from_env() -> Result<Target> {
        match std::env::var("ROBUSTMQ_KAFKA_TARGET").as_deref() {
            Err(_) | Ok("") | Ok("robustmq") => Ok(Target::RobustMq),
            Ok("apache") => Ok(Target::Apache),
            Ok(other) => bail!("ROBUSTMQ_KAFKA_TARGET must be apache or robustmq, not {other:?}"),
        }
    }
}

/// A running Kafka-speaking server of either kind.
pub enum Server {
    Apache(ApacheKafka),
    Standalone(Standalone),
    Split(Split),
}

/// What a scenario needs from its server.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Brokers the scenario wants to address separately (RobustMQ: a split deployment
    /// when above 1; Apache: one node, addressed under every name).
    pub brokers: usize,
    /// SASL users (name, password); for RobustMQ this also turns anonymous access off.
    pub sasl_users: Vec<(String, String)>,
    /// Partitions of auto-created topics (Apache only; RobustMQ uses its own default).
    pub partitions: u32,
}

impl Server {
    pub async fn start(target: Target, dir: &TestDir, o: &ServerOptions) -> Result<Server> {
        match target {
            Target::Apache => {
                let ao = ApacheOptions {
                    sasl_users: o.sasl_users.clone(),
                    partitions: o.partitions.max(1),
                    ..ApacheOptions::default()
                };
                Ok(Server::Apache(ApacheKafka::start(dir.path(), &ao).await?))
            }
            Target::RobustMq if o.brokers > 1 => {
                if !o.sasl_users.is_empty() {
                    bail!("SASL scenarios run on standalone");
                }
                let split = Split::start(dir, o.brokers).await?;
                let server = Server::Split(split);
                server.wait_kafka(true).await?;
                Ok(server)
            }
            Target::RobustMq => {
                let extra: &[&str] = if o.sasl_users.is_empty() {
                    &[]
                } else {
                    &["--allow-anonymous", "false"]
                };
                let sa = Standalone::start(dir, extra).await?;
                for (user, password) in &o.sasl_users {
                    crate::robustmq::ctl(
                        &sa.meta,
                        &["user", "create", user, "--password", password],
                    )?;
                }
                let server = Server::Standalone(sa);
                // Without anonymous access only ApiVersions (and the SASL handshake) is
                // served before authentication.
                server.wait_kafka(o.sasl_users.is_empty()).await?;
                Ok(server)
            }
        }
    }

    /// Waits until every Kafka listener answers ApiVersions (and Metadata, when asked).
    async fn wait_kafka(&self, metadata: bool) -> Result<()> {
        for addr in self.brokers() {
            crate::harness::wait_for(
                &format!("Kafka listener {addr}"),
                Duration::from_secs(30),
                || {
                    let addr = addr.clone();
                    async move {
                        let mut w = wire::Wire::connect(&addr)?;
                        if !metadata {
                            return Ok(Some(()));
                        }
                        let md = w.metadata(&[], false)?;
                        Ok((!md.brokers.is_empty()).then_some(()))
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Every broker's Kafka address (Apache: its one node).
    pub fn brokers(&self) -> Vec<String> {
        match self {
            Server::Apache(k) => vec![k.bootstrap()],
            Server::Standalone(sa) => vec![format!("127.0.0.1:{}", sa.kafka)],
            Server::Split(sp) => sp
                .brokers
                .iter()
                .map(|b| format!("127.0.0.1:{}", b.kafka))
                .collect(),
        }
    }

    /// The `i`-th broker's address (wrapping, so a single node serves every index).
    pub fn broker(&self, i: usize) -> String {
        let all = self.brokers();
        all[i % all.len()].clone()
    }

    /// A bootstrap list of every broker.
    pub fn bootstrap(&self) -> String {
        self.brokers().join(",")
    }

    /// Where SASL clients connect (Apache has a separate SASL listener).
    pub fn sasl_bootstrap(&self) -> Result<String> {
        match self {
            Server::Apache(k) => k.sasl_bootstrap().context("started without SASL users"),
            _ => Ok(self.bootstrap()),
        }
    }

    /// The MQTT port (RobustMQ only).
    pub fn mqtt_port(&self) -> Option<u16> {
        match self {
            Server::Apache(_) => None,
            Server::Standalone(sa) => Some(sa.mqtt),
            Server::Split(sp) => sp.brokers.first().map(|b| b.mqtt),
        }
    }

    /// The (first) broker's admin HTTP address (RobustMQ only).
    pub fn admin(&self) -> Option<&str> {
        match self {
            Server::Apache(_) => None,
            Server::Standalone(sa) => Some(&sa.admin),
            Server::Split(sp) => sp.brokers.first().map(|b| b.admin.as_str()),
        }
    }

    /// Meta's gRPC address (RobustMQ only).
    pub fn meta(&self) -> Option<&str> {
        match self {
            Server::Apache(_) => None,
            Server::Standalone(sa) => Some(&sa.meta),
            Server::Split(sp) => Some(&sp.meta_addr),
        }
    }

    /// Restarts every process that serves Kafka (Apache: the node; standalone: the
    /// process; split: every broker, with meta and journal left running) and waits until
    /// the listeners answer again.
    pub async fn restart(&mut self) -> Result<()> {
        match self {
            Server::Apache(k) => return k.restart().await,
            Server::Standalone(sa) => sa.restart().await?,
            Server::Split(sp) => sp.restart_brokers().await?,
        }
        self.wait_kafka(false).await
    }

    pub fn is_running(&mut self) -> bool {
        match self {
            Server::Apache(k) => k.process.is_running(),
            Server::Standalone(sa) => sa.proc.is_running(),
            Server::Split(sp) => sp.brokers.iter_mut().all(|b| b.proc.is_running()),
        }
    }

    pub fn stop(&mut self) {
        match self {
            Server::Apache(k) => k.stop(),
            Server::Standalone(sa) => sa.stop(),
            Server::Split(sp) => sp.stop(),
        }
    }
}

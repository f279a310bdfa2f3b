//! Apache Kafka itself, one KRaft node (broker and controller in one JVM) run from the
//! Maven jars that `e2e/clients/install.sh` copies: the reference server the Kafka e2e
//! scenarios are proven against, and the baseline of the Kafka benchmark.
//!
//! Start-up is `kafka.tools.StorageTool format` then `kafka.Kafka server.properties`, both
//! as `java -cp <libs>/*`, on free loopback ports with data in the test's directory; the
//! node is stopped by its pid. With SASL users, a second listener speaks SASL_PLAINTEXT
//! with SCRAM-SHA-256/512 (users formatted into the metadata log) and PLAIN.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::clients::{kafka_libs, run};
use super::wire::Wire;
use crate::harness::{Process, free_port, wait_for};

/// How to run the node.
#[derive(Clone, Debug)]
pub struct ApacheOptions {
    /// Users (name, password) for a SASL_PLAINTEXT listener; none: no such listener.
    pub sasl_users: Vec<(String, String)>,
    /// Partitions of auto-created topics.
    pub partitions: u32,
    /// JVM heap, as -Xmx.
    pub heap: String,
    /// More server.properties lines (`key=value`), e.g. a flush policy for benchmarks.
    pub extra: Vec<String>,
}

impl Default for ApacheOptions {
    fn default() -> Self {
        Self {
            sasl_users: Vec::new(),
            partitions: 1,
            heap: "512m".into(),
            extra: Vec::new(),
        }
    }
}

/// A running single-node Apache Kafka.
pub struct ApacheKafka {
    pub process: Process,
    /// The PLAINTEXT listener.
    pub port: u16,
    /// The SASL_PLAINTEXT listener, when users were given.
    pub sasl_port: Option<u16>,
}

fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// The JVM options every Kafka JVM of the suite gets: the slf4j-simple binding at warn, on
/// stderr (which goes to the process log).
fn jvm_args(heap: &str) -> Vec<String> {
    vec![
        format!("-Xmx{heap}"),
        "-Djava.awt.headless=true".into(),
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn".into(),
        "-Dlog4j2.level=warn".into(),
        "-cp".into(),
        format!("{}/*", kafka_libs().display()),
    ]
}

/// A KRaft cluster id: 16 bytes as unpadded URL-safe base64 (22 characters).
fn cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = nanos ^ (u128::from(std::process::id()) << 64);
    let bytes = seed.to_le_bytes();
    let mut out = String::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

fn properties(
    dir: &Path,
    port: u16,
    controller: u16,
    sasl: Option<u16>,
    o: &ApacheOptions,
) -> String {
    let mut listeners = format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}");
    let mut advertised = format!("PLAINTEXT://127.0.0.1:{port}");
    let mut map = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_string();
    let mut extra = String::new();
    if let Some(sp) = sasl {
        listeners.push_str(&format!(",SASL://127.0.0.1:{sp}"));
        advertised.push_str(&format!(",SASL://127.0.0.1:{sp}"));
        map.push_str(",SASL:SASL_PLAINTEXT");
        let plain_users: String = o
            .sasl_users
            .iter()
            .map(|(u, p)| format!(" user_{u}=\"{p}\""))
            .collect();
        extra.push_str(&format!(
            "listener.name.sasl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN\n\
             listener.name.sasl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};\n"
        ));
    }
    for line in &o.extra {
        extra.push_str(line);
        extra.push('\n');
    }
    format!(
        "process.roles=broker,controller\n\
         node.id=1\n\
         controller.quorum.voters=1@127.0.0.1:{controller}\n\
         listeners={listeners}\n\
         advertised.listeners={advertised}\n\
         controller.listener.names=CONTROLLER\n\
         listener.security.protocol.map={map}\n\
         inter.broker.listener.name=PLAINTEXT\n\
         log.dirs={}\n\
         num.partitions={}\n\
         auto.create.topics.enable=true\n\
         offsets.topic.replication.factor=1\n\
         offsets.topic.num.partitions=4\n\
         transaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\n\
         share.coordinator.state.topic.replication.factor=1\n\
         share.coordinator.state.topic.min.isr=1\n\
         group.initial.rebalance.delay.ms=0\n\
         {extra}",
        dir.join("data").display(),
        o.partitions,
    )
}

impl ApacheKafka {
    /// Formats a data directory under `dir`, starts the node and waits until its broker
    /// answers Metadata (up to 90 s: a cold JVM on a loaded 2-core machine is slow).
    pub async fn start(dir: &Path, o: &ApacheOptions) -> Result<ApacheKafka> {
        let (port, controller) = (free_port(), free_port());
        let sasl_port = (!o.sasl_users.is_empty()).then(free_port);
        let kdir = dir.join("apache-kafka");
        std::fs::create_dir_all(&kdir)?;
        let props = kdir.join("server.properties");
        std::fs::write(&props, properties(&kdir, port, controller, sasl_port, o))?;

        let mut format = Command::new(java());
        format
            .args(jvm_args("256m"))
            .args([
                "kafka.tools.StorageTool",
                "format",
                "-t",
                &cluster_id(),
                "-c",
            ])
            .arg(&props);
        for (user, password) in &o.sasl_users {
            for mech in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
                format
                    .arg("--add-scram")
                    .arg(format!("{mech}=[name={user},password={password}]"));
            }
        }
        let out =
            run(&mut format, None, Duration::from_secs(90)).context("kafka-storage format")?;
        if !out.ok {
            bail!(
                "kafka-storage format failed:\n{}\n{}",
                out.stdout,
                out.stderr
            );
        }

        let mut args = jvm_args(&o.heap);
        args.push("kafka.Kafka".into());
        args.push(props.display().to_string());
        let mut process = Process::new("apache-kafka", java(), args, dir);
        process.start()?;
        let kafka = ApacheKafka {
            process,
            port,
            sasl_port,
        };
        kafka.wait_ready().await?;
        Ok(kafka)
    }

    async fn wait_ready(&self) -> Result<()> {
        let addr = self.bootstrap();
        wait_for(
            "Apache Kafka to answer Metadata",
            Duration::from_secs(90),
            || {
                let addr = addr.clone();
                async move {
                    let mut w = Wire::connect(&addr)?;
                    let md = w.metadata(&[], false)?;
                    Ok((!md.brokers.is_empty()).then_some(()))
                }
            },
        )
        .await
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn sasl_bootstrap(&self) -> Option<String> {
        self.sasl_port.map(|p| format!("127.0.0.1:{p}"))
    }

    /// SIGTERM (a clean shutdown flushes and closes the logs), then the same command again.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.terminate(Duration::from_secs(60));
        self.process.start()?;
        self.wait_ready().await
    }

    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(60));
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_id;

    #[test]
    fn cluster_ids_are_22_url_safe_base64_characters() {
        let id = cluster_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{id}"
        );
    }
}

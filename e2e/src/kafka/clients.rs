//! The real Kafka clients of the e2e suite, run as processes with bounded waits, and their
//! output read into one shape ([`Outcome`]) whichever client produced it.
//!
//! - kafka-python and confluent-kafka: `e2e/clients/kafka/*.py` in the tools venv;
//! - franz-go: `$ROBUSTMQ_TOOLS_DIR/bin/franz-client` (source in `e2e/clients/franz`);
//! - kcat from Debian;
//! - the Apache Kafka console producer and consumer from the Maven jars.
//!
//! All of them follow the payload rule of `e2e/clients/kafka/common.py`: value i is
//! `<prefix>-<i>` padded with `x` to the value size, key i is the given key or `k-<i>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// `${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}`.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("ROBUSTMQ_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/robustmq-tools")
        })
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The Apache Kafka version the pom pins.
pub fn kafka_version() -> String {
    let pom = include_str!("../../clients/kafka-java/pom.xml");
    pom.split_once("<kafka.version>")
        .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
        .map(|(v, _)| v.trim().to_string())
        .expect("<kafka.version> in e2e/clients/kafka-java/pom.xml")
}

/// Where install.sh copies the Apache Kafka jars.
pub fn kafka_libs() -> PathBuf {
    tools_dir()
        .join(format!("kafka-{}", kafka_version()))
        .join("libs")
}

pub fn python() -> PathBuf {
    tools_dir().join("venv/bin/python")
}

pub fn franz() -> PathBuf {
    tools_dir().join("bin/franz-client")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// kcat, or its older name kafkacat.
pub fn kcat() -> Option<PathBuf> {
    on_path("kcat").or_else(|| on_path("kafkacat"))
}

/// The third-party programs a test can need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    KafkaPython,
    Confluent,
    Kcat,
    Franz,
    /// The Apache Kafka jars (console tools, perf tools, the reference broker) and java.
    KafkaJars,
    Mosquitto,
}

impl Tool {
    fn missing(self) -> Option<String> {
        let py_has = |module: &str| {
            Command::new(python())
                .args(["-c", &format!("import {module}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let ok = match self {
            Tool::KafkaPython => py_has("kafka"),
            Tool::Confluent => py_has("confluent_kafka"),
            Tool::Kcat => kcat().is_some(),
            Tool::Franz => franz().is_file(),
            Tool::KafkaJars => {
                kafka_libs()
                    .join(format!("kafka-clients-{}.jar", kafka_version()))
                    .is_file()
                    && on_path("java").is_some()
            }
            Tool::Mosquitto => {
                on_path("mosquitto_pub").is_some() && on_path("mosquitto_sub").is_some()
            }
        };
        (!ok).then(|| format!("{self:?}"))
    }
}

/// Whether a test has every tool it needs. A missing tool is a skip with a message, but a
/// failure when `ROBUSTMQ_REQUIRE_TOOLS` is set (as CI sets it, after install.sh).
pub fn have_tools(test: &str, tools: &[Tool]) -> Result<bool> {
    let missing: Vec<String> = tools.iter().filter_map(|t| t.missing()).collect();
    if missing.is_empty() {
        return Ok(true);
    }
    let msg = format!(
        "{test}: missing {} (run e2e/clients/install.sh)",
        missing.join(", ")
    );
    if std::env::var_os("ROBUSTMQ_REQUIRE_TOOLS").is_some() {
        bail!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    Ok(false)
}

/// What a finished process printed.
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn drain(r: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let mut raw = Vec::new();
            let _ = r.read_to_end(&mut raw);
            s = String::from_utf8_lossy(&raw).into_owned();
        }
        s
    })
}

/// Runs `cmd` with `stdin` fed to it, killing it (by its pid) after `timeout`.
pub fn run(cmd: &mut Command, stdin: Option<String>, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {timeout:?}]"));
    }
    Ok(Output {
        ok: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    })
}

/// The clients of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// The Apache Kafka console producer and consumer.
    Java,
    KafkaPython,
    Confluent,
    Kcat,
    Franz,
}

impl Client {
    pub const ALL: [Client; 5] = [
        Client::Java,
        Client::KafkaPython,
        Client::Confluent,
        Client::Kcat,
        Client::Franz,
    ];

    pub fn tool(self) -> Tool {
        match self {
            Client::Java => Tool::KafkaJars,
            Client::KafkaPython => Tool::KafkaPython,
            Client::Confluent => Tool::Confluent,
            Client::Kcat => Tool::Kcat,
            Client::Franz => Tool::Franz,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Client::Java => "java-console",
            Client::KafkaPython => "kafka-python",
            Client::Confluent => "confluent-kafka",
            Client::Kcat => "kcat",
            Client::Franz => "franz-go",
        }
    }
}

/// SASL credentials for a client.
#[derive(Clone, Debug)]
pub struct Sasl {
    pub mechanism: String,
    pub user: String,
    pub password: String,
}

/// What to produce.
#[derive(Clone, Debug)]
pub struct Produce {
    pub brokers: String,
    pub topic: String,
    pub count: usize,
    pub prefix: String,
    pub value_size: usize,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    pub idempotent: bool,
    pub partition: Option<i32>,
    /// CreateTime of record 0; record i gets start + i * 1000.
    pub timestamp_start: Option<i64>,
    pub sasl: Option<Sasl>,
    pub timeout: Duration,
}

impl Produce {
    pub fn new(brokers: &str, topic: &str, count: usize, prefix: &str) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            count,
            prefix: prefix.into(),
            value_size: 0,
            key: None,
            headers: Vec::new(),
            compression: "none".into(),
            idempotent: false,
            partition: None,
            timestamp_start: None,
            sasl: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// The values this spec produces, in order.
    pub fn values(&self) -> Vec<String> {
        (0..self.count)
            .map(|i| payload(&self.prefix, i, self.value_size))
            .collect()
    }
}

/// The suite's payload rule.
pub fn payload(prefix: &str, i: usize, size: usize) -> String {
    let mut s = format!("{prefix}-{i}");
    if s.len() < size {
        s.push_str(&"x".repeat(size - s.len()));
    }
    s
}

/// What to consume.
#[derive(Clone, Debug)]
pub struct Consume {
    pub brokers: String,
    pub topic: String,
    pub count: usize,
    pub group: Option<String>,
    /// Read this partition only (no group), from `offset` when given.
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// auto.offset.reset: earliest (default), latest or error.
    pub reset: String,
    pub commit: bool,
    pub sasl: Option<Sasl>,
    pub timeout: Duration,
}

impl Consume {
    pub fn new(brokers: &str, topic: &str, count: usize) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            count,
            group: None,
            partition: None,
            offset: None,
            reset: "earliest".into(),
            commit: true,
            sasl: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// One consumed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: String,
    pub headers: Vec<(String, String)>,
    pub timestamp: i64,
}

/// A client's result in the shape of `e2e/clients/kafka/common.py`.
#[derive(Debug)]
pub struct Outcome {
    pub client: Client,
    /// Exit status 0.
    pub ok: bool,
    pub json: Value,
    pub stderr: String,
}

impl Outcome {
    pub fn records(&self) -> Vec<Rec> {
        self.json["records"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| Rec {
                        partition: r["partition"].as_i64().unwrap_or(-1) as i32,
                        offset: r["offset"].as_i64().unwrap_or(-1),
                        key: r["key"].as_str().map(str::to_string),
                        value: r["value"].as_str().unwrap_or_default().to_string(),
                        headers: r["headers"]
                            .as_array()
                            .map(|hs| {
                                hs.iter()
                                    .map(|h| {
                                        (
                                            h[0].as_str().unwrap_or_default().to_string(),
                                            h[1].as_str().unwrap_or_default().to_string(),
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        timestamp: r["timestamp"].as_i64().unwrap_or(-1),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn values(&self) -> Vec<String> {
        self.records().into_iter().map(|r| r.value).collect()
    }

    pub fn errors(&self) -> Vec<String> {
        self.json["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fails with everything the client said unless it succeeded.
    pub fn expect_ok(self, what: &str) -> Result<Outcome> {
        if !self.ok {
            bail!(
                "{} {what} failed: {}\nerrors: {:?}\nstderr (tail): {}",
                self.client.name(),
                self.json,
                self.errors(),
                tail(&self.stderr, 30)
            );
        }
        Ok(self)
    }
}

pub fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn script(client: Client) -> PathBuf {
    clients_dir().join("kafka").join(match client {
        Client::KafkaPython => "kafka_python_client.py",
        _ => "confluent_client.py",
    })
}

fn json_of(client: Client, out: &Output) -> Value {
    out.stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| json!({"client": client.name(), "errors": ["no JSON output"]}))
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Produces with `client`.
pub fn produce(client: Client, p: &Produce) -> Result<Outcome> {
    let limit = p.timeout + Duration::from_secs(30);
    let (out, json) = match client {
        Client::KafkaPython | Client::Confluent => {
            let mut cmd = Command::new(python());
            cmd.arg(script(client)).arg("produce");
            cmd.args(["--brokers", &p.brokers, "--topic", &p.topic]);
            cmd.args(["--count", &p.count.to_string(), "--prefix", &p.prefix]);
            cmd.args(["--value-size", &p.value_size.to_string()]);
            cmd.args([
                "--compression",
                &p.compression,
                "--timeout",
                &secs(p.timeout),
            ]);
            if let Some(k) = &p.key {
                cmd.args(["--key", k]);
            }
            if !p.headers.is_empty() {
                cmd.args(["--headers", &header_list(&p.headers)]);
            }
            if p.idempotent {
                cmd.arg("--idempotent");
            }
            if let Some(part) = p.partition {
                cmd.args(["--partition", &part.to_string()]);
            }
            if let Some(ts) = p.timestamp_start {
                cmd.args(["--timestamp-start", &ts.to_string()]);
            }
            sasl_flags(&mut cmd, &p.sasl, "--");
            let out = run(&mut cmd, None, limit)?;
            let json = json_of(client, &out);
            (out, json)
        }
        Client::Franz => {
            let mut cmd = Command::new(franz());
            cmd.args([
                "-mode", "produce", "-brokers", &p.brokers, "-topic", &p.topic,
            ]);
            cmd.args(["-count", &p.count.to_string(), "-prefix", &p.prefix]);
            cmd.args(["-value-size", &p.value_size.to_string()]);
            cmd.args(["-compression", &p.compression]);
            cmd.arg(format!("-idempotent={}", p.idempotent));
            cmd.args(["-timeout", &format!("{}ms", p.timeout.as_millis())]);
            if let Some(k) = &p.key {
                cmd.args(["-key", k]);
            }
            if !p.headers.is_empty() {
                cmd.args(["-headers", &header_list(&p.headers)]);
            }
            if let Some(part) = p.partition {
                cmd.args(["-partition", &part.to_string()]);
            }
            if p.timestamp_start.is_some() {
                bail!("franz-client does not set timestamps");
            }
            sasl_flags(&mut cmd, &p.sasl, "-");
            let out = run(&mut cmd, None, limit)?;
            let json = json_of(client, &out);
            (out, json)
        }
        Client::Kcat => {
            let mut cmd = Command::new(kcat().context("kcat not installed")?);
            cmd.args(["-b", &p.brokers, "-P", "-t", &p.topic, "-K", "\t"]);
            cmd.args(["-z", &p.compression, "-X", "acks=all"]);
            cmd.args(["-X", &format!("enable.idempotence={}", p.idempotent)]);
            cmd.args([
                "-X",
                &format!("message.timeout.ms={}", p.timeout.as_millis()),
            ]);
            for (k, v) in &p.headers {
                cmd.args(["-H", &format!("{k}={v}")]);
            }
            if let Some(part) = p.partition {
                cmd.args(["-p", &part.to_string()]);
            }
            kcat_sasl(&mut cmd, &p.sasl);
            let out = run(&mut cmd, Some(lines(p, "\t")), limit)?;
            let json = synthesized(client, p.count, &out);
            (out, json)
        }
        Client::Java => {
            let mut cmd = java_tool("org.apache.kafka.tools.ConsoleProducer");
            cmd.args(["--bootstrap-server", &p.brokers, "--topic", &p.topic]);
            cmd.args([
                "--property",
                "parse.key=true",
                "--property",
                "key.separator=\t",
            ]);
            cmd.args(["--request-required-acks", "all", "--sync"]);
            if !p.headers.is_empty() {
                cmd.args(["--property", "parse.headers=true"]);
                cmd.args(["--property", "headers.delimiter=\t"]);
            }
            if p.compression != "none" {
                cmd.args(["--compression-codec", &p.compression]);
            }
            cmd.args([
                "--producer-property",
                &format!("enable.idempotence={}", p.idempotent),
            ]);
            if let Some(part) = p.partition {
                cmd.args(["--property", &format!("partition={part}")]);
            }
            if p.sasl.is_some() {
                bail!("the console producer is not driven with SASL in this suite");
            }
            let input = if p.headers.is_empty() {
                lines(p, "\t")
            } else {
                let hs = p
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                lines(p, "\t")
                    .lines()
                    .map(|l| format!("{hs}\t{l}\n"))
                    .collect()
            };
            let out = run(&mut cmd, Some(input), limit)?;
            let json = synthesized(client, p.count, &out);
            (out, json)
        }
    };
    Ok(Outcome {
        client,
        ok: out.ok,
        json,
        stderr: out.stderr,
    })
}

/// Input lines `key<sep>value` for line-oriented producers.
fn lines(p: &Produce, sep: &str) -> String {
    p.values()
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = p.key.clone().unwrap_or_else(|| format!("k-{i}"));
            format!("{key}{sep}{v}\n")
        })
        .collect()
}

fn header_list(h: &[(String, String)]) -> String {
    h.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A produce result for tools that report nothing but their exit status.
fn synthesized(client: Client, count: usize, out: &Output) -> Value {
    let errors: Vec<String> = if out.ok {
        Vec::new()
    } else {
        vec![tail(&out.stderr, 10)]
    };
    json!({"client": client.name(), "op": "produce", "acked": if out.ok { count } else { 0 },
           "offsets": [], "records": [], "assignments": [], "errors": errors})
}

fn sasl_flags(cmd: &mut Command, sasl: &Option<Sasl>, dash: &str) {
    if let Some(s) = sasl {
        cmd.arg(format!("{dash}sasl-mechanism")).arg(&s.mechanism);
        cmd.arg(format!("{dash}user")).arg(&s.user);
        cmd.arg(format!("{dash}password")).arg(&s.password);
    }
}

fn kcat_sasl(cmd: &mut Command, sasl: &Option<Sasl>) {
    if let Some(s) = sasl {
        cmd.args(["-X", "security.protocol=SASL_PLAINTEXT"]);
        cmd.args(["-X", &format!("sasl.mechanism={}", s.mechanism)]);
        cmd.args(["-X", &format!("sasl.username={}", s.user)]);
        cmd.args(["-X", &format!("sasl.password={}", s.password)]);
    }
}

/// `java -cp <libs>/* <main>` with the suite's quiet logging.
pub fn java_tool(main: &str) -> Command {
    let mut cmd = Command::new("java");
    cmd.args([
        "-Xmx512m",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dlog4j2.level=warn",
        "-cp",
        &format!("{}/*", kafka_libs().display()),
        main,
    ]);
    cmd
}

/// Consumes with `client`.
pub fn consume(client: Client, c: &Consume) -> Result<Outcome> {
    let limit = c.timeout + Duration::from_secs(30);
    let (out, json) = match client {
        Client::KafkaPython | Client::Confluent => {
            let mut cmd = Command::new(python());
            cmd.arg(script(client)).arg("consume");
            cmd.args(["--brokers", &c.brokers, "--topic", &c.topic]);
            cmd.args(["--count", &c.count.to_string(), "--reset", &c.reset]);
            cmd.args(["--timeout", &secs(c.timeout)]);
            if let Some(g) = &c.group {
                cmd.args(["--group", g]);
            }
            if let Some(p) = c.partition {
                cmd.args(["--partition", &p.to_string()]);
            }
            if let Some(o) = c.offset {
                cmd.args(["--offset", &o.to_string()]);
            }
            if !c.commit {
                cmd.arg("--no-commit");
            }
            sasl_flags(&mut cmd, &c.sasl, "--");
            let out = run(&mut cmd, None, limit)?;
            let json = json_of(client, &out);
            (out, json)
        }
        Client::Franz => {
            let mut cmd = Command::new(franz());
            cmd.args([
                "-mode", "consume", "-brokers", &c.brokers, "-topic", &c.topic,
            ]);
            cmd.args(["-count", &c.count.to_string()]);
            cmd.args(["-timeout", &format!("{}ms", c.timeout.as_millis())]);
            cmd.arg(format!("-commit={}", c.commit));
            if c.reset == "latest" {
                cmd.arg("-from-end");
            }
            if let Some(g) = &c.group {
                cmd.args(["-group", g]);
            }
            if c.partition.is_some() || c.offset.is_some() {
                bail!("franz-client consumes whole topics only");
            }
            sasl_flags(&mut cmd, &c.sasl, "-");
            let out = run(&mut cmd, None, limit)?;
            let json = json_of(client, &out);
            (out, json)
        }
        Client::Kcat => {
            let mut cmd = Command::new(kcat().context("kcat not installed")?);
            cmd.args(["-b", &c.brokers, "-C", "-J", "-c", &c.count.to_string()]);
            match &c.group {
                Some(g) => {
                    cmd.args(["-G", g, &c.topic]);
                    cmd.args(["-X", &format!("auto.offset.reset={}", c.reset)]);
                }
                None => {
                    cmd.args(["-t", &c.topic]);
                    let start = match c.offset {
                        Some(o) => o.to_string(),
                        None if c.reset == "latest" => "end".into(),
                        None => "beginning".into(),
                    };
                    cmd.args(["-o", &start]);
                    if let Some(p) = c.partition {
                        cmd.args(["-p", &p.to_string()]);
                    }
                }
            }
            kcat_sasl(&mut cmd, &c.sasl);
            let out = run(&mut cmd, None, c.timeout)?;
            let records: Vec<Value> = out
                .stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|m| {
                    let headers: Vec<Value> = m["headers"]
                        .as_array()
                        .map(|h| h.chunks(2).map(|kv| json!([kv[0], kv[1]])).collect())
                        .unwrap_or_default();
                    json!({"topic": m["topic"], "partition": m["partition"], "offset": m["offset"],
                           "key": m["key"], "value": m["payload"], "headers": headers,
                           "timestamp": m["ts"]})
                })
                .collect();
            let errors: Vec<String> = if records.len() < c.count {
                vec![format!(
                    "kcat consumed {} of {} records: {}",
                    records.len(),
                    c.count,
                    tail(&out.stderr, 10)
                )]
            } else {
                Vec::new()
            };
            let json = json!({"client": client.name(), "op": "consume", "records": records,
                              "assignments": [], "errors": errors});
            let ok = errors_empty(&json);
            (Output { ok, ..out }, json)
        }
        Client::Java => {
            let mut cmd = java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer");
            cmd.args(["--bootstrap-server", &c.brokers, "--topic", &c.topic]);
            cmd.args(["--max-messages", &c.count.to_string()]);
            cmd.args(["--timeout-ms", &c.timeout.as_millis().to_string()]);
            for prop in [
                "print.key=true",
                "print.offset=true",
                "print.partition=true",
                "print.headers=true",
                "print.timestamp=true",
                "key.separator=\t",
                "headers.separator=,",
                "headers.key.separator=:",
            ] {
                cmd.args(["--property", prop]);
            }
            match (&c.group, c.partition) {
                (Some(g), _) => {
                    cmd.args(["--group", g]);
                    cmd.args([
                        "--consumer-property",
                        &format!("auto.offset.reset={}", c.reset),
                    ]);
                }
                (None, Some(p)) => {
                    cmd.args(["--partition", &p.to_string()]);
                    let start = c.offset.map(|o| o.to_string()).unwrap_or_else(|| {
                        if c.reset == "latest" {
                            "latest"
                        } else {
                            "earliest"
                        }
                        .into()
                    });
                    cmd.args(["--offset", &start]);
                }
                (None, None) if c.reset == "latest" => {}
                (None, None) => {
                    cmd.arg("--from-beginning");
                }
            }
            if c.sasl.is_some() {
                bail!("the console consumer is not driven with SASL in this suite");
            }
            let out = run(&mut cmd, None, limit)?;
            let records: Vec<Value> = out.stdout.lines().filter_map(parse_console_line).collect();
            let mut errors = Vec::new();
            if records.len() < c.count {
                errors.push(format!(
                    "console consumer printed {} of {} records: {}",
                    records.len(),
                    c.count,
                    tail(&out.stderr, 10)
                ));
            }
            let json = json!({"client": client.name(), "op": "consume", "records": records,
                              "assignments": [], "errors": errors});
            let ok = errors_empty(&json);
            (Output { ok, ..out }, json)
        }
    };
    Ok(Outcome {
        client,
        ok: out.ok,
        json,
        stderr: out.stderr,
    })
}

fn errors_empty(json: &Value) -> bool {
    json["errors"].as_array().is_none_or(|e| e.is_empty())
}

/// One console consumer line:
/// `CreateTime:<ts>\tPartition:<p>\tOffset:<o>\t<headers>\t<key>\t<value>`, where headers
/// are `k:v,k2:v2` or `NO_HEADERS` and a missing key is `null`.
fn parse_console_line(line: &str) -> Option<Value> {
    let f: Vec<&str> = line.splitn(6, '\t').collect();
    if f.len() != 6 {
        return None;
    }
    let ts: i64 = f[0].rsplit(':').next()?.parse().ok()?;
    let partition: i64 = f[1].strip_prefix("Partition:")?.parse().ok()?;
    let offset: i64 = f[2].strip_prefix("Offset:")?.parse().ok()?;
    let headers: Vec<Value> = if f[3] == "NO_HEADERS" {
        Vec::new()
    } else {
        f[3].split(',')
            .filter_map(|kv| kv.split_once(':'))
            .map(|(k, v)| json!([k, v]))
            .collect()
    };
    let key = (f[4] != "null").then_some(f[4]);
    Some(
        json!({"partition": partition, "offset": offset, "key": key, "value": f[5],
                "headers": headers, "timestamp": ts}),
    )
}

/// `offsets` mode of a Python client: (earliest, latest, offset for `timestamp`).
pub fn offsets(
    client: Client,
    brokers: &str,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> Result<(i64, i64, Option<i64>)> {
    let mut cmd = Command::new(python());
    cmd.arg(script(client)).arg("offsets");
    cmd.args(["--brokers", brokers, "--topic", topic]);
    cmd.args(["--partition", &partition.to_string()]);
    cmd.args(["--timestamp", &timestamp.to_string(), "--timeout", "20"]);
    let out = run(&mut cmd, None, Duration::from_secs(60))?;
    let json = json_of(client, &out);
    if !out.ok {
        bail!(
            "{} offsets failed: {json}\n{}",
            client.name(),
            tail(&out.stderr, 20)
        );
    }
    Ok((
        json["earliest"].as_i64().context("earliest")?,
        json["latest"].as_i64().context("latest")?,
        json["for_time"].as_i64(),
    ))
}

/// A long-lived consumer-group member (the `member` mode of a Python client): its events
/// are collected as they come; closing its stdin makes it leave the group.
pub struct Member {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: JoinHandle<String>,
    reader: Option<JoinHandle<()>>,
}

impl Member {
    pub fn start(
        client: Client,
        name: &str,
        brokers: &str,
        topic: &str,
        group: &str,
        lifetime: Duration,
    ) -> Result<Member> {
        let mut child = Command::new(python())
            .arg(script(client))
            .arg("member")
            .args(["--brokers", brokers, "--topic", topic, "--group", group])
            .args(["--timeout", &secs(lifetime)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a group member")?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().context("member stdout")?;
        let sink = events.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().expect("events").push(v);
                }
            }
        });
        let stderr = drain(child.stderr.take());
        Ok(Member {
            name: name.into(),
            stdin: child.stdin.take(),
            child,
            events,
            stderr,
            reader: Some(reader),
        })
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().expect("events").clone()
    }

    /// The partitions of the latest assignment (an empty list after a revoke with none
    /// since).
    pub fn assignment(&self) -> Option<Vec<i32>> {
        let mut current = None;
        for e in self.events() {
            match e["event"].as_str() {
                Some("assigned") => current = Some(partitions(&e)),
                Some("revoked") => current = Some(Vec::new()),
                _ => {}
            }
        }
        current
    }

    /// Values of the records this member has printed so far.
    pub fn values(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "record")
            .filter_map(|e| e["value"].as_str().map(str::to_string))
            .collect()
    }

    /// Errors the member reported.
    pub fn errors(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "error")
            .map(|e| e["error"].to_string())
            .collect()
    }

    /// Closes stdin so the member leaves the group; waits up to `within`, then kills it.
    pub fn leave(&mut self, within: Duration) -> Result<String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + within;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("member {} did not leave within {within:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Ok(
            std::mem::replace(&mut self.stderr, std::thread::spawn(String::new))
                .join()
                .unwrap_or_default(),
        )
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn partitions(e: &Value) -> Vec<i32> {
    e["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.as_i64())
                .map(|p| p as i32)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_consumer_lines_parse_into_records() {
        let v = parse_console_line(
            "CreateTime:1700000000000\tPartition:2\tOffset:7\tunit:C,src:x\tsensors/a\t21.5",
        )
        .expect("parsed");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 7);
        assert_eq!(v["key"], "sensors/a");
        assert_eq!(v["value"], "21.5");
        assert_eq!(v["headers"], json!([["unit", "C"], ["src", "x"]]));
        let v = parse_console_line("CreateTime:1\tPartition:0\tOffset:0\tNO_HEADERS\tnull\tv")
            .expect("parsed");
        assert_eq!(v["key"], Value::Null);
        assert!(parse_console_line("Processed a total of 3 messages").is_none());
    }

    #[test]
    fn payloads_follow_the_suite_rule() {
        assert_eq!(payload("m", 3, 0), "m-3");
        assert_eq!(payload("m", 3, 6), "m-3xxx");
        assert_eq!(payload("long-prefix", 12, 4), "long-prefix-12");
    }
}

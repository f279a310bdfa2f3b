//! The MQTT broker against real third-party clients: paho-mqtt (Python, MQTT 3.1.1 and
//! 5) and mosquitto_pub/mosquitto_sub, plus hand-written malformed packets, all against
//! `robustmq standalone` on loopback ports.
//!
//! Needs the binaries built (`cargo build -p broker`) and the clients installed
//! (`e2e/clients/install.sh`: mosquitto-clients from apt, paho-mqtt in a venv under
//! `${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}`). A missing client fails the test
//! with that instruction rather than skipping it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::harness::{TestDir, free_port};
use e2e::robustmq::{Split, Standalone, ctl};

fn tools_dir() -> PathBuf {
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

fn python() -> PathBuf {
    let py = tools_dir().join("venv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run e2e/clients/install.sh first",
        py.display()
    );
    py
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} missing: run e2e/clients/install.sh first");
}

/// Waits for a child, killing it (by its pid) after `timeout`. Returns (success, output).
fn finish(mut child: Child, timeout: Duration) -> Result<(bool, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut out = String::new();
            if let Some(mut s) = child.stdout.take() {
                s.read_to_string(&mut out)?;
            }
            if let Some(mut s) = child.stderr.take() {
                s.read_to_string(&mut out)?;
            }
            return Ok((status.success(), out));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            child.wait()?;
            bail!("client did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs one `paho_check.py` scenario with `args`; fails with `what` and the client's output.
fn paho_run(args: &[&str], what: &str) -> Result<String> {
    let child = Command::new(python())
        .arg(clients_dir().join("paho_check.py"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting paho_check.py")?;
    let (ok, out) = finish(child, Duration::from_secs(60))?;
    if !ok {
        bail!("{what}:\n{out}");
    }
    Ok(out)
}

fn paho(port: u16, scenario: &str, version: u8, qos: u8) -> Result<String> {
    let (port, version, qos) = (port.to_string(), version.to_string(), qos.to_string());
    paho_run(
        &[
            scenario,
            "--port",
            &port,
            "--version",
            &version,
            "--qos",
            &qos,
        ],
        &format!("paho {scenario} v{version} qos{qos} failed"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_pubsub_retained_will_persistent_and_shared_in_v311_and_v5() -> Result<()> {
    let py = python();
    assert!(py.exists());
    let dir = TestDir::new("mqtt-paho");
    let mut sa = Standalone::start(&dir, &[]).await?;
    for version in [3u8, 5] {
        for qos in 0..=2u8 {
            print!("{}", paho(sa.mqtt, "pubsub", version, qos)?);
        }
        for scenario in ["retained", "will", "persistent", "shared"] {
            print!("{}", paho(sa.mqtt, scenario, version, 1)?);
        }
    }
    print!("{}", paho(sa.mqtt, "will-delay", 5, 1)?);
    sa.stop();
    dir.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_exchange_messages_at_every_qos() -> Result<()> {
    require("mosquitto_pub");
    require("mosquitto_sub");
    let dir = TestDir::new("mqtt-mosquitto");
    let mut sa = Standalone::start(&dir, &[]).await?;
    let port = sa.mqtt.to_string();
    for (v, qos) in [
        ("mqttv311", "0"),
        ("mqttv311", "2"),
        ("mqttv5", "1"),
        ("mqttv5", "2"),
    ] {
        let topic = format!("e2e/mosq/{v}/{qos}");
        let sub = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", v, "-q", qos])
            .args(["-t", "e2e/mosq/#", "-C", "3", "-v", "-W", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // mosquitto_sub prints nothing on subscribe: give it a moment, then publish until
        // it has seen its messages (bounded by the rounds and its own -W timeout).
        std::thread::sleep(Duration::from_millis(700));
        for i in 0..3 {
            let st = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-V", v, "-q", qos])
                .args(["-t", &topic, "-m", &format!("m{i}")])
                .status()?;
            assert!(st.success(), "mosquitto_pub {v} qos {qos} failed");
        }
        let (ok, out) = finish(sub, Duration::from_secs(30))?;
        let want: Vec<String> = (0..3).map(|i| format!("{topic} m{i}")).collect();
        let got: Vec<&str> = out.lines().collect();
        assert!(
            ok && got == want,
            "mosquitto_sub {v} qos {qos}: want {want:?}, got {out:?}"
        );
    }
    // A retained message reaches a later subscriber.
    let st = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "e2e/mosq-retained",
            "-r",
            "-q",
            "1",
        ])
        .args(["-m", "kept"])
        .status()?;
    assert!(st.success());
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "e2e/mosq-retained",
            "-C",
            "1",
        ])
        .args(["-W", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (ok, out) = finish(sub, Duration::from_secs(20))?;
    assert!(
        ok && out.trim() == "kept",
        "retained via mosquitto_sub: {out:?}"
    );

    // $SYS statistics arrive every 5 s on $SYS/brokers/#, and never on `#`.
    let all = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "#", "-v", "-W", "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let sys = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-t", "$SYS/brokers/#", "-v"])
        .args(["-C", "7", "-W", "15"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (ok, out) = finish(sys, Duration::from_secs(20))?;
    assert!(ok, "no $SYS statistics within 15 s: {out:?}");
    for t in [
        "version",
        "uptime",
        "clients/connected",
        "messages/received",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("$SYS/brokers/1/{t} "))),
            "$SYS/brokers/1/{t} missing from {out:?}"
        );
    }
    let (_, out) = finish(all, Duration::from_secs(20))?;
    assert!(
        !out.contains("$SYS"),
        "a `#` subscription must not receive $SYS topics: {out:?}"
    );
    sa.stop();
    dir.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_rules_from_meta_deny_publish_and_subscribe_and_passwords_are_checked() -> Result<()> {
    let dir = TestDir::new("mqtt-acl");
    let mut sa = Standalone::start(&dir, &[]).await?;
    let meta = sa.meta.clone();
    ctl(&meta, &["user", "create", "alice", "--password", "s3cret"])?;
    ctl(
        &meta,
        &[
            "acl",
            "add",
            "--principal",
            "alice",
            "--pattern",
            "secret/#",
            "--action",
            "publish",
            "--deny",
        ],
    )?;
    ctl(
        &meta,
        &[
            "acl",
            "add",
            "--principal",
            "*",
            "--pattern",
            "private/#",
            "--action",
            "subscribe",
            "--deny",
        ],
    )?;
    let rules = ctl(&meta, &["acl", "list", "--output", "json"])?;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rules)?
            .as_array()
            .map(Vec::len),
        Some(2),
        "{rules}"
    );
    // Brokers re-read ACL rules every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for version in [3u8, 5] {
        let out = paho_run(
            &[
                "acl",
                "--port",
                &sa.mqtt.to_string(),
                "--version",
                &version.to_string(),
                "--username",
                "alice",
                "--password",
                "s3cret",
            ],
            &format!("acl scenario v{version}"),
        )?;
        print!("{out}");
    }
    sa.stop();
    dir.pass();
    Ok(())
}

/// A v5 CONNECT with keep alive 60 for `client_id`.
fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

/// A v3.1.1 CONNECT with keep alive 60.
fn connect_v311(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

fn open(port: u16, connect: &[u8]) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(connect)?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head)?;
    let mut rest = vec![0u8; head[1] as usize];
    s.read_exact(&mut rest)?;
    if head[0] != 0x20 || rest.get(1) != Some(&0) {
        bail!("CONNECT not accepted: {head:?} {rest:?}");
    }
    Ok(s)
}

/// Reads until the server closes; returns everything it sent.
fn read_to_close(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => bail!("server did not close the connection: {e} (sent {out:?})"),
        }
        if Instant::now() >= deadline {
            bail!("server did not close the connection within 5 s (sent {out:?})");
        }
    }
}

/// The reason code of the DISCONNECT that `bytes` starts with.
fn disconnect_reason(bytes: &[u8]) -> Option<u8> {
    (bytes.first() == Some(&0xE0) && bytes.len() >= 3).then(|| bytes[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_close_only_that_connection_with_the_right_reason() -> Result<()> {
    let dir = TestDir::new("mqtt-malformed");
    let mut sa = Standalone::start(&dir, &["--max-packet-size", "1024"]).await?;
    let port = sa.mqtt;
    // A healthy bystander that must survive everything below.
    let mut bystander = open(port, &connect_v5("bystander"))?;

    // Remaining length with a fifth continuation byte: malformed (0x81).
    let mut s = open(port, &connect_v5("bad-len"))?;
    s.write_all(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])?;
    let got = read_to_close(&mut s)?;
    assert_eq!(
        disconnect_reason(&got),
        Some(0x81),
        "bad remaining length: {got:?}"
    );

    // A topic that is not UTF-8: malformed (0x81).
    let mut s = open(port, &connect_v5("bad-utf8"))?;
    s.write_all(&[0x30, 6, 0, 2, 0xC3, 0x28, 0, b'x'])?;
    let got = read_to_close(&mut s)?;
    assert_eq!(
        disconnect_reason(&got),
        Some(0x81),
        "invalid UTF-8 topic: {got:?}"
    );

    // Larger than --max-packet-size: packet too large (0x95), before the body arrives.
    let mut s = open(port, &connect_v5("too-big"))?;
    s.write_all(&[0x30, 0xD0, 0x0F])?; // declares 2000 bytes
    let got = read_to_close(&mut s)?;
    assert_eq!(
        disconnect_reason(&got),
        Some(0x95),
        "oversized packet: {got:?}"
    );

    // MQTT 3.1.1 has no DISCONNECT from the server: the connection just closes.
    let mut s = open(port, &connect_v311("bad-v3"))?;
    s.write_all(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])?;
    let got = read_to_close(&mut s)?;
    assert!(got.is_empty(), "3.1.1 gets no DISCONNECT: {got:?}");

    // Fuzzed bytes after a valid CONNECT (deterministic xorshift): the broker may close
    // or wait for more bytes, but must keep serving everyone else.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..40 {
        let mut s = open(port, &connect_v5(&format!("fuzz-{round}")))?;
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = s.write_all(&bytes);
    }
    // Garbage instead of CONNECT.
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\n\r\n")?;
    read_to_close(&mut s)?;

    assert!(sa.proc.is_running(), "the broker survived malformed input");
    // The bystander still works: PINGREQ gets PINGRESP.
    bystander.write_all(&[0xC0, 0])?;
    let mut resp = [0u8; 2];
    bystander.read_exact(&mut resp)?;
    assert_eq!(resp, [0xD0, 0], "bystander's PINGRESP");
    // And new clients are still served.
    open(port, &connect_v5("after"))?;
    sa.stop();
    dir.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_deployment_delivers_across_brokers_takes_over_and_resumes_after_a_broker_dies()
-> Result<()> {
    let py = python();
    let dir = TestDir::new("mqtt-split");
    let mut split = Split::start(&dir, 2).await?;
    let (p1, p2) = (split.brokers[0].mqtt, split.brokers[1].mqtt);
    for (version, qos) in [(3u8, 1u8), (5, 2), (5, 0)] {
        let out = paho_run(
            &[
                "cross",
                "--port",
                &p1.to_string(),
                "--port2",
                &p2.to_string(),
                "--version",
                &version.to_string(),
                "--qos",
                &qos.to_string(),
            ],
            &format!("cross-broker delivery v{version} qos{qos}"),
        )?;
        print!("{out}");
    }

    // A share group with members on both brokers: split, exactly once, handed over.
    let out = paho_run(
        &[
            "shared-cross",
            "--port",
            &p1.to_string(),
            "--port2",
            &p2.to_string(),
            "--version",
            "5",
        ],
        "shared subscription across brokers",
    )?;
    print!("{out}");

    // The same client id connecting to broker 2 ends its connection on broker 1 (0x8E).
    let mut on_first = open(p1, &connect_v5("roamer"))?;
    let _on_second = open(p2, &connect_v5("roamer"))?;
    let got = read_to_close(&mut on_first)?;
    assert_eq!(
        disconnect_reason(&got),
        Some(0x8E),
        "takeover across brokers: {got:?}"
    );

    // A persistent session lives on broker 1; broker 1 is SIGKILLed (no chance to save
    // anything at disconnect); the session resumes on broker 2 with what was published
    // meanwhile.
    // A share group with one member on each broker; broker 1 is the one that will die.
    let crash_member = |port: u16| {
        Lines::spawn(&[
            "share-member",
            "--port",
            &port.to_string(),
            "--version",
            "5",
            "--topic",
            "e2e/crash",
            "--delay",
            "90",
        ])
    };
    let mut doomed = crash_member(p1)?;
    let mut survivor = crash_member(p2)?;
    doomed.wait_for(
        "the member on broker 1 to subscribe",
        Duration::from_secs(15),
        |l| l.iter().any(|x| x == "ready"),
    )?;
    survivor.wait_for(
        "the member on broker 2 to subscribe",
        Duration::from_secs(15),
        |l| l.iter().any(|x| x == "ready"),
    )?;
    let mut holder = Command::new(&py)
        .arg(clients_dir().join("paho_check.py"))
        .args(["hold", "--port", &p1.to_string(), "--version", "5"])
        .args(["--client-id", "split-holder"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = holder.stdout.take().context("holder stdout")?;
        std::io::BufReader::new(out).read_line(&mut line)?;
    }
    assert_eq!(line.trim(), "ready", "holder did not subscribe");
    // The session checkpoints its subscriptions to meta within a second. Meanwhile nothing
    // is published: the brokers' shard tailers wait on the shards' high-watermark streams
    // and read nothing (long-polled reads were 2 a second per shard and broker, about 20
    // here; re-asking in a loop once was thousands a second, a core burnt on each side).
    let reads_before = split.journal_metric("journal_read_requests_total")?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let idle_reads = split.journal_metric("journal_read_requests_total")? - reads_before;
    assert!(
        idle_reads < 5.0,
        "{idle_reads} journal reads in 2.5 s of idling: tailers are polling the journal"
    );
    split.brokers[0].proc.kill();
    holder.kill()?;
    holder.wait()?;
    doomed.stop();
    // Published right after the crash, while broker 2 still counts broker 1 (its lease
    // has not lapsed): broker 1's shards of the share group are taken over from broker
    // 1's cursor once the lease lapses, so these all reach the member on broker 2 (checked
    // after the session resume below).
    let out = paho_run(
        &[
            "publish-many",
            "--port",
            &p2.to_string(),
            "--version",
            "5",
            "--topic",
            "e2e/crash",
            "--count",
            "100",
        ],
        "publishing to the share group after broker 1 died",
    )?;
    print!("{out}");
    let out = paho_run(
        &[
            "resume",
            "--port",
            &p2.to_string(),
            "--version",
            "5",
            "--client-id",
            "split-holder",
        ],
        "resume on broker 2 after broker 1 died",
    )?;
    print!("{out}");

    let want: std::collections::BTreeSet<String> = (0..100).map(|i| format!("k-{i}")).collect();
    survivor.wait_for(
        "every message published after the crash at the member on broker 2",
        Duration::from_secs(45),
        |lines| want.iter().all(|w| lines.contains(w)),
    )?;
    println!(
        "share group after broker 1 died: all 100 messages reached the member on broker 2 ({} lines)",
        survivor.lines().len()
    );
    survivor.stop();
    split.stop();
    dir.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_websocket_and_wss_listeners_serve_mosquitto_and_paho() -> Result<()> {
    require("openssl");
    require("mosquitto_pub");
    let dir = TestDir::new("mqtt-tls");
    let (cert, key) = e2e::harness::self_signed_cert(dir.path())?;
    let tls_port = free_port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let wss_port = free_port();
    let wss_addr = format!("127.0.0.1:{wss_port}");
    let mut sa = Standalone::start(
        &dir,
        &[
            "--mqtt-wss-addr",
            &wss_addr,
            "--mqtt-tls-addr",
            &tls_addr,
            "--tls-cert",
            &cert_s,
            "--tls-key",
            &key_s,
        ],
    )
    .await?;
    let port = tls_port.to_string();

    // A client that does not speak TLS is dropped without harming anyone.
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port))?;
    plain.set_read_timeout(Some(Duration::from_secs(5)))?;
    plain.write_all(&connect_v5("plain"))?;
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] != 0x20,
        "plain MQTT on the TLS port must not get a CONNACK"
    );

    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "--cafile", &cert_s])
        .args(["-t", "e2e/tls/#", "-v", "-C", "2", "-W", "15", "-q", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(700));
    for i in 0..2 {
        let st = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "--cafile", &cert_s])
            .args(["-t", "e2e/tls/x", "-q", "1", "-m", &format!("secure-{i}")])
            .status()?;
        assert!(st.success(), "mosquitto_pub over TLS failed");
    }
    let (ok, out) = finish(sub, Duration::from_secs(20))?;
    assert!(
        ok && out.lines().collect::<Vec<_>>() == ["e2e/tls/x secure-0", "e2e/tls/x secure-1"],
        "mosquitto over TLS: {out:?}"
    );

    // WebSocket (subprotocol mqtt) and WebSocket over TLS, with paho.
    let ws = sa.ws.to_string();
    let wss = wss_port.to_string();
    for (p, tls) in [(ws.as_str(), false), (wss.as_str(), true)] {
        for version in ["3", "5"] {
            let mut args = vec![
                "pubsub",
                "--port",
                p,
                "--version",
                version,
                "--qos",
                "2",
                "--ws",
            ];
            if tls {
                args.extend(["--cafile", cert_s.as_str()]);
            }
            let out = paho_run(
                &args,
                &format!("paho over WebSocket (tls={tls}) v{version}"),
            )?;
            print!("{out}");
        }
    }

    for version in ["3", "5"] {
        let out = paho_run(
            &[
                "pubsub",
                "--port",
                &port,
                "--version",
                version,
                "--qos",
                "1",
                "--cafile",
                &cert_s,
            ],
            &format!("paho over TLS v{version}"),
        )?;
        print!("{out}");
    }
    sa.stop();
    dir.pass();
    Ok(())
}

/// A v5 CONNECT with the given keep alive.
fn connect_v5_keep_alive(client_id: &str, keep_alive: u16) -> Vec<u8> {
    let mut p = connect_v5(client_id);
    p[10..12].copy_from_slice(&keep_alive.to_be_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_is_enforced_at_one_and_a_half_times_and_a_second_connection_takes_over()
-> Result<()> {
    let dir = TestDir::new("mqtt-keepalive");
    let mut sa = Standalone::start(&dir, &[]).await?;
    let port = sa.mqtt;

    // Keep alive 2 s, then silence: DISCONNECT 0x8D after 3 s (1.5x), not before.
    let mut s = open(port, &connect_v5_keep_alive("sleepy", 2))?;
    let started = Instant::now();
    let got = read_to_close(&mut s)?;
    let waited = started.elapsed();
    assert_eq!(disconnect_reason(&got), Some(0x8D), "keep alive: {got:?}");
    assert!(
        waited >= Duration::from_millis(2800) && waited < Duration::from_secs(5),
        "closed after {waited:?}, want about 3 s"
    );

    // PINGREQ keeps a connection alive past 1.5x.
    let mut s = open(port, &connect_v5_keep_alive("pinger", 1))?;
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        s.write_all(&[0xC0, 0])?;
        let mut resp = [0u8; 2];
        s.read_exact(&mut resp)?;
        assert_eq!(resp, [0xD0, 0], "PINGRESP while pinging");
    }
    drop(s);

    // The same client id connecting again ends the first connection with 0x8E.
    let mut first = open(port, &connect_v5("twin"))?;
    let _second = open(port, &connect_v5("twin"))?;
    let got = read_to_close(&mut first)?;
    assert_eq!(disconnect_reason(&got), Some(0x8E), "takeover: {got:?}");
    sa.stop();
    dir.pass();
    Ok(())
}

/// A background paho_check.py process whose stdout lines are collected as they come.
struct Lines {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lines {
    fn spawn(args: &[&str]) -> Result<Lines> {
        let mut child = Command::new(python())
            .arg(clients_dir().join("paho_check.py"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting paho_check.py {args:?}"))?;
        let out = child.stdout.take().context("stdout")?;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push(l);
            }
        });
        Ok(Lines { child, lines })
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Polls the lines so far until `done` holds, for at most `timeout`.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(&self.lines()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "timed out after {timeout:?} waiting for {what}: {:?}",
            self.lines()
        )
    }

    /// Kills the process (by its pid) and reaps it.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes one packet (MQTT 5) with the broker's own codec.
fn send_v5(s: &mut TcpStream, p: &mqtt_codec::Packet) -> Result<()> {
    let mut buf = bytes::BytesMut::new();
    p.encode(mqtt_codec::ProtocolVersion::V5, &mut buf)?;
    s.write_all(&buf)?;
    Ok(())
}

/// Reads the next packet (MQTT 5), waiting up to the socket's read timeout.
fn recv_v5(s: &mut TcpStream, buf: &mut bytes::BytesMut) -> Result<mqtt_codec::Packet> {
    loop {
        if let Some(p) = mqtt_codec::decode(buf, mqtt_codec::ProtocolVersion::V5, 1 << 20)? {
            return Ok(p);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).context("waiting for a packet")?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A v5 client that announces Topic Alias Maximum 2 receives each topic in full once,
/// with an alias, then the alias alone; when both aliases are taken, a new topic takes a
/// slot over. Resolving the aliases as the client must gives back every topic that
/// mosquitto_pub published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_topic_aliases_are_used_up_to_the_clients_maximum() -> Result<()> {
    use mqtt_codec::{
        Connect, Packet, Properties, ProtocolVersion, QoS, Subscribe, SubscriptionOptions,
        TopicSubscription,
    };
    require("mosquitto_pub");
    let dir = TestDir::new("mqtt-alias");
    let mut sa = Standalone::start(&dir, &[]).await?;
    let mut s = TcpStream::connect(("127.0.0.1", sa.mqtt))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = bytes::BytesMut::new();
    send_v5(
        &mut s,
        &Packet::Connect(Box::new(Connect {
            protocol_version: ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 60,
            properties: Properties {
                topic_alias_maximum: Some(2),
                ..Default::default()
            },
            client_id: "aliased".into(),
            will: None,
            username: None,
            password: None,
        })),
    )?;
    let ack = recv_v5(&mut s, &mut buf)?;
    anyhow::ensure!(
        matches!(ack, Packet::ConnAck(_)),
        "CONNACK expected: {ack:?}"
    );
    send_v5(
        &mut s,
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![TopicSubscription {
                filter: "alias/#".into(),
                options: SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    ..Default::default()
                },
            }],
        }),
    )?;
    let ack = recv_v5(&mut s, &mut buf)?;
    anyhow::ensure!(matches!(ack, Packet::SubAck(_)), "SUBACK expected: {ack:?}");

    let topics = ["a", "a", "b", "b", "c", "a", "c"].map(|t| format!("alias/{t}"));
    for (i, t) in topics.iter().enumerate() {
        let st = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &sa.mqtt.to_string(), "-V", "5"])
            .args(["-t", t, "-m", &format!("m{i}")])
            .status()?;
        anyhow::ensure!(st.success(), "mosquitto_pub {t}");
    }
    let mut client_aliases: std::collections::HashMap<u16, String> = Default::default();
    let mut wire = Vec::new();
    for want in &topics {
        let Packet::Publish(p) = recv_v5(&mut s, &mut buf)? else {
            bail!("PUBLISH expected");
        };
        let alias = p.properties.topic_alias;
        wire.push((p.topic.clone(), alias));
        let topic = match alias {
            Some(a) => {
                anyhow::ensure!((1..=2).contains(&a), "alias {a} above the maximum 2");
                if !p.topic.is_empty() {
                    client_aliases.insert(a, p.topic.clone());
                }
                client_aliases
                    .get(&a)
                    .cloned()
                    .with_context(|| format!("alias {a} used before it was set: {wire:?}"))?
            }
            None => p.topic.clone(),
        };
        anyhow::ensure!(&topic == want, "got {topic}, want {want}: {wire:?}");
    }
    let alias_only = wire.iter().filter(|(t, _)| t.is_empty()).count();
    let s_ = |t: &str| t.to_string();
    anyhow::ensure!(
        wire == [
            (s_("alias/a"), Some(1)),
            (s_(""), Some(1)),
            (s_("alias/b"), Some(2)),
            (s_(""), Some(2)),
            (s_("alias/c"), Some(1)),
            (s_("alias/a"), Some(2)),
            (s_(""), Some(1)),
        ],
        "{alias_only} alias-only PUBLISHes: {wire:?}"
    );
    sa.stop();
    dir.pass();
    Ok(())
}

/// A mosquitto client whose output lines arrive on a channel as they are printed.
struct LineClient {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LineClient {
    fn spawn(program: &str, args: &[&str]) -> Result<LineClient> {
        // Line-buffered: mosquitto's debug lines are otherwise held back in a pipe.
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(program)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let out = child.stdout.take().context("client stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(LineClient { child, lines })
    }

    /// The next line containing `needle`, or an error after `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_until(|l| l.contains(needle), needle, timeout)
    }

    /// The next line starting with `prefix` (`-v` prints messages as "topic payload").
    fn message(&self, prefix: &str, timeout: Duration) -> Result<String> {
        self.wait_until(|l| l.starts_with(prefix), prefix, timeout)
    }

    fn wait_until(
        &self,
        want: impl Fn(&str) -> bool,
        what: &str,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if want(&l) => return Ok(l),
                Ok(_) => {}
                Err(_) => bail!("no line with {what:?} within {timeout:?}"),
            }
        }
    }

    /// Every line printed within `window`.
    fn collect(&self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(l) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            got.push(l);
        }
        got
    }
}

impl Drop for LineClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mosquitto_sub (MQTT 5, QoS 1) on `port` printing every message under `wills/#`,
/// returned once subscribed.
fn will_watcher(port: &str, client_id: &str) -> Result<LineClient> {
    #[rustfmt::skip]
    let watcher = LineClient::spawn("mosquitto_sub", &[
        "-h", "127.0.0.1", "-p", port, "-i", client_id, "-V", "mqttv5",
        "-q", "1", "-t", "wills/#", "-v", "-d",
    ])?;
    watcher.wait_for("received SUBACK", Duration::from_secs(10))?;
    Ok(watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wills_of_clients_whose_broker_was_killed_are_published_once_by_another_broker()
-> Result<()> {
    require("mosquitto_sub");
    require("stdbuf");
    let dir = TestDir::new("mqtt-orphan-wills");
    let mut split = Split::start(&dir, 2).await?;
    let (p1, p2) = (
        split.brokers[0].mqtt.to_string(),
        split.brokers[1].mqtt.to_string(),
    );
    let subscribed = Duration::from_secs(10);

    let watcher = will_watcher(&p2, "will-watcher")?;
    // Two clients with QoS 1 wills on broker 1: MQTT 3.1.1 without a session, and MQTT 5
    // with a 60 s session and a will delay of 2 s.
    #[rustfmt::skip]
    let v311 = LineClient::spawn("mosquitto_sub", &[
        "-h", "127.0.0.1", "-p", &p1, "-i", "will-v311", "-V", "mqttv311",
        "-q", "1", "-t", "idle/v311", "-d",
        "--will-topic", "wills/v311", "--will-payload", "gone-v311", "--will-qos", "1",
    ])?;
    v311.wait_for("received SUBACK", subscribed)?;
    #[rustfmt::skip]
    let v5 = LineClient::spawn("mosquitto_sub", &[
        "-h", "127.0.0.1", "-p", &p1, "-i", "will-v5", "-V", "mqttv5", "-c", "-x", "60",
        "-q", "1", "-t", "idle/v5", "-d",
        "--will-topic", "wills/v5", "--will-payload", "gone-v5", "--will-qos", "1",
        "-D", "will", "will-delay-interval", "2",
    ])?;
    v5.wait_for("received SUBACK", subscribed)?;

    // SIGKILL: broker 1 writes nothing more. Its lease (10 s) lapses, broker 2's sweeper
    // (1 s) takes both sessions and publishes both wills, the MQTT 5 one 2 s later.
    split.brokers[0].proc.kill();
    let killed = Instant::now();
    let bound = Duration::from_secs(25);
    let first = watcher.message("wills/", bound)?;
    let second = watcher.message("wills/", bound.saturating_sub(killed.elapsed()))?;
    let took = killed.elapsed();
    // Nothing more: each will is published once.
    let late: Vec<String> = watcher
        .collect(Duration::from_secs(3))
        .into_iter()
        .filter(|l| l.starts_with("wills/"))
        .collect();
    let mut wills = vec![first, second];
    wills.sort();
    assert_eq!(
        wills,
        ["wills/v311 gone-v311", "wills/v5 gone-v5"],
        "wills after broker 1 died"
    );
    assert!(late.is_empty(), "wills published again: {late:?}");
    println!("both wills arrived {took:?} after broker 1 was killed");

    // The persistent session is disconnected now: its expiry clock runs.
    let mut meta = e2e::meta::client(&split.meta_addr).await?;
    let s = meta
        .get_session(robustmq_proto::meta::NameRequest {
            name: "will-v5".into(),
        })
        .await?
        .into_inner();
    assert_eq!(s.owner_broker, 0, "{s:?}");
    assert_ne!(s.disconnected_at_ms, 0, "{s:?}");
    assert!(s.will.is_empty(), "{s:?}");
    drop((v311, v5, watcher));
    split.stop();
    dir.pass();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_will_outlives_the_broker_holding_it_and_a_reconnect_cancels_it() -> Result<()> {
    require("mosquitto_sub");
    require("stdbuf");
    let dir = TestDir::new("mqtt-pending-wills");
    let mut split = Split::start(&dir, 2).await?;
    let (p1, p2) = (
        split.brokers[0].mqtt.to_string(),
        split.brokers[1].mqtt.to_string(),
    );
    let subscribed = Duration::from_secs(10);
    let watcher = will_watcher(&p2, "pending-watcher")?;
    // Two MQTT 5 clients on broker 1, each with a 60 s session and a will delayed 15 s.
    let delayed = |id: &str| -> Result<LineClient> {
        #[rustfmt::skip]
        let c = LineClient::spawn("mosquitto_sub", &[
            "-h", "127.0.0.1", "-p", &p1, "-i", id, "-V", "mqttv5", "-c", "-x", "60",
            "-q", "1", "-t", "idle/pending", "-d",
            "--will-topic", &format!("wills/{id}"), "--will-payload", "gone", "--will-qos", "1",
            "-D", "will", "will-delay-interval", "15",
        ])?;
        c.wait_for("received SUBACK", subscribed)?;
        Ok(c)
    };
    // First a takeover across brokers, no broker dying: a second connection with the
    // same client id on broker 2 ends the first with 0x8E. A will without delay goes
    // out at once; a delayed one not at all, as the client is back.
    let mut quick = open(
        split.brokers[0].mqtt,
        &connect_v5_with_will("taken-quick", "wills/taken-quick", "gone", 0, 0),
    )?;
    let mut slow = open(
        split.brokers[0].mqtt,
        &connect_v5_with_will("taken-slow", "wills/taken-slow", "gone", 60, 15),
    )?;
    let quick2 = open(split.brokers[1].mqtt, &connect_v5("taken-quick"))?;
    let slow2 = open(split.brokers[1].mqtt, &connect_v5("taken-slow"))?;
    for old in [&mut quick, &mut slow] {
        let sent = read_to_close(old)?;
        assert!(
            sent.starts_with(&[0xE0]) && sent.get(2) == Some(&0x8E),
            "want DISCONNECT 0x8E, got {sent:?}"
        );
    }
    let taken = watcher.message("wills/", Duration::from_secs(10))?;
    assert_eq!(taken, "wills/taken-quick gone");
    drop((quick, slow, quick2, slow2));

    let (gone, back) = (delayed("pending-gone")?, delayed("pending-back")?);
    // And one whose will has no delay, connected when broker 1 dies.
    let quick = open(
        split.brokers[0].mqtt,
        &connect_v5_with_will("pending-quick", "wills/pending-quick", "gone", 60, 0),
    )?;

    // Both connections end without DISCONNECT (the clients are killed): broker 1 keeps
    // each will pending in meta, held by itself, due in 15 s.
    drop((gone, back));
    let ended = Instant::now();
    let mut meta = e2e::meta::client(&split.meta_addr).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut held = 0;
        for id in ["pending-gone", "pending-back"] {
            let s = meta
                .get_session(robustmq_proto::meta::NameRequest { name: id.into() })
                .await?
                .into_inner();
            if s.owner_broker == 0 && s.will_holder != 0 && !s.will.is_empty() {
                held += 1;
            }
        }
        if held == 2 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the wills never showed as pending in meta");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The holder dies during the delay. One client comes back, on broker 2, to its
    // session: its will must not go out. Broker 2 takes the other will over once broker
    // 1's lease (10 s) lapses, and publishes it when due.
    split.brokers[0].proc.kill();
    #[rustfmt::skip]
    let back = LineClient::spawn("mosquitto_sub", &[
        "-h", "127.0.0.1", "-p", &p2, "-i", "pending-back", "-V", "mqttv5", "-c", "-x", "60",
        "-q", "1", "-t", "idle/pending", "-d",
    ])?;
    back.wait_for("received CONNACK", subscribed)?;
    // The client without a will delay reconnects at once, before anyone sees broker 1
    // dead: its lost connection's will still goes out, once broker 1's lease lapses.
    drop(quick);
    let quick = open(split.brokers[1].mqtt, &connect_v5("pending-quick"))?;
    let mut after = Duration::ZERO;
    let mut wills = Vec::new();
    for _ in 0..2 {
        let w = watcher.message("wills/", Duration::from_secs(40))?;
        if w.starts_with("wills/pending-gone") {
            after = ended.elapsed();
        }
        wills.push(w);
    }
    wills.sort();
    assert_eq!(
        wills,
        ["wills/pending-gone gone", "wills/pending-quick gone"]
    );
    // The delay counts from the end of the connection, as broker 1 recorded it.
    assert!(
        after >= Duration::from_secs(14),
        "the will went out {after:?} after the connection ended, before its 15 s delay"
    );
    let late: Vec<String> = watcher
        .collect(Duration::from_secs(3))
        .into_iter()
        .filter(|l| l.starts_with("wills/"))
        .collect();
    assert!(
        late.is_empty(),
        "wills published again or after a reconnect: {late:?}"
    );
    println!("the pending will arrived {after:?} after its connection ended");
    let s = meta
        .get_session(robustmq_proto::meta::NameRequest {
            name: "pending-gone".into(),
        })
        .await?
        .into_inner();
    assert_eq!((s.owner_broker, s.will_holder), (0, 0), "{s:?}");
    assert!(s.will.is_empty(), "{s:?}");
    drop((back, quick, watcher));
    split.stop();
    dir.pass();
    Ok(())
}

/// Sends SIGSTOP or SIGCONT to one process by its pid.
fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    if !ok {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_paused_past_its_lease_loses_its_sessions_and_ends_them_with_0x8e() -> Result<()> {
    require("mosquitto_sub");
    require("mosquitto_pub");
    require("stdbuf");
    let dir = TestDir::new("mqtt-paused-owner");
    let mut split = Split::start(&dir, 2).await?;
    let (p1, p2) = (
        split.brokers[0].mqtt.to_string(),
        split.brokers[1].mqtt.to_string(),
    );
    let subscribed = Duration::from_secs(10);
    let watcher = will_watcher(&p2, "pause-watcher")?;
    // A persistent session on broker 1 (so it checkpoints), with a will.
    #[rustfmt::skip]
    let holder = LineClient::spawn("mosquitto_sub", &[
        "-h", "127.0.0.1", "-p", &p1, "-i", "paused-holder", "-V", "mqttv5", "-c", "-x", "60",
        "-q", "1", "-t", "paused/t", "-d",
        "--will-topic", "wills/paused", "--will-payload", "gone", "--will-qos", "1",
    ])?;
    holder.wait_for("received SUBACK", subscribed)?;
    // And one with session expiry 0, which never checkpoints.
    #[rustfmt::skip]
    let clean = LineClient::spawn("mosquitto_sub", &[
        "-h", "127.0.0.1", "-p", &p1, "-i", "paused-clean", "-V", "mqttv5",
        "-q", "1", "-t", "paused/t", "-d",
        "--will-topic", "wills/paused-clean", "--will-payload", "gone", "--will-qos", "1",
    ])?;
    clean.wait_for("received SUBACK", subscribed)?;

    // Broker 1 stops for longer than its lease: meta expires it and broker 2 takes the
    // sessions (and publishes the wills), although the connections are still open.
    let pid = split.brokers[0].proc.pid().context("broker 1 pid")?;
    signal(pid, "-STOP")?;
    let bound = Duration::from_secs(25);
    let first = watcher.message("wills/", bound);
    let second = watcher.message("wills/", Duration::from_secs(5));
    signal(pid, "-CONT")?;
    let mut wills = vec![first?, second?];
    wills.sort();
    assert_eq!(wills, ["wills/paused gone", "wills/paused-clean gone"]);

    // Back, broker 1 sees through its session watch that both sessions were taken from
    // it and ends both connections with 0x8E, without publishing the wills again. The
    // persistent one would also learn it from its next checkpoint, which meta refuses:
    // a delivery makes one due.
    let published = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &p2, "-q", "1", "-t", "paused/t"])
        .args(["-m", "after-resume"])
        .status()?;
    assert!(published.success(), "mosquitto_pub failed");
    for c in [&holder, &clean] {
        let kicked = c.wait_for("DISCONNECT", Duration::from_secs(15))?;
        assert!(kicked.contains("142"), "want reason 0x8E (142): {kicked}");
    }
    let again: Vec<String> = watcher
        .collect(Duration::from_secs(3))
        .into_iter()
        .filter(|l| l.starts_with("wills/"))
        .collect();
    assert!(again.is_empty(), "will published again: {again:?}");
    drop((holder, clean, watcher));
    split.stop();
    dir.pass();
    Ok(())
}

/// A v5 CONNECT with clean start, keep alive 60, a session expiry of `expiry` seconds and a
/// QoS 1 will delayed `delay` seconds.
fn connect_v5_with_will(
    client_id: &str,
    topic: &str,
    payload: &str,
    expiry: u32,
    delay: u32,
) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    // Flags: clean start (0x02), will (0x04), will QoS 1 (0x08).
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x0E, 0, 60];
    if expiry > 0 {
        body.extend([5, 0x11]);
        body.extend(expiry.to_be_bytes());
    } else {
        body.push(0);
    }
    string(&mut body, client_id);
    if delay > 0 {
        body.extend([5, 0x18]);
        body.extend(delay.to_be_bytes());
    } else {
        body.push(0);
    }
    string(&mut body, topic);
    string(&mut body, payload);
    assert!(body.len() < 128, "one-byte remaining length");
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_under_its_id_publishes_the_wills_its_earlier_run_left() -> Result<()> {
    require("mosquitto_sub");
    require("stdbuf");
    let dir = TestDir::new("mqtt-restarted-owner");
    let mut split = Split::start(&dir, 2).await?;
    let p2 = split.brokers[1].mqtt.to_string();
    let watcher = will_watcher(&p2, "restart-watcher")?;
    let client = open(
        split.brokers[0].mqtt,
        &connect_v5_with_will("restart-holder", "wills/restart", "gone", 0, 0),
    )?;

    // SIGKILL and start again at once: broker 1 registers again well within its lease
    // (10 s), so no broker ever sees it dead; its new run takes what the old one left.
    let b1 = &mut split.brokers[0];
    b1.proc.kill();
    b1.proc.start()?;
    e2e::robustmq::wait_ready("broker 1 /readyz", &b1.admin).await?;
    let will = watcher.message("wills/", Duration::from_secs(8))?;
    assert_eq!(will, "wills/restart gone");
    let again: Vec<String> = watcher
        .collect(Duration::from_secs(3))
        .into_iter()
        .filter(|l| l.starts_with("wills/"))
        .collect();
    assert!(again.is_empty(), "will published again: {again:?}");
    drop((client, watcher));
    split.stop();
    dir.pass();
    Ok(())
}

/// A raw MQTT 5 client subscribed to `filter` at QoS 1.
fn subscriber_v5(port: u16, client_id: &str, filter: &str) -> Result<TcpStream> {
    subscribe_v5(open(port, &connect_v5(client_id))?, filter)
}

/// A v5 CONNECT with clean start off and a session expiry of 300 s: a persistent session.
fn connect_v5_persistent(client_id: &str) -> Vec<u8> {
    let mut body = vec![
        0, 4, b'M', b'Q', b'T', b'T', 5, 0x00, 0, 60, 5, 0x11, 0, 0, 0x01, 0x2C,
    ];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

/// Subscribes the connected `s` to `filter` at QoS 1.
fn subscribe_v5(mut s: TcpStream, filter: &str) -> Result<TcpStream> {
    use mqtt_codec::{Packet, QoS, Subscribe, SubscriptionOptions, TopicSubscription};
    send_v5(
        &mut s,
        &Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![TopicSubscription {
                filter: filter.into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            }],
        }),
    )?;
    let ack = recv_v5(&mut s, &mut bytes::BytesMut::new())?;
    anyhow::ensure!(matches!(ack, Packet::SubAck(_)), "SUBACK expected: {ack:?}");
    Ok(s)
}

/// Reads PUBLISHes on `s` (acknowledging QoS 1 ones) until `stop` is set, adding the
/// message number each payload starts with to `got`.
fn collect_numbers(
    mut s: TcpStream,
    got: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    use mqtt_codec::{Packet, PubAck, QoS};
    use std::sync::atomic::Ordering;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = bytes::BytesMut::new();
    while !stop.load(Ordering::Relaxed) {
        let p = match recv_v5(&mut s, &mut buf) {
            Ok(p) => p,
            Err(e)
                if e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Packet::Publish(p) = p {
            let n = std::str::from_utf8(&p.payload[..8])?.parse()?;
            got.lock().unwrap().push(n);
            if p.qos == QoS::AtLeastOnce {
                send_v5(&mut s, &Packet::PubAck(PubAck::new(p.packet_id)))?;
            }
        }
    }
    Ok(())
}

/// Publishes `n` QoS 1 messages numbered `0..n` (the first 8 bytes of each payload,
/// padded to `payload` bytes) to `{prefix}/{i % 4}`, in rounds of 32 (within the broker's
/// Receive Maximum of 64), each round acknowledged before the next.
fn publish_numbers(port: u16, prefix: &str, n: u32, payload: usize) -> Result<()> {
    publish_numbers_from(port, prefix, 0, n, payload)
}

/// Like [`publish_numbers`], numbered `first..first + n`.
fn publish_numbers_from(port: u16, prefix: &str, first: u32, n: u32, payload: usize) -> Result<()> {
    use mqtt_codec::{Packet, Publish, QoS};
    let mut publisher = open(port, &connect_v5("publisher"))?;
    publisher.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = bytes::BytesMut::new();
    for round in (first..first + n).collect::<Vec<_>>().chunks(32) {
        let mut wire = bytes::BytesMut::new();
        for &i in round {
            let mut body = format!("{i:08}").into_bytes();
            body.resize(payload, b'x');
            let mut p = Publish::new(format!("{prefix}/{}", i % 4), body);
            p.qos = QoS::AtLeastOnce;
            p.packet_id = (i % 60_000 + 1) as u16;
            Packet::Publish(p).encode(mqtt_codec::ProtocolVersion::V5, &mut wire)?;
        }
        publisher.write_all(&wire)?;
        for _ in round {
            let ack = recv_v5(&mut publisher, &mut buf)?;
            anyhow::ensure!(matches!(ack, Packet::PubAck(_)), "PUBACK expected: {ack:?}");
        }
    }
    Ok(())
}

/// One member of a share group stops reading its socket (its session blocks writing to
/// it, and its queue of `--max-queued 16` fills up) while 200 QoS 1 messages are
/// published to the group: the messages that do not fit its queue go to the other member
/// (or are re-read from storage), and once the stalled member reads again the group as a
/// whole has received every message. Before shared deliveries fell back to another
/// member, about a quarter of them were dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_member_that_stops_reading_costs_the_group_no_qos1_message() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const N: u32 = 200;
    // 64 unacknowledged 128 KB messages (the inflight window) are more than the socket
    // buffers of a reader that stopped reading hold (about 4 MB here), so the stalled
    // member's session blocks writing and its queue fills.
    const PAYLOAD: usize = 128 * 1024;
    let dir = TestDir::new("mqtt-share-full");
    let mut sa = Standalone::start(&dir, &["--max-queued", "16"]).await?;
    let filter = "$share/g/full/#";
    let stalled = subscriber_v5(sa.mqtt, "stalled", filter)?;
    let reader = subscriber_v5(sa.mqtt, "reader", filter)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (by_reader, by_stalled) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let reading = {
        let (got, stop) = (by_reader.clone(), stop.clone());
        std::thread::spawn(move || collect_numbers(reader, got, stop))
    };

    publish_numbers(sa.mqtt, "full", N, PAYLOAD)?;

    // The stalled member reads (and acknowledges) again; wait for the group to have all.
    let resumed = {
        let (got, stop) = (by_stalled.clone(), stop.clone());
        std::thread::spawn(move || collect_numbers(stalled, got, stop))
    };
    let distinct = || -> std::collections::BTreeSet<u32> {
        let mut all: std::collections::BTreeSet<u32> =
            by_reader.lock().unwrap().iter().copied().collect();
        all.extend(by_stalled.lock().unwrap().iter().copied());
        all
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while distinct().len() < N as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    reading.join().unwrap()?;
    resumed.join().unwrap()?;
    let all = distinct();
    let (r, s) = (
        by_reader.lock().unwrap().len(),
        by_stalled.lock().unwrap().len(),
    );
    println!(
        "reader got {r}, stalled member got {s}, {} distinct of {N}",
        all.len()
    );
    let missing: Vec<u32> = (0..N).filter(|i| !all.contains(i)).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {N} messages never reached the group (reader {r}, stalled member {s}): {missing:?}",
        missing.len()
    );
    anyhow::ensure!(
        s > 0,
        "the stalled member received nothing before it stalled"
    );
    sa.stop();
    dir.pass();
    Ok(())
}

/// A member of a share group stops reading its socket while 200 QoS 1 messages are
/// published to the group (its session fills its inflight window and its queue), then
/// its connection ends (clean start, no session expiry: the session ends with it). It
/// acknowledged none of the messages it was handed, so the other member must receive all
/// 200 (MQTT 5.0 4.8.2: a message whose delivery to a member's ended session was not
/// completed goes to another member). Before a leaving member's unfinished shared
/// deliveries went back to the group, every message it held was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_member_that_leaves_hands_what_it_did_not_acknowledge_to_the_group()
-> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const N: u32 = 200;
    // As above: more unacknowledged bytes than the socket buffers of a reader that
    // stopped reading hold, so the leaving member's session holds messages in its
    // inflight window, its outbound queue and its dispatcher queue.
    const PAYLOAD: usize = 128 * 1024;
    let dir = TestDir::new("mqtt-share-leave");
    let mut sa = Standalone::start(&dir, &["--max-queued", "16"]).await?;
    let filter = "$share/g/leave/#";
    let leaving = subscriber_v5(sa.mqtt, "leaving", filter)?;
    let reader = subscriber_v5(sa.mqtt, "reader", filter)?;
    let stop = Arc::new(AtomicBool::new(false));
    let by_reader = Arc::new(Mutex::new(Vec::new()));
    let reading = {
        let (got, stop) = (by_reader.clone(), stop.clone());
        std::thread::spawn(move || collect_numbers(reader, got, stop))
    };
    publish_numbers(sa.mqtt, "leave", N, PAYLOAD)?;
    let before = by_reader.lock().unwrap().len();

    // Unread data in its receive buffer: closing sends a reset, so the broker's blocked
    // write fails at once.
    drop(leaving);
    let distinct = || -> std::collections::BTreeSet<u32> {
        by_reader.lock().unwrap().iter().copied().collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while distinct().len() < N as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    reading.join().unwrap()?;
    let all = distinct();
    let r = by_reader.lock().unwrap().len();
    println!(
        "reader got {before} before the other member left, {r} in all, {} distinct of {N}",
        all.len()
    );
    anyhow::ensure!(
        before < N as usize,
        "the leaving member held nothing (the reader had all {N} before it left)"
    );
    let missing: Vec<u32> = (0..N).filter(|i| !all.contains(i)).collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {N} messages the leaving member never acknowledged did not reach the rest of the group: {missing:?}",
        missing.len()
    );
    sa.stop();
    dir.pass();
    Ok(())
}

/// A share group has one member on each of two brokers. The member on broker 1 receives
/// its share of 200 QoS 1 messages and acknowledges none; broker 1 checkpoints the group's
/// cursor and is then SIGKILLed. Broker 2 takes broker 1's shard over from that cursor, so
/// the member on broker 2 must end up with all 200: the cursor may not pass a record a
/// member has not acknowledged. Before the cursor stopped at unacknowledged records, every
/// message the member on the dead broker held was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_gets_again_what_a_dead_brokers_member_had_not_acknowledged() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const N: u32 = 200;
    let dir = TestDir::new("mqtt-share-dead");
    let mut split = Split::start(&dir, 2).await?;
    let (p1, p2) = (split.brokers[0].mqtt, split.brokers[1].mqtt);
    // `dead/0` .. `dead/3` land on both shards of the default binding.
    let filter = "$share/g/dead/#";
    let mut holder = subscriber_v5(p1, "holder", filter)?;
    let reader = subscriber_v5(p2, "reader", filter)?;
    let stop = Arc::new(AtomicBool::new(false));
    let by_reader = Arc::new(Mutex::new(Vec::new()));
    let reading = {
        let (got, stop) = (by_reader.clone(), stop.clone());
        std::thread::spawn(move || collect_numbers(reader, got, stop))
    };
    // Each broker learns of the other's member through meta, then owns one shard.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish_numbers(p2, "dead", N, 64)?;

    // The holder reads what broker 1 sends it and acknowledges nothing.
    let held = publishes_without_ack(&mut holder, Duration::from_secs(2))?;
    let before = by_reader.lock().unwrap().len();
    println!("the member on broker 1 holds {held} unacknowledged, the reader has {before}");
    anyhow::ensure!(
        held > 0 && before < N as usize,
        "broker 1 owned no shard of the group (holder {held}, reader {before})"
    );
    // Broker 1 writes the group's cursor about once a second while records flow.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    split.brokers[0].proc.kill();
    drop(holder);

    // Broker 2 takes broker 1's shard over once broker 1's lease lapses (about 10 s).
    let distinct = || -> std::collections::BTreeSet<u32> {
        by_reader.lock().unwrap().iter().copied().collect()
    };
    let deadline = Instant::now() + Duration::from_secs(45);
    while distinct().len() < N as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    reading.join().unwrap()?;
    let all = distinct();
    let missing: Vec<u32> = (0..N).filter(|i| !all.contains(i)).collect();
    println!(
        "the reader got {} deliveries, {} distinct of {N}",
        by_reader.lock().unwrap().len(),
        all.len()
    );
    anyhow::ensure!(
        missing.is_empty(),
        "{} of {N} messages the member on the dead broker never acknowledged were lost: {missing:?}",
        missing.len()
    );
    split.stop();
    dir.pass();
    Ok(())
}

/// Reads PUBLISHes on `s` without acknowledging them until none came for `quiet`;
/// returns how many arrived.
fn publishes_without_ack(s: &mut TcpStream, quiet: Duration) -> Result<usize> {
    s.set_read_timeout(Some(quiet))?;
    let mut buf = bytes::BytesMut::new();
    let mut n = 0;
    loop {
        match recv_v5(s, &mut buf) {
            Ok(mqtt_codec::Packet::Publish(_)) => n += 1,
            Ok(_) => {}
            Err(e)
                if e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }) =>
            {
                return Ok(n);
            }
            Err(e) => return Err(e),
        }
    }
}

/// 40 persistent sessions on one broker receive QoS 1 messages for 4 s, so each has
/// something to checkpoint every second. Their checkpoints share a one-second beat and
/// reach meta as batched `UpdateSessions` calls: a few calls per second in all, not one
/// call per session per second (about 160 here: 198 calls with the beat switched off, 28
/// with it). The other tests resume persistent sessions from these checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_persistent_sessions_checkpoint_to_meta_in_batched_calls() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    const SESSIONS: usize = 40;
    const SECONDS: u64 = 4;
    let dir = TestDir::new("mqtt-checkpoints");
    let mut split = Split::start(&dir, 1).await?;
    let port = split.brokers[0].mqtt;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut counts = Vec::new();
    for i in 0..SESSIONS {
        let s = subscribe_v5(
            open(port, &connect_v5_persistent(&format!("cp-{i}")))?,
            "busy/#",
        )?;
        let got = Arc::new(Mutex::new(Vec::new()));
        counts.push(got.clone());
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || collect_numbers(s, got, stop)));
    }
    // Successful calls (the code label is "OK" when the status came in the trailers).
    let calls = |method: &str| -> Result<f64> {
        let mut n = 0.0;
        for code in ["OK", "Ok"] {
            n += split.meta_metric(&format!(
                "robustmq_meta_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}}"
            ))?;
        }
        Ok(n)
    };
    let (single_before, batched_before) = (calls("UpdateSession")?, calls("UpdateSessions")?);
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        publish_numbers_from(port, "busy", n, 20, 16)?;
        n += 20;
        std::thread::sleep(Duration::from_millis(100));
    }
    // One more beat, so that the last deliveries are checkpointed too.
    std::thread::sleep(Duration::from_millis(1500));
    let single = calls("UpdateSession")? - single_before;
    let batched = calls("UpdateSessions")? - batched_before;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap()?;
    }
    let least = counts
        .iter()
        .map(|c| c.lock().unwrap().len())
        .min()
        .unwrap_or(0);
    println!(
        "{SESSIONS} sessions got at least {least} of {n} messages each; meta saw {batched} UpdateSessions and {single} UpdateSession calls"
    );
    anyhow::ensure!(least > 0, "a session received nothing");
    anyhow::ensure!(batched > 0.0, "no batched session update reached meta");
    anyhow::ensure!(single == 0.0, "{single} unbatched UpdateSession calls");
    let unbatched = (SESSIONS as u64 * SECONDS) as f64;
    anyhow::ensure!(
        batched * 4.0 < unbatched,
        "{batched} UpdateSessions calls for about {unbatched} checkpoints: the checkpoints were not batched"
    );
    split.stop();
    dir.pass();
    Ok(())
}

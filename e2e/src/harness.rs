//! Processes, ports, logs and small HTTP checks for end-to-end tests.
//!
//! Every process is started with its output in a log file inside the test's directory and
//! is stopped by its own pid when the test ends. When a test fails (the thread panics), the
//! directory is kept and the tail of every log is printed.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Path of a workspace binary. Tests run from `target/<profile>/deps`, so the binaries sit
/// one directory up; `ROBUSTMQ_BIN_DIR` overrides.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("ROBUSTMQ_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("test executable path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target directory")
                .to_path_buf()
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} does not exist: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free a moment ago and is not handed out twice by this process.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        let mut seen = PORTS.lock().expect("ports lock");
        if seen.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// A directory for one test's data and logs. It is deleted only when the test calls
/// [`TestDir::pass`] (and `ROBUSTMQ_KEEP_LOGS` is unset); otherwise (a panic, or an early `Err` return) it is kept and the tail
/// of every log is printed.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    passed: std::sync::atomic::AtomicBool,
}

impl TestDir {
    pub fn new(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("robustmq-{prefix}-"))
            .tempdir()
            .expect("create test dir");
        Self {
            dir: Some(dir),
            passed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks the test as passed, so the directory is deleted.
    pub fn pass(&self) {
        self.passed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("test dir").path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("ROBUSTMQ_KEEP_LOGS").is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("ROBUSTMQ_KEEP_LOGS: kept {}", dir.keep().display());
            }
            return;
        }
        if self.passed.load(std::sync::atomic::Ordering::SeqCst) && !std::thread::panicking() {
            return;
        }
        let Some(dir) = self.dir.take() else { return };
        let path = dir.keep();
        eprintln!("test failed; logs kept in {}", path.display());
        if let Ok(entries) = std::fs::read_dir(&path) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = &lines[lines.len().saturating_sub(40)..];
                    eprintln!(
                        "---- {} (last {} lines)\n{}",
                        p.display(),
                        tail.len(),
                        tail.join("\n")
                    );
                }
            }
        }
    }
}

/// A real process of ours, restartable with the same arguments.
pub struct Process {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn new(name: &str, bin: PathBuf, args: Vec<String>, log_dir: &Path) -> Self {
        Self {
            name: name.to_string(),
            bin,
            args,
            envs: vec![("RUST_LOG".into(), "info,openraft=warn,sled=warn".into())],
            log: log_dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("{} is already running", self.name);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        writeln!(log, "==== start {} {:?}", self.bin.display(), self.args)?;
        let err = log.try_clone()?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `grace` for a clean exit before SIGKILL.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET over loopback: (status, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in reply from {addr}{path}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, dechunk(&body)))
}

/// Undoes chunked transfer encoding when present (axum chunks unknown-length bodies).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout` with the
/// last error seen.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("not yet");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with the `openssl` CLI in
/// `dir`; returns the PEM paths `(cert, key)`.
pub fn self_signed_cert(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .context("running openssl")?;
    if !st.success() {
        bail!("openssl could not make a test certificate");
    }
    Ok((cert, key))
}

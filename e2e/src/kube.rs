//! A real Kubernetes control plane for the operator tests, through the scripts in
//! `e2e/k8s/` (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on
//! loopback), plus `kubectl` and `helm` helpers.
//!
//! [`ControlPlane::tools_missing`] tells a test to skip when the tools are not installed
//! (CI installs them with `e2e/k8s/install-tools.sh`); [`ControlPlane::start`] never
//! builds them, so a test cannot spend an hour compiling Kubernetes by accident.
//! The control plane is stopped on drop, and the scripts' watchdog stops it if the test
//! process dies.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The repository root (this crate lives in `<root>/e2e`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn script(name: &str) -> PathBuf {
    repo_root().join("e2e/k8s").join(name)
}

pub struct ControlPlane {
    state_dir: PathBuf,
    env: HashMap<String, String>,
    stopped: bool,
}

impl ControlPlane {
    /// `Some(reason)` when the Kubernetes tools are not installed in the cache.
    pub fn tools_missing() -> Option<String> {
        let out = Command::new(script("install-tools.sh"))
            .arg("--check")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!(
                "Kubernetes tools not installed (run e2e/k8s/install-tools.sh): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => Some(format!("cannot run e2e/k8s/install-tools.sh --check: {e}")),
        }
    }

    /// Starts a control plane whose state (kubeconfig, logs) lives in `state_dir`.
    pub fn start(state_dir: &Path) -> Result<Self> {
        let out = Command::new(script("control-plane.sh"))
            .arg("start")
            .env("K8S_STATE_DIR", state_dir)
            .env("K8S_SKIP_INSTALL", "1")
            .env("K8S_WATCH_PID", std::process::id().to_string())
            .stdin(Stdio::null())
            .output()
            .context("running e2e/k8s/control-plane.sh start")?;
        if !out.status.success() {
            bail!(
                "control-plane.sh start failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cp = ControlPlane {
            state_dir: state_dir.to_path_buf(),
            env: HashMap::new(),
            stopped: false,
        };
        let env = std::fs::read_to_string(state_dir.join("env"))
            .context("reading the control plane's env file")?;
        for line in env.lines() {
            let line = line.trim().trim_start_matches("export ");
            if let Some((k, v)) = line.split_once('=') {
                cp.env
                    .insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        for key in ["KUBECONFIG", "K8S_BIN_DIR", "K8S_API_SERVER", "K8S_CA_FILE"] {
            if !cp.env.contains_key(key) {
                bail!("control plane env file lacks {key}: {env}");
            }
        }
        Ok(cp)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(&self.env["KUBECONFIG"])
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(Path::new(&self.env["K8S_BIN_DIR"]).join(name));
        c.env("KUBECONFIG", self.kubeconfig())
            .env("HELM_CACHE_HOME", self.state_dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.state_dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.state_dir.join("helm/data"))
            .current_dir(repo_root());
        c
    }

    /// Runs kubectl with `stdin`, returning the raw output (for commands expected to fail).
    pub fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut cmd = self.tool("kubectl");
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawning kubectl")?;
        let mut pipe = child.stdin.take().expect("piped stdin");
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes())?;
        }
        drop(pipe);
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl and returns stdout, failing with stderr on a non-zero exit.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl_raw(args, None)?;
        check(&format!("kubectl {}", args.join(" ")), out)
    }

    /// `kubectl apply -f -` of a YAML document.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        let out = self.kubectl_raw(&["apply", "-f", "-"], Some(yaml))?;
        check("kubectl apply -f -", out)
    }

    /// An object as JSON, or None if it does not exist.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Result<Option<Value>> {
        let out = self.kubectl_raw(
            &[
                "get",
                kind,
                name,
                "-n",
                ns,
                "-o",
                "json",
                "--ignore-not-found",
            ],
            None,
        )?;
        let text = check(&format!("kubectl get {kind} {name}"), out)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&text)?))
    }

    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let out = self
            .tool("helm")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running helm")?;
        check(&format!("helm {}", args.join(" ")), out)
    }

    /// Writes a kubeconfig that authenticates as a ServiceAccount (a bound token from
    /// `kubectl create token`), so a process using it has exactly that account's RBAC.
    pub fn service_account_kubeconfig(&self, ns: &str, sa: &str, path: &Path) -> Result<()> {
        let token = self.kubectl(&["create", "token", sa, "-n", ns, "--duration", "2h"])?;
        let ca = std::fs::read(&self.env["K8S_CA_FILE"]).context("reading the CA")?;
        let ca_b64 = base64(&ca);
        let cfg = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: {sa}\n  user:\n    token: {}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {sa}}}\ncurrent-context: e2e\n",
            self.env["K8S_API_SERVER"],
            token.trim()
        );
        std::fs::write(path, cfg)?;
        Ok(())
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new(script("control-plane.sh"))
            .arg("stop")
            .env("K8S_STATE_DIR", &self.state_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn check(what: &str, out: Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Standard base64 (kubeconfig's `certificate-authority-data`); small enough not to need a
/// dependency.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}

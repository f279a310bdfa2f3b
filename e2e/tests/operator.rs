//! The operator against a real control plane (kube-apiserver, kube-controller-manager,
//! kube-scheduler, etcd, kwok from `e2e/k8s/`) and a real `robustmq-meta`.
//!
//! Needs the binaries built first: `cargo build -p operator -p meta-service --bins`, and the
//! Kubernetes tools installed (`e2e/k8s/install-tools.sh`); without the tools the test is
//! skipped with a message. The operator runs on the host (kwok pods run nothing), as the
//! ServiceAccount of `deploy/` (so its least-privilege RBAC is what is tested), and reaches
//! the meta process through `--meta-endpoint`.
//!
//! One control plane takes ~15 s to start, so one test drives the scenarios in order, each
//! in its own function and namespace.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use e2e::harness::{Process, TestDir, bin, free_port, http_get, wait_for};
use e2e::kube::{ControlPlane, repo_root};
use e2e::meta::client as meta_client;
use robustmq_proto::meta::{
    Engine, ListNodesRequest, NameRequest, NodeRole, NodeState, RegisterNodeRequest,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn i(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(-1)
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits until the object exists and `pred` holds for it; returns it.
async fn wait_obj(
    cp: &ControlPlane,
    kind: &str,
    ns: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    wait_for(&format!("{kind} {ns}/{name}: {what}"), WAIT, || {
        let got = cp.get(kind, ns, name);
        let ok = got.map(|o| o.filter(|o| pred(o)));
        async move {
            match ok {
                Ok(Some(v)) => Ok(Some(v)),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        }
    })
    .await
}

async fn wait_gone(cp: &ControlPlane, kind: &str, ns: &str, name: &str) -> Result<()> {
    wait_for(&format!("{kind} {ns}/{name} to be deleted"), WAIT, || {
        let got = cp.get(kind, ns, name);
        async move { Ok(got?.is_none().then_some(())) }
    })
    .await
}

fn ready_is(obj: &Value, status: &str) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_on_a_real_control_plane() -> Result<()> {
    if let Some(reason) = ControlPlane::tools_missing() {
        // CI (.ci/test.sh) installs the tools and sets this, so there a skip is a failure.
        if std::env::var_os("ROBUSTMQ_REQUIRE_TOOLS").is_some() {
            bail!("the Kubernetes tools are required but missing: {reason}");
        }
        eprintln!("SKIPPED operator e2e: {reason}");
        return Ok(());
    }
    let dir = TestDir::new("operator");
    let mut cp = ControlPlane::start(&dir.path().join("k8s"))?;

    // A real single-node meta-service for quorum, policies and topics.
    let (meta_grpc, meta_admin) = (free_port(), free_port());
    let mut meta = Process::new(
        "meta",
        bin("robustmq-meta"),
        vec![
            "--node-id".into(),
            "1".into(),
            "--grpc-addr".into(),
            format!("127.0.0.1:{meta_grpc}"),
            "--admin-addr".into(),
            format!("127.0.0.1:{meta_admin}"),
            "--data-dir".into(),
            dir.path().join("meta").display().to_string(),
        ],
        dir.path(),
    );
    meta.start()?;
    wait_for("meta /readyz", WAIT, || {
        let r = http_get(&format!("127.0.0.1:{meta_admin}"), "/readyz");
        async move { Ok(r.ok().filter(|(code, _)| *code == 200).map(|_| ())) }
    })
    .await?;

    helm_install_creates_the_operator_objects(&cp)?;
    kubectl_apply_deploy_installs_crds_rbac_and_operator(&cp).await?;

    // Two operator replicas on the host, as the deploy/ ServiceAccount.
    let sa_config = dir.path().join("operator-sa.kubeconfig");
    cp.service_account_kubeconfig("robustmq-system", "robustmq-operator", &sa_config)?;
    let mut operators = Vec::new();
    let mut admins = Vec::new();
    for id in ["op-a", "op-b"] {
        let admin = format!("127.0.0.1:{}", free_port());
        let mut p = Process::new(
            id,
            bin("robustmq-operator"),
            vec![
                "run".into(),
                "--meta-endpoint".into(),
                format!("127.0.0.1:{meta_grpc}"),
                "--admin-addr".into(),
                admin.clone(),
                "--identity".into(),
                id.into(),
                "--lease-namespace".into(),
                "robustmq-system".into(),
                "--lease-seconds".into(),
                "6".into(),
            ],
            dir.path(),
        )
        .env("KUBECONFIG", &sa_config.display().to_string())
        .env("RUST_LOG", "info,operator=debug");
        p.start()?;
        operators.push(p);
        admins.push(admin);
    }
    only_one_replica_leads(&cp, &admins).await?;
    the_standby_takes_over_when_the_leader_dies(&cp, &mut operators, &admins).await?;

    cluster_creates_every_child_with_the_right_spec(&cp).await?;
    status_turns_ready_with_meta_quorum(&cp).await?;
    editing_the_spec_updates_only_the_concerned_children(&cp, &format!("127.0.0.1:{meta_grpc}"))
        .await?;
    invalid_resources_are_rejected_with_the_schema_message(&cp)?;
    topics_and_policies_land_in_meta(&cp, &format!("127.0.0.1:{meta_grpc}")).await?;
    deleting_the_cluster_garbage_collects_its_children(&cp).await?;
    metrics_count_reconciles(&admins).await?;

    for p in &mut operators {
        p.terminate(Duration::from_secs(10));
    }
    meta.terminate(Duration::from_secs(10));
    cp.stop();
    dir.pass();
    Ok(())
}

fn helm_install_creates_the_operator_objects(cp: &ControlPlane) -> Result<()> {
    let chart = repo_root().join("charts/robustmq");
    let chart = chart.to_str().context("chart path")?;
    cp.helm(&["lint", chart])?;
    cp.helm(&[
        "install",
        "rmq",
        chart,
        "--namespace",
        "helm-test",
        "--create-namespace",
        "--set",
        "cluster.enabled=true",
        "--set",
        "cluster.name=from-values",
        "--wait=false",
    ])?;
    for crd in [
        "robustmqclusters.robustmq.io",
        "storagepolicies.robustmq.io",
        "topics.robustmq.io",
    ] {
        cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd",
            crd,
        ])?;
    }
    let d = cp
        .get("deployment", "helm-test", "rmq-robustmq-operator")?
        .context("helm created no operator Deployment")?;
    ensure!(i(&d, "/spec/replicas") == 2, "operator replicas: {d}");
    ensure!(
        s(&d, "/spec/template/spec/serviceAccountName") == "rmq-robustmq-operator",
        "service account: {d}"
    );
    ensure!(
        cp.get("serviceaccount", "helm-test", "rmq-robustmq-operator")?
            .is_some()
    );
    ensure!(
        cp.get("role", "helm-test", "rmq-robustmq-operator-leader-election")?
            .is_some()
    );
    let role = cp.kubectl(&["get", "clusterrole", "rmq-robustmq-operator", "-o", "json"])?;
    ensure!(
        role.contains("robustmqclusters/status"),
        "cluster role: {role}"
    );
    ensure!(
        !role.contains("\"*\""),
        "the cluster role must not use wildcards: {role}"
    );
    let c = cp
        .get("robustmqcluster", "helm-test", "from-values")?
        .context("cluster.enabled created no RobustMQCluster")?;
    ensure!(
        i(&c, "/spec/meta/replicas") == 3,
        "cluster from values: {c}"
    );
    cp.helm(&[
        "uninstall",
        "rmq",
        "--namespace",
        "helm-test",
        "--wait=false",
    ])?;
    Ok(())
}

async fn kubectl_apply_deploy_installs_crds_rbac_and_operator(cp: &ControlPlane) -> Result<()> {
    cp.kubectl(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "deploy/",
    ])?;
    // kwok marks the operator's pods ready (nothing runs in them).
    wait_obj(
        cp,
        "deployment",
        "robustmq-system",
        "robustmq-operator",
        "2 ready replicas",
        |d| i(d, "/status/readyReplicas") == 2,
    )
    .await?;
    // Least privilege, as the API server sees it.
    let can = |verb: &str, res: &str| {
        cp.kubectl_raw(
            &[
                "auth",
                "can-i",
                verb,
                res,
                "--as",
                "system:serviceaccount:robustmq-system:robustmq-operator",
                "-n",
                "default",
            ],
            None,
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes")
    };
    ensure!(
        can("patch", "statefulsets.apps")?,
        "operator cannot patch statefulsets"
    );
    ensure!(can("create", "secrets")?, "operator cannot create secrets");
    ensure!(!can("list", "secrets")?, "operator may list secrets");
    ensure!(
        !can("delete", "statefulsets.apps")?,
        "operator may delete statefulsets"
    );
    ensure!(!can("create", "pods")?, "operator may create pods");
    Ok(())
}

async fn only_one_replica_leads(cp: &ControlPlane, admins: &[String]) -> Result<()> {
    let roles = wait_for("one leader and one standby", WAIT, || {
        let bodies: Vec<_> = admins.iter().map(|a| http_get(a, "/readyz")).collect();
        async move {
            let mut leaders = 0;
            let mut standbys = 0;
            for b in bodies {
                let (code, body) = b?;
                if code == 200 && body.contains("leader") {
                    leaders += 1;
                } else if code == 200 && body.contains("standby") {
                    standbys += 1;
                }
            }
            Ok((leaders == 1 && standbys == 1).then_some((leaders, standbys)))
        }
    })
    .await?;
    let lease = cp
        .get("lease", "robustmq-system", "robustmq-operator")?
        .context("no leader Lease")?;
    let holder = s(&lease, "/spec/holderIdentity");
    ensure!(
        holder == "op-a" || holder == "op-b",
        "lease holder {holder}: {roles:?}"
    );
    Ok(())
}

/// SIGKILL the leader (no graceful release): the standby takes the Lease once it expires.
async fn the_standby_takes_over_when_the_leader_dies(
    cp: &ControlPlane,
    operators: &mut [Process],
    admins: &[String],
) -> Result<()> {
    let lease = cp
        .get("lease", "robustmq-system", "robustmq-operator")?
        .context("no leader Lease")?;
    let old = s(&lease, "/spec/holderIdentity").to_string();
    let (dead, survivor) = if old == "op-a" { (0, 1) } else { (1, 0) };
    operators[dead].kill();
    let survivor_admin = admins[survivor].clone();
    wait_for("the standby to lead", Duration::from_secs(30), || {
        let r = http_get(&survivor_admin, "/readyz");
        async move { Ok(r?.1.contains("leader").then_some(())) }
    })
    .await?;
    let lease = cp
        .get("lease", "robustmq-system", "robustmq-operator")?
        .context("no leader Lease")?;
    let new = s(&lease, "/spec/holderIdentity");
    ensure!(
        new != old && !new.is_empty(),
        "lease still held by {old}: {lease}"
    );
    ensure!(i(&lease, "/spec/leaseTransitions") >= 1, "{lease}");
    // Bring the killed replica back as a standby, as its Deployment would.
    operators[dead].start()?;
    Ok(())
}

const CLUSTER: &str = r#"
apiVersion: robustmq.io/v1alpha1
kind: RobustMQCluster
metadata: {name: demo, namespace: e2e}
spec:
  image: robustmq:e2e
  imagePullPolicy: IfNotPresent
  meta: {replicas: 3, storage: {size: 2Gi}}
  journal: {replicas: 3, storage: {size: 5Gi}}
  broker:
    minReplicas: 2
    maxReplicas: 6
    autoscaling: {targetCpuUtilization: 65, targetConnectionsPerPod: 1000}
    listeners: {serviceType: NodePort}
  tls: {selfSigned: true}
  defaultStoragePolicy: durable
"#;

async fn cluster_creates_every_child_with_the_right_spec(cp: &ControlPlane) -> Result<()> {
    cp.kubectl(&["create", "namespace", "e2e"])?;
    cp.apply(CLUSTER)?;
    let ns = "e2e";
    let meta = wait_obj(cp, "statefulset", ns, "demo-meta", "created", |_| true).await?;
    ensure!(i(&meta, "/spec/replicas") == 3, "meta replicas: {meta}");
    ensure!(
        s(&meta, "/spec/podManagementPolicy") == "Parallel",
        "{meta}"
    );
    ensure!(s(&meta, "/spec/serviceName") == "demo-meta");
    ensure!(
        s(
            &meta,
            "/spec/volumeClaimTemplates/0/spec/resources/requests/storage"
        ) == "2Gi",
        "meta pvc: {meta}"
    );
    let ctr = meta
        .pointer("/spec/template/spec/containers/0")
        .context("container")?;
    ensure!(s(ctr, "/readinessProbe/httpGet/path") == "/readyz", "{ctr}");
    ensure!(s(ctr, "/livenessProbe/httpGet/path") == "/healthz", "{ctr}");
    ensure!(s(ctr, "/image") == "robustmq:e2e");
    ensure!(
        meta.pointer("/spec/template/spec/affinity/podAntiAffinity")
            .is_some(),
        "anti-affinity: {meta}"
    );
    let owner = meta
        .pointer("/metadata/ownerReferences/0")
        .context("owner")?;
    ensure!(
        owner["kind"] == "RobustMQCluster" && owner["controller"] == true,
        "{owner}"
    );

    let journal = wait_obj(cp, "statefulset", ns, "demo-journal", "created", |_| true).await?;
    ensure!(i(&journal, "/spec/replicas") == 3);
    ensure!(
        s(
            &journal,
            "/spec/volumeClaimTemplates/0/spec/resources/requests/storage"
        ) == "5Gi"
    );

    let broker = wait_obj(cp, "deployment", ns, "demo-broker", "created", |_| true).await?;
    let fields = cp.kubectl(&[
        "get",
        "deployment",
        "demo-broker",
        "-n",
        ns,
        "-o",
        "json",
        "--show-managed-fields",
    ])?;
    let managed: Value = serde_json::from_str(&fields)?;
    let ours = managed["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?
        .iter()
        .find(|m| m["manager"] == "robustmq-operator")
        .context("no fields managed by robustmq-operator")?
        .clone();
    ensure!(
        ours["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "the operator must leave broker replicas to the HPA: {ours}"
    );
    ensure!(
        broker
            .pointer("/spec/template/spec/volumes")
            .is_some_and(|v| v.to_string().contains("demo-tls")),
        "broker mounts the TLS secret: {broker}"
    );

    let hpa = wait_obj(cp, "hpa", ns, "demo-broker", "created", |_| true).await?;
    ensure!(
        i(&hpa, "/spec/minReplicas") == 2 && i(&hpa, "/spec/maxReplicas") == 6,
        "{hpa}"
    );
    ensure!(
        i(&hpa, "/spec/metrics/0/resource/target/averageUtilization") == 65,
        "{hpa}"
    );
    ensure!(
        s(&hpa, "/spec/metrics/1/pods/metric/name") == "robustmq_connections",
        "{hpa}"
    );

    let svc = wait_obj(cp, "service", ns, "demo-meta", "created", |_| true).await?;
    ensure!(s(&svc, "/spec/clusterIP") == "None", "headless meta: {svc}");
    let svc = wait_obj(cp, "service", ns, "demo-journal", "created", |_| true).await?;
    ensure!(
        s(&svc, "/spec/clusterIP") == "None",
        "headless journal: {svc}"
    );
    let svc = wait_obj(cp, "service", ns, "demo-broker", "created", |_| true).await?;
    ensure!(s(&svc, "/spec/type") == "NodePort", "broker svc: {svc}");
    ensure!(svc.to_string().contains("\"port\":8883"), "TLS port: {svc}");

    for pdb in ["demo-meta", "demo-journal", "demo-broker"] {
        let p = wait_obj(cp, "pdb", ns, pdb, "created", |_| true).await?;
        ensure!(
            p.pointer("/spec/maxUnavailable") == Some(&Value::from(1)),
            "{p}"
        );
    }
    for cm in [
        "demo-meta-config",
        "demo-journal-config",
        "demo-broker-config",
    ] {
        wait_obj(cp, "configmap", ns, cm, "created", |_| true).await?;
    }
    let secret = wait_obj(cp, "secret", ns, "demo-tls", "created", |_| true).await?;
    ensure!(s(&secret, "/type") == "kubernetes.io/tls", "{secret}");
    Ok(())
}

async fn status_turns_ready_with_meta_quorum(cp: &ControlPlane) -> Result<()> {
    let c = wait_obj(cp, "robustmqcluster", "e2e", "demo", "Ready=True", |c| {
        ready_is(c, "True")
    })
    .await?;
    for t in ["MetaQuorum", "JournalReady", "BrokersReady"] {
        let cond = condition(&c, t).with_context(|| format!("no {t}: {c}"))?;
        ensure!(cond["status"] == "True", "{t}: {cond}");
    }
    for t in ["Progressing", "Degraded"] {
        let cond = condition(&c, t).with_context(|| format!("no {t}: {c}"))?;
        ensure!(cond["status"] == "False", "{t}: {cond}");
    }
    ensure!(s(&c, "/status/metaLeader") == "demo-meta-0", "leader: {c}");
    ensure!(
        i(&c, "/status/metaReady") == 3 && i(&c, "/status/journalReady") == 3,
        "{c}"
    );
    ensure!(
        i(&c, "/status/observedGeneration") == i(&c, "/metadata/generation"),
        "{c}"
    );
    ensure!(
        s(&c, "/status/endpoints/mqtt") == "demo-broker.e2e.svc:1883",
        "{c}"
    );
    let events = cp.kubectl(&[
        "get",
        "events",
        "-n",
        "e2e",
        "--field-selector",
        "involvedObject.name=demo",
        "-o",
        "json",
    ])?;
    ensure!(
        events.contains("\"Ready\"") && events.contains("CertificateCreated"),
        "{events}"
    );
    Ok(())
}

fn hash(obj: &Value) -> String {
    s(
        obj,
        "/spec/template/metadata/annotations/robustmq.io~1config-hash",
    )
    .to_string()
}

async fn editing_the_spec_updates_only_the_concerned_children(
    cp: &ControlPlane,
    meta_addr: &str,
) -> Result<()> {
    let ns = "e2e";
    // Journal node 3 (ordinal 2) registers in meta as a running journal pod would; the
    // scale-in from 3 to 2 must drain it first.
    let mut meta = meta_client(meta_addr).await?;
    meta.register_node(RegisterNodeRequest {
        id: 3,
        role: NodeRole::Journal as i32,
        addr: "demo-journal-2.demo-journal:1778".into(),
        lease_ttl_ms: 600_000,
        labels: Default::default(),
    })
    .await?;
    let meta_before = hash(&cp.get("statefulset", ns, "demo-meta")?.context("meta")?);
    let journal_before = hash(
        &cp.get("statefulset", ns, "demo-journal")?
            .context("journal")?,
    );
    let broker_before = hash(&cp.get("deployment", ns, "demo-broker")?.context("broker")?);
    ensure!(
        !meta_before.is_empty(),
        "no config hash on the meta pod template"
    );
    cp.kubectl(&[
        "patch",
        "robustmqcluster",
        "demo",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"journal":{"replicas":2},"broker":{"maxReplicas":9},"config":{"journal":{"segment_bytes":"1048576"}}}}"#,
    ])?;
    let journal = wait_obj(cp, "statefulset", ns, "demo-journal", "scaled to 2", |j| {
        i(j, "/spec/replicas") == 2
    })
    .await?;
    ensure!(
        hash(&journal) != journal_before,
        "journal config change must roll the journal"
    );
    wait_obj(cp, "hpa", ns, "demo-broker", "maxReplicas 9", |h| {
        i(h, "/spec/maxReplicas") == 9
    })
    .await?;
    let cm = cp
        .get("configmap", ns, "demo-journal-config")?
        .context("cm")?;
    ensure!(
        s(&cm, "/data/journal.yaml") == "segment_bytes: 1048576\n",
        "{cm}"
    );
    let meta_after = hash(&cp.get("statefulset", ns, "demo-meta")?.context("meta")?);
    let broker_after = hash(&cp.get("deployment", ns, "demo-broker")?.context("broker")?);
    ensure!(
        meta_after == meta_before,
        "meta must not roll for a journal change"
    );
    ensure!(
        broker_after == broker_before,
        "brokers must not roll for a journal change"
    );
    let c = wait_obj(
        cp,
        "robustmqcluster",
        ns,
        "demo",
        "generation 2 observed and Ready",
        |c| i(c, "/status/observedGeneration") == 2 && ready_is(c, "True"),
    )
    .await?;
    ensure!(i(&c, "/status/journalReady") == 2, "{c}");
    let events = cp.kubectl(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        "involvedObject.name=demo",
        "-o",
        "json",
    ])?;
    ensure!(
        events.contains("JournalDrained"),
        "no drain before the scale-in: {events}"
    );
    let nodes = meta
        .list_nodes(ListNodesRequest {
            role: NodeRole::Journal as i32,
        })
        .await?
        .into_inner();
    let node3 = nodes
        .nodes
        .iter()
        .filter_map(|n| n.node.as_ref())
        .find(|n| n.id == 3)
        .with_context(|| format!("journal node 3 not in meta: {nodes:?}"))?;
    ensure!(
        node3.state == NodeState::Draining as i32,
        "node 3 not drained: {node3:?}"
    );
    Ok(())
}

fn invalid_resources_are_rejected_with_the_schema_message(cp: &ControlPlane) -> Result<()> {
    let cases = [
        (
            "apiVersion: robustmq.io/v1alpha1\nkind: RobustMQCluster\nmetadata: {name: bad, namespace: e2e}\nspec: {meta: {replicas: 4}}\n",
            "meta.replicas must be odd",
        ),
        (
            "apiVersion: robustmq.io/v1alpha1\nkind: RobustMQCluster\nmetadata: {name: bad, namespace: e2e}\nspec: {broker: {minReplicas: 5, maxReplicas: 2}}\n",
            "broker.maxReplicas must be >= broker.minReplicas",
        ),
        (
            "apiVersion: robustmq.io/v1alpha1\nkind: StoragePolicy\nmetadata: {name: bad, namespace: e2e}\nspec: {clusterRef: demo, engine: tape}\n",
            "Unsupported value: \"tape\"",
        ),
        (
            "apiVersion: robustmq.io/v1alpha1\nkind: StoragePolicy\nmetadata: {name: bad, namespace: e2e}\nspec: {clusterRef: demo, engine: object}\n",
            "objectStore is required when engine is object",
        ),
    ];
    for (yaml, message) in cases {
        let out = cp.kubectl_raw(&["apply", "-f", "-"], Some(yaml))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success(),
            "accepted an invalid resource:\n{yaml}"
        );
        ensure!(
            stderr.contains(message),
            "expected '{message}', got: {stderr}"
        );
    }
    Ok(())
}

const POLICIES: &str = r#"
apiVersion: robustmq.io/v1alpha1
kind: StoragePolicy
metadata: {name: durable, namespace: e2e}
spec: {clusterRef: demo, engine: segment, replicas: 1, fsync: always, retention: {time: 7d}}
---
apiVersion: robustmq.io/v1alpha1
kind: StoragePolicy
metadata: {name: ephemeral, namespace: e2e}
spec: {clusterRef: demo, engine: memory, replicas: 1, fsync: never}
"#;

const TOPICS: &str = r#"
apiVersion: robustmq.io/v1alpha1
kind: Topic
metadata: {name: sensors, namespace: e2e}
spec: {clusterRef: demo, partitions: 3, storagePolicy: ephemeral, kafka: {name: sensors}, mqtt: {filter: "sensors/#"}}
---
apiVersion: robustmq.io/v1alpha1
kind: Topic
metadata: {name: orders, namespace: e2e}
spec: {clusterRef: demo, partitions: 2, kafka: {name: orders}, deletionPolicy: Retain}
---
apiVersion: robustmq.io/v1alpha1
kind: Topic
metadata: {name: orphan, namespace: e2e}
spec: {clusterRef: demo, partitions: 1, storagePolicy: no-such-policy}
"#;

async fn topics_and_policies_land_in_meta(cp: &ControlPlane, meta_addr: &str) -> Result<()> {
    let ns = "e2e";
    cp.apply(POLICIES)?;
    cp.apply(TOPICS)?;
    let mut meta = meta_client(meta_addr).await?;
    for p in ["durable", "ephemeral"] {
        wait_obj(cp, "storagepolicy", ns, p, "Ready", |o| ready_is(o, "True")).await?;
    }
    let durable = meta
        .get_policy(NameRequest {
            name: "durable".into(),
        })
        .await?
        .into_inner();
    ensure!(
        durable.engine == Engine::Segment as i32,
        "durable in meta: {durable:?}"
    );
    let sensors = wait_obj(cp, "topic", ns, "sensors", "Ready", |o| ready_is(o, "True")).await?;
    ensure!(s(&sensors, "/status/engine") == "memory", "{sensors}");
    ensure!(i(&sensors, "/status/shards") == 3, "{sensors}");
    let t = meta
        .get_topic(NameRequest {
            name: "sensors".into(),
        })
        .await?
        .into_inner();
    let topic = t.topic.clone().context("topic")?;
    ensure!(
        topic.storage_policy == "ephemeral" && topic.mqtt_filter == "sensors/#",
        "{t:?}"
    );
    ensure!(t.shards.len() == 3, "{t:?}");
    // No storagePolicy: the cluster's defaultStoragePolicy (durable, segment).
    let orders = wait_obj(cp, "topic", ns, "orders", "Ready", |o| ready_is(o, "True")).await?;
    ensure!(s(&orders, "/status/engine") == "segment", "{orders}");
    ensure!(s(&orders, "/status/storagePolicy") == "durable", "{orders}");
    // Unknown policy: Ready=False with a reason, retried.
    let orphan = wait_obj(cp, "topic", ns, "orphan", "Ready=False", |o| {
        ready_is(o, "False")
    })
    .await?;
    let reason = condition(&orphan, "Ready").map(|c| c["reason"].clone());
    ensure!(
        reason == Some(Value::from("StoragePolicyNotFound")),
        "{orphan}"
    );

    // Partitions grow.
    cp.kubectl(&[
        "patch",
        "topic",
        "sensors",
        "-n",
        ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"partitions":5}}"#,
    ])?;
    wait_obj(cp, "topic", ns, "sensors", "5 shards", |o| {
        i(o, "/status/shards") == 5
    })
    .await?;
    let t = meta
        .get_topic(NameRequest {
            name: "sensors".into(),
        })
        .await?
        .into_inner();
    ensure!(t.shards.len() == 5, "after growing: {t:?}");
    let shrink = cp.kubectl_raw(
        &[
            "patch",
            "topic",
            "sensors",
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"partitions":1}}"#,
        ],
        None,
    )?;
    ensure!(
        String::from_utf8_lossy(&shrink.stderr).contains("partitions may only grow"),
        "shrinking partitions: {}",
        String::from_utf8_lossy(&shrink.stderr)
    );
    let engine = cp.kubectl_raw(
        &[
            "patch",
            "storagepolicy",
            "durable",
            "-n",
            ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"engine":"memory"}}"#,
        ],
        None,
    )?;
    ensure!(
        String::from_utf8_lossy(&engine.stderr).contains("engine is immutable"),
        "changing the engine: {}",
        String::from_utf8_lossy(&engine.stderr)
    );

    // Delete removes the topic from meta; Retain keeps it.
    cp.kubectl(&["delete", "topic", "sensors", "-n", ns, "--timeout=60s"])?;
    match meta
        .get_topic(NameRequest {
            name: "sensors".into(),
        })
        .await
    {
        Err(st) if st.code() == tonic::Code::NotFound => {}
        other => bail!("sensors must be gone from meta after delete: {other:?}"),
    }
    cp.kubectl(&["delete", "topic", "orders", "-n", ns, "--timeout=60s"])?;
    let kept = meta
        .get_topic(NameRequest {
            name: "orders".into(),
        })
        .await?
        .into_inner();
    ensure!(
        kept.topic.is_some_and(|t| t.name == "orders"),
        "Retain must keep orders in meta"
    );
    cp.kubectl(&["delete", "topic", "orphan", "-n", ns, "--timeout=60s"])?;

    // A policy no topic uses is deleted from meta; one still used (by the retained
    // `orders`) is kept, its deletion retried, while meta refuses.
    cp.kubectl(&[
        "delete",
        "storagepolicy",
        "ephemeral",
        "-n",
        ns,
        "--timeout=60s",
    ])?;
    match meta
        .get_policy(NameRequest {
            name: "ephemeral".into(),
        })
        .await
    {
        Err(st) if st.code() == tonic::Code::NotFound => {}
        other => bail!("ephemeral must be gone from meta: {other:?}"),
    }
    cp.kubectl(&[
        "delete",
        "storagepolicy",
        "durable",
        "-n",
        ns,
        "--wait=false",
    ])?;
    wait_for("a warning that durable is in use", WAIT, || {
        let ev = cp.kubectl(&[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=durable,type=Warning",
            "-o",
            "json",
        ]);
        async move { Ok(ev?.contains("in use by topic").then_some(())) }
    })
    .await?;
    ensure!(
        cp.get("storagepolicy", ns, "durable")?.is_some(),
        "durable deleted while in use"
    );
    meta.get_policy(NameRequest {
        name: "durable".into(),
    })
    .await
    .context("durable must stay in meta while orders uses it")?;
    Ok(())
}

async fn deleting_the_cluster_garbage_collects_its_children(cp: &ControlPlane) -> Result<()> {
    let ns = "e2e";
    cp.kubectl(&[
        "delete",
        "robustmqcluster",
        "demo",
        "-n",
        ns,
        "--wait=true",
        "--timeout=60s",
    ])?;
    for (kind, name) in [
        ("statefulset", "demo-meta"),
        ("statefulset", "demo-journal"),
        ("deployment", "demo-broker"),
        ("hpa", "demo-broker"),
        ("service", "demo-meta"),
        ("service", "demo-journal"),
        ("service", "demo-broker"),
        ("pdb", "demo-meta"),
        ("configmap", "demo-meta-config"),
        ("secret", "demo-tls"),
    ] {
        wait_gone(cp, kind, ns, name).await?;
    }
    Ok(())
}

async fn metrics_count_reconciles(admins: &[String]) -> Result<()> {
    let mut total = String::new();
    for a in admins {
        let (code, body) = http_get(a, "/metrics")?;
        ensure!(code == 200, "/metrics on {a}: {code}");
        total.push_str(&body);
    }
    ensure!(
        total.contains("robustmq_operator_reconciles_total{kind=\"robustmqcluster\"}"),
        "{total}"
    );
    ensure!(
        total.contains("robustmq_operator_reconcile_duration_seconds"),
        "{total}"
    );
    Ok(())
}

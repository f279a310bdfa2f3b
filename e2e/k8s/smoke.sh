#!/usr/bin/env bash
# Smoke test of the e2e control plane: builds/caches the tools if needed,
# starts the control plane, exercises the pieces the operator e2e tests rely
# on, stops everything and checks no process is left. Exits non-zero on any
# failure. The last line is "smoke: N passed, N failed".
# shellcheck disable=SC2016,SC2317 # bash -c snippets in single quotes; functions called indirectly
set -euo pipefail
# The whole script is one brace group, parsed before it runs: editing or
# updating this file while it runs cannot change what the run does.
{

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CP="$HERE/control-plane.sh"

PASSED=0
FAILED=0
log() { printf '[smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

OWN_STATE_DIR=0
if [[ -z "${K8S_STATE_DIR:-}" ]]; then
  K8S_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/robustmq-k8s-smoke.XXXXXX")"
  OWN_STATE_DIR=1
fi
export K8S_STATE_DIR
WORK="$(mktemp -d "${TMPDIR:-/tmp}/robustmq-k8s-smoke-work.XXXXXX")"
PIDS_SEEN=()
STOPPED=0

stop_and_verify() {
  # Remember every recorded pid, stop, then prove none of them is alive.
  local f pid alive=0
  for f in "$K8S_STATE_DIR"/pids/*.pid; do
    [[ -f "$f" ]] && PIDS_SEEN+=("$(basename "$f" .pid)=$(cat "$f")")
  done
  "$CP" stop || return 1
  STOPPED=1
  for entry in "${PIDS_SEEN[@]}"; do
    pid="${entry#*=}"
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$K8S_STATE_DIR"; then
      log "still alive after stop: $entry"; alive=1
    fi
  done
  [[ $alive -eq 0 ]] || return 1
  log "stopped; none of ${#PIDS_SEEN[@]} recorded pids (${PIDS_SEEN[*]}) is alive"
  [[ -z "$(ls -A "$K8S_STATE_DIR/pids" 2>/dev/null)" ]]
}

finish() {
  local rc=$?
  if [[ $STOPPED -eq 0 && -d "$K8S_STATE_DIR/pids" ]]; then
    if stop_and_verify; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); rc=1; fi
  fi
  [[ $rc -ne 0 && $FAILED -eq 0 ]] && FAILED=1
  rm -rf "$WORK"
  if [[ $rc -eq 0 && $OWN_STATE_DIR -eq 1 && -z "${K8S_KEEP_STATE:-}" ]]; then
    rm -rf "$K8S_STATE_DIR"
  else
    log "state and logs kept in $K8S_STATE_DIR"
  fi
  echo "smoke: $PASSED passed, $FAILED failed"
  exit "$rc"
}
trap finish EXIT

# check DESCRIPTION CMD...: one counted assertion; the first failure ends the run.
check() {
  local what="$1"; shift
  if "$@"; then
    PASSED=$((PASSED + 1)); log "ok: $what"
  else
    FAILED=$((FAILED + 1)); log "FAILED: $what"; exit 1
  fi
}

# retry SECONDS CMD...: bounded polling (every second, at most SECONDS tries).
retry() {
  local n="$1" i; shift
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  "$@"   # one last time, showing its output
}

T0=$(date +%s)
BIN="$("$HERE/install-tools.sh")"
log "tools ready in $(( $(date +%s) - T0 ))s: $BIN"

T0=$(date +%s)
# The watchdog stops the control plane should this script be killed.
CP_ENV="$(K8S_WATCH_PID=$$ "$CP" start)"   # a failed start ends the run here
eval "$CP_ENV"
log "control plane started in $(( $(date +%s) - T0 ))s"
export PATH="$K8S_BIN_DIR:$PATH"
check "KUBECONFIG points into the state dir" test "$KUBECONFIG" = "$K8S_STATE_DIR/kubeconfig"
check "all components and the watchdog are running" "$CP" status
check "every component listens, and only on 127.0.0.1" bash -c '
  n=0
  for f in "$0"/pids/*.pid; do
    [[ "$f" == */watchdog.pid ]] && continue
    pid=$(cat "$f")
    addrs=$(ss -Hltnp | grep "pid=$pid," | awk "{print \$4}")
    [[ -n "$addrs" ]] || { echo "$(basename "$f" .pid): no listening socket" >&2; exit 1; }
    if grep -v "^127\.0\.0\.1:" <<<"$addrs"; then echo "not loopback: $f" >&2; exit 1; fi
    n=$((n + 1))
  done
  [[ $n -ge 5 ]]' "$K8S_STATE_DIR"
check "kubectl version talks to $K8S_API_SERVER" kubectl version
kubectl get nodes -o wide >&2

NS=smoke
kubectl create namespace "$NS" >/dev/null
cat >"$WORK/workloads.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: smoke}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /readyz, port: 8080}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: smoke}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: smoke}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: smoke}
spec:
  serviceName: db
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: example.invalid/db:1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
# A class of our own, provisioned by kwok because of its provisioner.
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: kwok.x-k8s.io/volume
volumeBindingMode: Immediate
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: fast-claim, namespace: smoke}
spec:
  storageClassName: fast
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
# No such StorageClass: nothing provisions this claim, it stays Pending.
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: orphan-claim, namespace: smoke}
spec:
  storageClassName: no-such-class
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
EOF
check "apply Deployment, PDB, StatefulSet, StorageClass, PVCs" kubectl apply -f "$WORK/workloads.yaml"

check "Deployment web rolls out (2/2 available)" \
  kubectl -n "$NS" rollout status deployment/web --timeout=120s
check "web pods are Ready" \
  kubectl -n "$NS" wait pod -l app=web --for=condition=Ready --timeout=60s
web_phases() { kubectl -n "$NS" get pod -l app=web -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}'; }
check "both web pods are Running" \
  test "$(web_phases | grep -c '^Running$')" -eq 2
check "web pods are scheduled onto kwok nodes" bash -c \
  '[[ "$(kubectl -n smoke get pod -l app=web -o jsonpath="{range .items[*]}{.spec.nodeName}{\"\n\"}{end}" | grep -c "^kwok-node-")" -eq 2 ]]'
check "pods get a projected service-account token volume" bash -c \
  'kubectl -n smoke get pod -l app=web -o jsonpath="{.items[0].spec.volumes[*].name}" | grep -q kube-api-access'
check "PDB sees 2 healthy pods, allows 1 disruption" retry 60 bash -c \
  '[[ "$(kubectl -n smoke get pdb web -o jsonpath="{.status.currentHealthy}/{.status.disruptionsAllowed}")" == 2/1 ]]'

check "StatefulSet PVCs (default StorageClass kwok-volume) become Bound" retry 90 bash -c \
  '[[ "$(kubectl -n smoke get pvc data-db-0 data-db-1 -o jsonpath="{range .items[*]}{.status.phase}{\"\n\"}{end}" | grep -c Bound)" -eq 2 ]]'
check "StatefulSet db rolls out (2/2 ready)" \
  kubectl -n "$NS" rollout status statefulset/db --timeout=120s
check "PVC of StorageClass 'fast' (provisioner kwok.x-k8s.io/volume) becomes Bound" retry 60 bash -c \
  '[[ "$(kubectl -n smoke get pvc fast-claim -o jsonpath="{.status.phase}")" == Bound ]]'
sleep 3
check "PVC of a missing StorageClass stays Pending" bash -c \
  '[[ "$(kubectl -n smoke get pvc orphan-claim -o jsonpath="{.status.phase}")" == Pending ]]'
kubectl -n "$NS" get pods,pvc -o wide >&2
kubectl get pv >&2

check "TokenRequest works for a ServiceAccount" bash -c \
  '[[ -n "$(kubectl -n smoke create token default --duration=10m)" ]]'
check "RBAC denies an unprivileged ServiceAccount" bash -c \
  '[[ "$(kubectl auth can-i list secrets --as=system:serviceaccount:smoke:default -n smoke 2>/dev/null || true)" == no ]]'
check "the API server rejects an invalid object (schema validation)" bash -c \
  '! kubectl -n smoke create deployment bad --image=x --replicas=-1 2>/dev/null'

# CRDs: structural schema + CEL rules, as the operator's CRDs use them.
cat >"$WORK/crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.robustmq.io}
spec:
  group: smoke.robustmq.io
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [engine, partitions]
            properties:
              engine: {type: string, enum: [memory, segment, object]}
              partitions: {type: integer, minimum: 1}
            x-kubernetes-validations:
            - rule: self.engine == oldSelf.engine
              message: engine is immutable
            - rule: self.partitions >= oldSelf.partitions
              message: partitions may only grow
EOF
check "apply a CRD with CEL rules" kubectl apply -f "$WORK/crd.yaml"
check "CRD becomes Established" kubectl wait crd/widgets.smoke.robustmq.io --for=condition=Established --timeout=60s
# widget_apply ENGINE PARTITIONS: apply Widget smoke/w; prints kubectl's output.
widget_apply() {
  printf 'apiVersion: smoke.robustmq.io/v1alpha1\nkind: Widget\nmetadata: {name: w, namespace: smoke}\nspec: {engine: %s, partitions: %s}\n' "$1" "$2" \
    | kubectl apply -f - 2>&1
}
rejected_with() { # rejected_with MESSAGE ENGINE PARTITIONS
  local out
  if out="$(widget_apply "$2" "$3")"; then log "unexpectedly accepted: $out"; return 1; fi
  grep -qF -- "$1" <<<"$out" || { log "rejected, but not with '$1': $out"; return 1; }
}
check "create a valid custom resource" retry 30 widget_apply memory 2
check "schema rejects an invalid custom resource, with the schema's message" \
  rejected_with 'Unsupported value: "bogus"' bogus 2
check "schema rejects partitions: 0, with the schema's message" \
  rejected_with 'should be greater than or equal to 1' memory 0
check "CEL rule rejects changing the engine, with its message" \
  rejected_with 'engine is immutable' segment 2
check "CEL rule rejects shrinking partitions, with its message" \
  rejected_with 'partitions may only grow' memory 1
check "growing partitions is accepted" widget_apply memory 3

# Scale down: kwok deletes pods whose deletionTimestamp is set.
check "scale web to 1" kubectl -n "$NS" scale deployment/web --replicas=1
check "scaled-down pod goes away" retry 60 bash -c \
  '[[ "$(kubectl -n smoke get pod -l app=web --no-headers | wc -l)" -eq 1 ]]'

# Garbage collection: deleting the Deployment removes its ReplicaSets and Pods.
check "delete Deployment (background propagation)" \
  kubectl -n "$NS" delete deployment web --cascade=background --wait=false
check "GC removes the ReplicaSets and Pods of the Deployment" retry 90 bash -c \
  '[[ -z "$(kubectl -n smoke get rs,pod -l app=web --no-headers 2>/dev/null)" ]]'
# Deleting a PVC releases (and, reclaimPolicy Delete, deletes) its fake PV.
fast_pv="$(kubectl -n "$NS" get pvc fast-claim -o jsonpath='{.spec.volumeName}')"
check "delete PVC fast-claim" kubectl -n "$NS" delete pvc fast-claim --wait=true --timeout=60s
check "its PV $fast_pv is deleted (reclaimPolicy Delete)" retry 60 bash -c \
  "! kubectl get pv '$fast_pv' >/dev/null 2>&1"

# helm: version, template of a trivial chart, and a real install/uninstall.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data"
check "helm version" helm version
mkdir -p "$WORK/chart/templates"
cat >"$WORK/chart/Chart.yaml" <<'EOF'
apiVersion: v2
name: smoke
version: 0.1.0
EOF
cat >"$WORK/chart/values.yaml" <<'EOF'
greeting: hello
EOF
cat >"$WORK/chart/templates/configmap.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cm
data:
  greeting: {{ .Values.greeting | quote }}
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
EOF
check "helm lint" helm lint "$WORK/chart"
check "helm template renders the chart" bash -c \
  'helm template demo "$0" --set greeting=hi | grep -q "greeting: \"hi\""' "$WORK/chart"
check "helm install into the cluster" helm install demo "$WORK/chart" -n "$NS" --wait --timeout 60s
check "the release's ConfigMap exists and reports the server version" bash -c \
  '[[ "$(kubectl -n smoke get configmap demo-cm -o jsonpath="{.data.kube}")" == v1.* ]]'
check "helm uninstall" helm uninstall demo -n "$NS" --wait --timeout 60s

check "stop the control plane; no recorded pid is left" stop_and_verify
exit
}

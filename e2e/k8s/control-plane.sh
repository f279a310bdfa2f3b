#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for the e2e tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, plus
# fake Nodes that kwok keeps Ready (so scheduled Pods become Running+Ready) and
# a default StorageClass whose PVCs kwok "provisions" (binds to a fake PV).
#
# Usage:
#   control-plane.sh start    start everything in $K8S_STATE_DIR (default: a new
#                             mktemp dir); prints `export ...` lines on stdout
#                             (eval-able), logs progress on stderr
#   control-plane.sh stop     stop exactly the pids recorded in $K8S_STATE_DIR/pids
#   control-plane.sh env      print the `export ...` lines again
#   control-plane.sh status   list recorded pids and whether they are alive
#
# Environment:
#   K8S_STATE_DIR       state dir (certs, kubeconfigs, etcd data, logs, pids)
#   K8S_FAKE_NODES      number of fake kwok Nodes (default 3)
#   K8S_START_TIMEOUT   seconds to wait for each component (default 120)
#   K8S_WATCH_PID       if set, a watchdog stops the control plane when this pid
#                       exits (e.g. the test harness), so a crash leaks nothing
#   ROBUSTMQ_K8S_BIN    bin dir with the binaries (default: install-tools.sh's)
#   K8S_SKIP_INSTALL=1  do not run install-tools.sh; fail if binaries are missing
# shellcheck disable=SC2016,SC2317 # bash -c snippets in single quotes; functions called indirectly
set -euo pipefail
# The whole script is one brace group, parsed before it runs: editing or
# updating this file while it runs cannot change what the run does.
{

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

BIN="${ROBUSTMQ_K8S_BIN:-$ROBUSTMQ_TOOLS_BIN}"
FAKE_NODES="${K8S_FAKE_NODES:-3}"
TIMEOUT="${K8S_START_TIMEOUT:-120}"
SERVICE_CIDR="10.96.0.0/16"   # API objects only: nothing here routes or dials it
POD_CIDR="10.244.0.1/16"      # kwok writes pod IPs from here; never dialled
# Component start order; stop goes in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { printf '[control-plane %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ pids ----
pid_file() { echo "$S/pids/$1.pid"; }

# Our process iff it is alive and its command line mentions the state dir
# (every component gets paths inside it), so a recycled pid is never killed.
is_ours() {
  local pid="$1"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$S" || return 1
  # zombies are not "alive"
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

stop_pid() { # stop_pid NAME
  local name="$1" f pid i
  f="$(pid_file "$name")"
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if is_ours "$pid"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do is_ours "$pid" || break; sleep 0.1; done
    if is_ours "$pid"; then
      log "$name (pid $pid) ignored SIGTERM for 10s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do is_ours "$pid" || break; sleep 0.1; done
    fi
    is_ours "$pid" && { log "$name (pid $pid) is still alive"; return 1; }
  fi
  rm -f "$f"
}

cmd_stop() {
  local rc=0 name i
  # The watchdog first (unless we are the watchdog), then components in reverse.
  if [[ "${K8S_IN_WATCHDOG:-}" != 1 ]]; then stop_pid watchdog || rc=1; fi
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    name="${COMPONENTS[$i]}"
    stop_pid "$name" || rc=1
  done
  if [[ "${K8S_IN_WATCHDOG:-}" == 1 ]]; then rm -f "$(pid_file watchdog)"; fi
  return "$rc"
}

cmd_status() {
  local name pid rc=0
  for name in "${COMPONENTS[@]}" watchdog; do
    [[ -f "$(pid_file "$name")" ]] || { echo "$name: not running"; continue; }
    pid="$(cat "$(pid_file "$name")")"
    if is_ours "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: dead (pid $pid)"; rc=1; fi
  done
  return "$rc"
}

cmd_env() {
  [[ -f "$S/env" ]] || die "$S/env not found: control plane not started?"
  local k v
  while IFS='=' read -r k v; do
    [[ -n "$k" ]] && printf 'export %s=%q\n' "$k" "$v"
  done <"$S/env"
}

# ----------------------------------------------------------------- start ----
free_ports() { # free_ports N -> N distinct currently-free loopback ports
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

# launch NAME CMD...: run in the background, log to $S/logs/NAME.log, record pid.
launch() {
  local name="$1"; shift
  log "starting $name"
  "$@" </dev/null >"$S/logs/$name.log" 2>&1 &
  local pid=$! i
  echo "$pid" >"$(pid_file "$name")"
  # Until the forked shell has exec'd the command, /proc/PID/cmdline is this
  # script's and is_ours would say no: wait (bounded) for the exec.
  for ((i = 0; i < 100; i++)); do
    is_ours "$pid" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  is_ours "$pid" || { log "$name (pid $pid) did not start"; tail -n 30 "$S/logs/$name.log" >&2; return 1; }
}

# wait_until NAME DESCRIPTION CMD...: poll CMD (each try capped at 10s) every
# 0.5s until it succeeds, for at most $TIMEOUT seconds and 4*$TIMEOUT tries;
# fail early if NAME's process died.
wait_until() {
  local name="$1" what="$2" i pid start deadline; shift 2
  pid="$(cat "$(pid_file "$name")")"
  start=$(date +%s); deadline=$((start + TIMEOUT))
  for ((i = 0; i < TIMEOUT * 4; i++)); do
    if timeout 10 "$@" >/dev/null 2>&1; then
      log "$name: $what (after $(( $(date +%s) - start ))s)"; return 0
    fi
    if ! is_ours "$pid"; then
      log "$name (pid $pid) exited; last log lines:"; tail -n 30 "$S/logs/$name.log" >&2 || true
      return 1
    fi
    (( $(date +%s) < deadline )) || break
    sleep 0.5
  done
  log "$name: timed out after ${TIMEOUT}s waiting for: $what; last log lines:"
  tail -n 30 "$S/logs/$name.log" >&2 || true
  return 1
}

gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

# sign_cert NAME SUBJECT EXTENSIONS: key + cert signed by the CA.
sign_cert() {
  local name="$1" subj="$2" ext="$3" p="$S/pki"
  gen_key "$p/$name.key"
  openssl req -new -key "$p/$name.key" -subj "$subj" -out "$p/$name.csr" 2>/dev/null
  printf '%b\n' "$ext" >"$p/$name.ext"
  openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 30 -sha256 -extfile "$p/$name.ext" -out "$p/$name.crt" 2>/dev/null
  rm -f "$p/$name.csr"
}

gen_pki() {
  local p="$S/pki"
  mkdir -p "$p"; chmod 700 "$p"
  gen_key "$p/ca.key"
  openssl req -x509 -new -key "$p/ca.key" -subj "/CN=robustmq-e2e-ca" -days 30 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$p/ca.crt" 2>/dev/null
  local client="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth"
  sign_cert apiserver "/CN=kube-apiserver" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign_cert admin "/O=system:masters/CN=robustmq-e2e-admin" "$client"
  sign_cert controller-manager "/CN=system:kube-controller-manager" "$client"
  sign_cert scheduler "/CN=system:kube-scheduler" "$client"
  sign_cert kwok "/O=system:masters/CN=kwok-controller" "$client"
  # Service-account token signing key pair.
  gen_key "$p/sa.key"
  openssl pkey -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

write_kubeconfig() { # write_kubeconfig FILE CERTNAME USER
  local file="$1" cert="$2" user="$3" p="$S/pki"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: robustmq-e2e
  cluster:
    server: $API_URL
    certificate-authority-data: $(base64 -w0 <"$p/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$p/$cert.crt")
    client-key-data: $(base64 -w0 <"$p/$cert.key")
contexts:
- name: robustmq-e2e
  context:
    cluster: robustmq-e2e
    user: $user
    namespace: default
current-context: robustmq-e2e
EOF
  chmod 600 "$file"
}

bootstrap_objects() {
  # Default StorageClass served by kwok's volume stages (see kwok-stages.yaml).
  cat <<'EOF'
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kwok-volume
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kwok.x-k8s.io/volume
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
EOF
  local i
  for ((i = 0; i < FAKE_NODES; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    node-role.kubernetes.io/agent: ""
    topology.kubernetes.io/zone: zone-$i
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
EOF
  done
}

cmd_start() {
  [[ "$FAKE_NODES" =~ ^[0-9]+$ && "$FAKE_NODES" -ge 1 ]] || die "K8S_FAKE_NODES must be >= 1"
  if [[ -f "$S/env" ]] && cmd_status >/dev/null 2>&1; then
    die "a control plane is already running in $S (stop it first)"
  fi
  # A state dir is for one run: data, certs and logs of an earlier run go.
  rm -rf "$S/etcd-data" "$S/pki" "$S/logs" "$S/pids" "$S/kwok-home" "$S/env" \
    "$S"/*-certs "$S"/*.kubeconfig "$S/kubeconfig" "$S/bootstrap.yaml"
  for d in logs pids; do mkdir -p "$S/$d"; done

  if [[ "${K8S_SKIP_INSTALL:-}" != 1 && -z "${ROBUSTMQ_K8S_BIN:-}" ]]; then
    "$HERE/install-tools.sh" >/dev/null
  fi
  local b
  for b in "${ROBUSTMQ_K8S_BINARIES[@]}"; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b missing: run e2e/k8s/install-tools.sh"
  done

  # From here on, any failure stops whatever was started.
  trap 'rc=$?; if [[ $rc -ne 0 ]]; then log "start failed (rc=$rc), stopping what was started; logs in $S/logs"; cmd_stop || true; fi' EXIT

  local ports
  read -r -a ports <<<"$(free_ports 6)"
  local etcd_port="${ports[0]}" etcd_peer="${ports[1]}" api_port="${ports[2]}"
  local kcm_port="${ports[3]}" sched_port="${ports[4]}" kwok_port="${ports[5]}"
  API_URL="https://127.0.0.1:$api_port"
  local etcd_url="http://127.0.0.1:$etcd_port" p="$S/pki"
  log "state dir $S; apiserver $API_URL; etcd $etcd_url"

  gen_pki
  write_kubeconfig "$S/kubeconfig" admin robustmq-e2e-admin
  write_kubeconfig "$S/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$S/scheduler.kubeconfig" scheduler system:kube-scheduler
  write_kubeconfig "$S/kwok.kubeconfig" kwok kwok-controller

  # ---- etcd
  launch etcd "$BIN/etcd" --name e2e --data-dir "$S/etcd-data" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "e2e=http://127.0.0.1:$etcd_peer" --initial-cluster-state new \
    --unsafe-no-fsync --quota-backend-bytes 2147483648 --log-level warn
  wait_until etcd "healthy" curl -fsS "$etcd_url/health"

  # ---- kube-apiserver (default admission plugins, RBAC+Node authorization).
  # WatchList=false: etcd 3.5.1 lacks progress notify, so watch-list requests
  # (sendInitialEvents) would fail inside the stream and client-go 0.35+
  # clients such as kwok would re-list with backoff forever; refused up front
  # (422), they fall back to LIST+WATCH once.
  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "$etcd_url" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$S/apiserver-certs" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --authorization-mode RBAC,Node \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$p/sa.pub" \
    --service-account-signing-key-file "$p/sa.key" \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --feature-gates WatchList=false \
    --profiling=false \
    --v=1
  wait_until kube-apiserver "ready (/readyz)" \
    curl -fsS --cacert "$p/ca.crt" --cert "$p/admin.crt" --key "$p/admin.key" "$API_URL/readyz"

  # ---- kube-controller-manager
  launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$S/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$S/controller-manager-certs" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$p/sa.key" \
    --root-ca-file "$p/ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --profiling=false \
    --v=1
  # ---- kube-scheduler
  launch kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$S/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --cert-dir "$S/scheduler-certs" \
    --leader-elect=false --profiling=false --v=1
  # ---- kwok (HOME points into the state dir so no ~/.kwok/kwok.yaml is picked up)
  mkdir -p "$S/kwok-home"
  launch kwok env HOME="$S/kwok-home" "$BIN/kwok" \
    --config "$HERE/kwok-stages.yaml" \
    --kubeconfig "$S/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "127.0.0.1:$kwok_port" \
    --node-ip 127.0.0.1 --node-port "$kwok_port" \
    --cidr "$POD_CIDR" \
    --node-lease-duration-seconds 40

  wait_until kube-controller-manager "healthy" curl -fsSk "https://127.0.0.1:$kcm_port/healthz"
  wait_until kube-scheduler "healthy" curl -fsSk "https://127.0.0.1:$sched_port/healthz"
  wait_until kwok "healthy" curl -fsS "http://127.0.0.1:$kwok_port/healthz"

  local kc=("$BIN/kubectl" --kubeconfig "$S/kubeconfig")
  bootstrap_objects >"$S/bootstrap.yaml"
  wait_until kube-apiserver "bootstrap objects applied" "${kc[@]}" apply -f "$S/bootstrap.yaml"
  wait_until kwok "$FAKE_NODES fake node(s) Ready" \
    "${kc[@]}" wait --for=condition=Ready node -l type=kwok --timeout=2s
  wait_until kube-controller-manager "default ServiceAccount exists" \
    "${kc[@]}" -n default get serviceaccount default

  {
    echo "K8S_STATE_DIR=$S"
    echo "KUBECONFIG=$S/kubeconfig"
    echo "K8S_API_SERVER=$API_URL"
    echo "K8S_ETCD_ENDPOINT=$etcd_url"
    echo "K8S_BIN_DIR=$BIN"
    echo "K8S_CA_FILE=$p/ca.crt"
    echo "K8S_FAKE_NODES=$FAKE_NODES"
  } >"$S/env.tmp"
  mv -f "$S/env.tmp" "$S/env"

  if [[ -n "${K8S_WATCH_PID:-}" ]]; then
    # Watchdog: stops the control plane once K8S_WATCH_PID is gone. Its command
    # line names the state dir, so stop can recognise it.
    K8S_IN_WATCHDOG=1 nohup bash -c '
      while kill -0 "$1" 2>/dev/null && [[ -f "$2/env" ]]; do sleep 1; done
      [[ -f "$2/env" ]] && K8S_STATE_DIR="$2" "$3" stop' \
      robustmq-k8s-watchdog "$K8S_WATCH_PID" "$S" "$SELF" \
      </dev/null >"$S/logs/watchdog.log" 2>&1 &
    local wpid=$! i
    echo "$wpid" >"$(pid_file watchdog)"
    for ((i = 0; i < 100; i++)); do is_ours "$wpid" && break; sleep 0.05; done
  fi
  trap - EXIT
  log "control plane ready: KUBECONFIG=$S/kubeconfig"
  cmd_env
}

# ------------------------------------------------------------------ main ----
cmd="${1:-}"
case "$cmd" in
  start)
    if [[ -z "${K8S_STATE_DIR:-}" ]]; then
      K8S_STATE_DIR="$(mktemp -d "${TMPDIR:-/tmp}/robustmq-k8s.XXXXXX")"
    fi
    mkdir -p "$K8S_STATE_DIR"
    S="$(cd "$K8S_STATE_DIR" && pwd)"
    cmd_start ;;
  stop|env|status)
    [[ -n "${K8S_STATE_DIR:-}" ]] || die "K8S_STATE_DIR must be set for '$cmd'"
    [[ -d "$K8S_STATE_DIR" ]] || die "no such state dir: $K8S_STATE_DIR"
    S="$(cd "$K8S_STATE_DIR" && pwd)"
    "cmd_$cmd"
    if [[ "$cmd" == stop ]]; then rm -f "$S/env"; log "stopped"; fi ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
exit
}

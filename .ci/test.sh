#!/usr/bin/env bash
# The whole RobustMQ test suite: formatting, lints, unit and integration tests, then the
# end-to-end tests that run the real binaries on loopback with real third-party clients
# (paho-mqtt, mosquitto clients, the Apache Kafka Java client and tools, confluent-kafka,
# kafka-python, kcat, franz-go) and a real Kubernetes control plane.
#
# It installs what the tests need by itself, caching heavy tool builds under
# ${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}, so it works on a fresh machine:
# the first run builds the Kubernetes binaries from their Go modules (~25 min on 2 cores,
# in the background, niced, while Rust compiles); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# In this script a missing tool is a failure, never a skipped test.
export ROBUSTMQ_REQUIRE_TOOLS=1

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)"; }

mkdir -p target
tools_log=target/k8s-tools.log
step "Kubernetes tools: building or reusing the cache in the background (log: $tools_log)"
bash e2e/k8s/install-tools.sh >"$tools_log" 2>&1 &
tools_pid=$!
# Stop the background build by its pid if this script exits early.
trap 'kill "$tools_pid" 2>/dev/null || true' EXIT

step "MQTT and Kafka clients (mosquitto-clients, paho-mqtt, kafka-python, confluent-kafka, kcat, Apache Kafka jars, franz-go)"
bash e2e/clients/install.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "build every binary (the e2e tests run them)"
cargo build --workspace --bins

step "unit and integration tests"
cargo test --workspace --exclude e2e

step "waiting for the Kubernetes tools"
if ! wait "$tools_pid"; then
    tail -40 "$tools_log"
    echo "building the Kubernetes tools failed (full log: $tools_log)" >&2
    exit 1
fi
trap - EXIT
tail -3 "$tools_log"

step "Kubernetes control plane smoke check (etcd, apiserver, controller-manager, scheduler, kwok, helm)"
bash e2e/k8s/smoke.sh

step "end-to-end tests (real processes, one scenario at a time)"
cargo test -p e2e -- --test-threads=1

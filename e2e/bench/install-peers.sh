#!/usr/bin/env bash
# Installs the brokers the MQTT benchmark compares RobustMQ with (idempotent, cached):
# - mosquitto from Debian (apt-get; needs root, as in CI). The bench starts its own
#   mosquitto with its own config on a free loopback port; a system service, if the
#   package starts one, is not used.
# - rumqttd from crates.io, built with its own Cargo.lock (--locked) into
#   $ROBUSTMQ_TOOLS_DIR/rumqttd (default ~/.cache/robustmq-tools); skipped when the
#   binary is already there at the pinned version.
# RobustMQ itself is built from this tree: cargo build --release -p broker --bin robustmq
set -euo pipefail

RUMQTTD_VERSION="0.20.0"
# rumqttd 0.20.0's lock has metrics 0.22.1, which current rustc rejects (E0521, a
# soundness fix); 0.22.4 is the same API with that fixed. Only metrics is bumped (cargo
# moves ahash and zerocopy along, which 0.22.4 needs); the rest of the lock is kept.
METRICS_VERSION="0.22.4"

tools_dir="${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}"
rumqttd_root="$tools_dir/rumqttd"
rumqttd_bin="$rumqttd_root/bin/rumqttd"

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-peers.sh: mosquitto missing and not root; run: sudo apt-get install -y mosquitto" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mosquitto >/dev/null
fi

installed_version() {
    [ -x "$rumqttd_bin" ] && "$rumqttd_bin" --version 2>/dev/null | awk '{print $2}'
}

if [ "$(installed_version || true)" != "$RUMQTTD_VERSION" ]; then
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # Fetch the published crate (with its Cargo.lock) through cargo, then build a copy
    # of it with the one lock entry above bumped.
    mkdir -p "$work/fetch/src"
    printf '[package]\nname = "fetch-rumqttd"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nrumqttd = "=%s"\n' \
        "$RUMQTTD_VERSION" >"$work/fetch/Cargo.toml"
    touch "$work/fetch/src/lib.rs"
    manifest="$(cargo metadata --format-version 1 --manifest-path "$work/fetch/Cargo.toml" |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "rumqttd"))')"
    cp -r "$(dirname "$manifest")" "$work/rumqttd"
    chmod -R u+w "$work/rumqttd"
    cargo update --manifest-path "$work/rumqttd/Cargo.toml" -p metrics@0.22.1 --precise "$METRICS_VERSION"
    mkdir -p "$rumqttd_root"
    cargo install --path "$work/rumqttd" --locked --root "$rumqttd_root"
fi

mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
echo "mosquitto: $mosquitto_bin ($("$mosquitto_bin" -h 2>/dev/null | head -1 || true))"
echo "rumqttd: $rumqttd_bin ($("$rumqttd_bin" --version))"

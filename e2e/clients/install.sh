#!/usr/bin/env bash
# Installs the third-party MQTT clients the broker e2e tests drive (idempotent):
# - mosquitto_pub / mosquitto_sub from Debian (apt-get; needs root, as in CI),
# - paho-mqtt from PyPI into a venv under $ROBUSTMQ_TOOLS_DIR (default ~/.cache/robustmq-tools).
# The tests look for the venv at "$ROBUSTMQ_TOOLS_DIR/venv/bin/python".
set -euo pipefail

tools_dir="${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}"
venv="$tools_dir/venv"

if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: mosquitto-clients missing and not root; run: sudo apt-get install -y mosquitto-clients" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mosquitto-clients >/dev/null
fi

if ! "$venv/bin/python" -c 'import paho.mqtt.client' >/dev/null 2>&1; then
    mkdir -p "$tools_dir"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3'
fi

echo "mosquitto_pub: $(command -v mosquitto_pub)"
echo "paho-mqtt: $("$venv/bin/python" -c 'import paho.mqtt; print(paho.mqtt.__version__)') in $venv"

#!/usr/bin/env bash
# Installs the third-party clients the broker e2e tests and the benchmark drive (idempotent;
# everything cached under $ROBUSTMQ_TOOLS_DIR, default ~/.cache/robustmq-tools):
# - MQTT: mosquitto_pub / mosquitto_sub from Debian; paho-mqtt from PyPI into a venv.
# - Kafka: kafka-python and confluent-kafka (librdkafka 2.x wheels) into the same venv;
#   kcat from Debian; the Apache Kafka jars (clients, tools, the broker) from Maven Central
#   into $ROBUSTMQ_TOOLS_DIR/kafka-<version>/libs; franz-go's client built from
#   e2e/clients/franz into $ROBUSTMQ_TOOLS_DIR/bin/franz-client.
# Debian packages need root (as in CI); the rest installs as any user.
# The tests look for: $ROBUSTMQ_TOOLS_DIR/venv/bin/python, kcat (or kafkacat) on PATH,
# $ROBUSTMQ_TOOLS_DIR/kafka-<version>/libs and $ROBUSTMQ_TOOLS_DIR/bin/franz-client.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
tools_dir="${ROBUSTMQ_TOOLS_DIR:-$HOME/.cache/robustmq-tools}"
venv="$tools_dir/venv"
mkdir -p "$tools_dir/bin"

# Pinned PyPI packages. python-snappy (over cramjam), lz4 and zstandard give kafka-python
# its codecs.
python_pins=(
    'paho-mqtt==2.2.0'
    'kafka-python==3.0.12'
    'confluent-kafka==2.16.1'
    'python-snappy==0.7.3'
    'cramjam==2.14.0'
    'lz4==4.4.5'
    'zstandard==0.25.0'
)

apt_updated=
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "install.sh: Debian packages missing and not root; run: sudo apt-get install -y $*" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    apt-get install -y -qq "$@" >/dev/null
}

# Tools from Debian.
if ! command -v mosquitto_pub >/dev/null 2>&1 || ! command -v mosquitto_sub >/dev/null 2>&1; then
    apt_install mosquitto-clients
fi
if ! command -v kcat >/dev/null 2>&1 && ! command -v kafkacat >/dev/null 2>&1; then
    # Debian 12 ships `kcat` (with `kafkacat` as a transitional name); older releases only
    # `kafkacat`.
    apt_install kcat 2>/dev/null || apt_install kafkacat
fi
for tool in mvn go java; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case "$tool" in
            mvn) apt_install maven ;;
            java) apt_install openjdk-17-jre-headless ;;
            go) echo "install.sh: go is missing (needed to build franz-client)" >&2; exit 1 ;;
        esac
    fi
done

# Python clients: reinstalled only when the pins change.
pins="${python_pins[*]}"
if [ "$(cat "$venv/.robustmq-pins" 2>/dev/null)" != "$pins" ] || [ ! -x "$venv/bin/python" ]; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${python_pins[@]}"
    echo "$pins" >"$venv/.robustmq-pins"
fi

# Apache Kafka jars: copied again only when the pom changes.
pom="$here/kafka-java/pom.xml"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
kafka_home="$tools_dir/kafka-$kafka_version"
pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"
if [ "$(cat "$kafka_home/.pom.sha256" 2>/dev/null)" != "$pom_sum" ]; then
    rm -rf "$kafka_home/libs"
    mkdir -p "$kafka_home"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$kafka_home/libs"
    echo "$pom_sum" >"$kafka_home/.pom.sha256"
fi

# franz-go client: rebuilt when its source changes.
franz_src="$here/franz"
franz_sum="$(cat "$franz_src/go.mod" "$franz_src/go.sum" "$franz_src"/*.go | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$tools_dir/bin/franz-client.sha256" 2>/dev/null)" != "$franz_sum" ] || [ ! -x "$tools_dir/bin/franz-client" ]; then
    (cd "$franz_src" && go build -trimpath -o "$tools_dir/bin/franz-client" .)
    echo "$franz_sum" >"$tools_dir/bin/franz-client.sha256"
fi

kcat_bin="$(command -v kcat || command -v kafkacat)"
echo "mosquitto_pub: $(command -v mosquitto_pub) ($(mosquitto_pub --help | sed -n 's/^mosquitto_pub version \([^ ]*\).*/\1/p'))"
echo "paho-mqtt: $("$venv/bin/python" -c 'import paho.mqtt; print(paho.mqtt.__version__)') in $venv"
echo "kafka-python: $("$venv/bin/python" -c 'import kafka; print(kafka.__version__)')"
echo "confluent-kafka: $("$venv/bin/python" -c 'import confluent_kafka as c; print(c.__version__, "librdkafka", c.libversion()[0])')"
echo "kcat: $kcat_bin ($("$kcat_bin" -V 2>&1 | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ ]*\).*/\1, librdkafka \2/p'))"
echo "Apache Kafka: $kafka_version in $kafka_home/libs ($(ls "$kafka_home/libs" | wc -l) jars; java $(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p'))"
echo "franz-client: $("$tools_dir/bin/franz-client" -version) in $tools_dir/bin"

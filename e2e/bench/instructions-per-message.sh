#!/usr/bin/env bash
# Instructions a broker executes per relayed MQTT message, counted by callgrind: repeatable
# for the same binary and inputs whatever else the machine is doing (wall-clock figures on a
# shared 2-core machine are not). One mosquitto_pub -l publisher and one mosquitto_sub
# subscriber on one topic, QoS as given; the broker runs twice under callgrind, relaying
# SMALL and then LARGE messages, and the difference of the two totals divided by
# LARGE - SMALL removes start-up and shutdown.
#
#   e2e/bench/instructions-per-message.sh [robustmq|mosquitto] [QOS] [SMALL] [LARGE]
#
# Needs valgrind, mosquitto and mosquitto-clients (Debian) and a release `robustmq`
# (ROBUSTMQ_BIN_DIR, default target/release). Binds 127.0.0.1 only; every process it starts
# is stopped by its pid.
set -euo pipefail
peer=${1:-robustmq}
qos=${2:-1}
small=${3:-2000}
large=${4:-10000}
bin_dir=${ROBUSTMQ_BIN_DIR:-target/release}
work=$(mktemp -d)
broker=""
cleanup() {
  if [ -n "$broker" ] && kill -0 "$broker" 2>/dev/null; then kill -KILL "$broker" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Prints the callgrind instruction total of one broker run relaying $1 messages.
one_run() {
  local n=$1 dir port out
  dir=$(mktemp -d "$work/run.XXXX")
  port=$(free_port)
  out=$dir/callgrind.out
  case $peer in
    robustmq)
      valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$bin_dir/robustmq" standalone --data-dir "$dir/data" --mqtt-addr "127.0.0.1:$port" \
        --admin-addr 127.0.0.1:0 --meta-addr 127.0.0.1:0 --meta-admin-addr 127.0.0.1:0 \
        --journal-addr 127.0.0.1:0 --mqtt-ws-addr "" --kafka-addr "" >"$dir/log" 2>&1 &
      ;;
    mosquitto)
      printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\nset_tcp_nodelay true\nuser %s\n' \
        "$port" "$(id -un)" >"$dir/m.conf"
      valgrind --tool=callgrind --callgrind-out-file="$out" /usr/sbin/mosquitto -c "$dir/m.conf" >"$dir/log" 2>&1 &
      ;;
    *) echo "unknown peer $peer" >&2; exit 2 ;;
  esac
  broker=$!
  for _ in $(seq 1 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
    sleep 1
  done
  seq 1 "$n" | sed 's/$/-0123456789012345678901234567890123456789012345678901/' >"$dir/msgs"
  timeout 900 mosquitto_sub -h 127.0.0.1 -p "$port" -t bench/t -q "$qos" -C "$n" -W 600 >"$dir/got" &
  local sub=$!
  sleep 3
  timeout 900 mosquitto_pub -h 127.0.0.1 -p "$port" -t bench/t -q "$qos" -l <"$dir/msgs"
  wait "$sub" || true
  local got
  got=$(wc -l <"$dir/got")
  kill -TERM "$broker"
  wait "$broker" 2>/dev/null || true
  broker=""
  if [ "$got" -ne "$n" ]; then
    echo "$peer: the subscriber got $got of $n messages" >&2
    exit 1
  fi
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done=1}'
}

a=$(one_run "$small")
b=$(one_run "$large")
echo "$peer qos=$qos: $a instructions for $small messages, $b for $large: $(( (b - a) / (large - small) )) per message"

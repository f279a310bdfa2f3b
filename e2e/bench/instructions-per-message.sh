#!/usr/bin/env bash
# Instructions a broker executes per relayed MQTT message, counted by callgrind: repeatable
# for the same binary and inputs whatever else the machine is doing (wall-clock figures on a
# shared 2-core machine are not). One mosquitto_pub -l publisher and one mosquitto_sub
# subscriber on one topic, QoS as given. The broker runs under callgrind with instrumentation
# off; after a warm-up of WARMUP messages, it is switched on (callgrind_control)
# for N messages and off again, so start-up, warm-up and shutdown are not counted.
#
#   e2e/bench/instructions-per-message.sh [robustmq|mosquitto] [QOS] [N] [WARMUP]
#
# Needs valgrind, mosquitto and mosquitto-clients (Debian) and a release `robustmq`
# (ROBUSTMQ_BIN_DIR, default target/release). With CALLGRIND_OUT=FILE the callgrind output is
# kept there (`callgrind_annotate --inclusive=yes FILE` shows where the instructions go). Binds 127.0.0.1 only; every process it starts
# is stopped by its pid.
set -euo pipefail
peer=${1:-robustmq}
qos=${2:-1}
n=${3:-10000}
warmup=${4:-2000}
bin_dir=${ROBUSTMQ_BIN_DIR:-target/release}
work=$(mktemp -d)
broker=""
cleanup() {
  if [ -n "$broker" ] && kill -0 "$broker" 2>/dev/null; then kill -KILL "$broker" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Relays $1 messages from one publisher to one subscriber on bench/t.
relay() {
  local count=$1 dir=$2 port=$3
  seq 1 "$count" | sed 's/$/-0123456789012345678901234567890123456789012345678901/' >"$dir/msgs"
  timeout 900 mosquitto_sub -h 127.0.0.1 -p "$port" -t bench/t -q "$qos" -C "$count" -W 600 >"$dir/got" &
  local sub=$!
  sleep 2
  timeout 900 mosquitto_pub -h 127.0.0.1 -p "$port" -t bench/t -q "$qos" -l <"$dir/msgs"
  wait "$sub" || true
  local got
  got=$(wc -l <"$dir/got")
  if [ "$got" -ne "$count" ]; then
    echo "$peer: the subscriber got $got of $count messages" >&2
    exit 1
  fi
}

dir=$(mktemp -d "$work/run.XXXX")
port=$(free_port)
out=$dir/callgrind.out
case $peer in
  robustmq)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
      "$bin_dir/robustmq" standalone --data-dir "$dir/data" --mqtt-addr "127.0.0.1:$port" \
      --admin-addr 127.0.0.1:0 --meta-addr 127.0.0.1:0 --meta-admin-addr 127.0.0.1:0 \
      --journal-addr 127.0.0.1:0 --mqtt-ws-addr "" --kafka-addr "" >"$dir/log" 2>&1 &
    ;;
  mosquitto)
    # As the invoking user: callgrind_control cannot reach a process that changed users.
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\nset_tcp_nodelay true\nuser %s\n' \
      "$port" "$(id -un)" >"$dir/m.conf"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
      /usr/sbin/mosquitto -c "$dir/m.conf" >"$dir/log" 2>&1 &
    ;;
  *) echo "unknown peer $peer" >&2; exit 2 ;;
esac
broker=$!
for _ in $(seq 1 300); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
  sleep 1
done
relay "$warmup" "$dir" "$port"
timeout 120 callgrind_control -i on "$broker" >/dev/null 2>&1
relay "$n" "$dir" "$port"
timeout 120 callgrind_control -i off "$broker" >/dev/null 2>&1
kill -TERM "$broker"
wait "$broker" 2>/dev/null || true
broker=""
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",","",$1); print $1; done=1}')
if [ -n "${CALLGRIND_OUT:-}" ]; then cp "$out" "$CALLGRIND_OUT"; fi
echo "$peer qos=$qos: $total instructions for $n messages after $warmup warm-up: $(( total / n )) per message"

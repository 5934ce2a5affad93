#!/usr/bin/env bash
# Benchmarks tern-relay with tern-loadgen and, as the baseline a user might
# pick instead, mosquitto 2 (Debian package) with QoS 1 and persistence on,
# driven by Debian's mosquitto C clients with the same payload size.
#
# Usage: bench/relay-vs-mosquitto.sh [seconds-per-run]
# Needs: apt-get install -y mosquitto mosquitto-clients
set -euo pipefail

DURATION="${1:-10}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d)"
RELAY_PORT=47433
MQTT_PORT=18833
PAYLOAD=100
MQTT_MESSAGES=50000   # mosquitto_pub -l stops when its 16-bit message id wraps

cleanup() {
    [[ -n "${RELAY_PID:-}" ]] && kill "$RELAY_PID" 2>/dev/null || true
    [[ -n "${MQTT_PID:-}" ]] && kill "$MQTT_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release -p tern-relay -p tern-loadgen --bins >/dev/null)
RELAY="$TARGET/release/tern-relay"
LOADGEN="$TARGET/release/tern-loadgen"

rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

METRICS_PORT=49091
cat >"$WORK/relay.toml" <<CONF
metrics_listen = "127.0.0.1:$METRICS_PORT"
[limits]
requests_per_device_per_sec = 0
connections_per_ip_per_sec = 0
CONF

start_relay() {
    rm -rf "$WORK/relay"
    RUST_LOG=warn "$RELAY" serve --config "$WORK/relay.toml" --listen "127.0.0.1:$RELAY_PORT" \
        --data-dir "$WORK/relay" >"$WORK/relay.out" &
    RELAY_PID=$!
    for _ in $(seq 100); do
        grep -q fingerprint "$WORK/relay.out" 2>/dev/null && break
        sleep 0.1
    done
    FP="$(awk '/fingerprint/ {print $NF}' "$WORK/relay.out")"
}

commit_stats() {
    curl -s "127.0.0.1:$METRICS_PORT/metrics" | awk '
        /^tern_commit_batch_size_sum/ {items=$2} /^tern_commit_batch_size_count/ {commits=$2}
        /^tern_commit_seconds_sum/ {secs=$2}
        END { if (commits > 0) printf "relay commits: %d transactions, %.1f appends each, %.2f ms each (fsync included)\n", commits, items/commits, 1000*secs/commits }'
}

stop_relay() { commit_stats; kill -INT "$RELAY_PID"; wait "$RELAY_PID" || true; unset RELAY_PID; }

# --relay-pid: runs also report the CPU time per message of relay and load
# generator, which share this machine's cores.
lg() { "$LOADGEN" --relay "127.0.0.1:$RELAY_PORT" --fingerprint "$FP" --relay-pid "$RELAY_PID" --payload "$PAYLOAD" "$@"; }

echo "== tern-relay (synchronous=FULL, group commit), payload ${PAYLOAD} B, ${DURATION}s runs"
start_relay
echo "-- 1:1, 1000 devices, as fast as acks allow (pipelined request streams)"
lg --mode direct --devices 1000 --inflight 4 --duration "$DURATION"
echo "relay RSS after 1:1 run: $(rss_mib "$RELAY_PID") MiB"
stop_relay

start_relay
echo "-- 1:1, 1000 devices, as fast as acks allow, one stream per request (for the ratio)"
lg --mode direct --devices 1000 --inflight 4 --duration "$DURATION" --streams per-request
stop_relay

start_relay
echo "-- 1:1, 1000 devices, 10000 msgs/s (latency)"
lg --mode direct --devices 1000 --rate 10000 --duration "$DURATION"
stop_relay

start_relay
echo "-- groups of 100, 1000 devices (10 senders, sender-key messages, 32 in flight each: the relay's max_pipelined_requests)"
lg --mode group --devices 1000 --group-size 100 --inflight 32 --duration "$DURATION"
stop_relay

start_relay
echo "-- reconnect with 10000 queued messages"
lg --mode drain --queued 10000
stop_relay

start_relay
echo "-- 10000 idle connected devices"
echo "relay RSS before: $(rss_mib "$RELAY_PID") MiB"
lg --mode idle --devices 10000 --duration 10 >"$WORK/idle.out" &
IDLE_PID=$!
until grep -q "connected" "$WORK/idle.out" 2>/dev/null; do
    kill -0 "$IDLE_PID" 2>/dev/null || { cat "$WORK/idle.out"; break; }
    sleep 1
done
cat "$WORK/idle.out"
echo "relay RSS with idle devices: $(rss_mib "$RELAY_PID") MiB"
wait "$IDLE_PID" || true
stop_relay

echo "== mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}'), QoS 1, persistence on, ${MQTT_MESSAGES} x ${PAYLOAD} B"
cat >"$WORK/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/
max_inflight_messages 100
max_queued_messages 100000
CONF
mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
MQTT_PID=$!
sleep 0.5
# (awk, not `yes | head`: under pipefail the SIGPIPE that stops `yes`
# would abort the script.)
awk -v n="$MQTT_MESSAGES" -v len="$PAYLOAD" 'BEGIN {
    for (j = 0; j < len; j++) line = line "x"
    for (i = 0; i < n; i++) print line }' >"$WORK/lines"
mosquitto_sub -p "$MQTT_PORT" -q 1 -t bench -C "$MQTT_MESSAGES" -i bench-sub >/dev/null &
SUB_PID=$!
sleep 0.5
START=$(date +%s.%N)
mosquitto_pub -p "$MQTT_PORT" -q 1 -t bench -l -i bench-pub <"$WORK/lines"
PUB_END=$(date +%s.%N)
wait "$SUB_PID"
END=$(date +%s.%N)
awk -v s="$START" -v p="$PUB_END" -v e="$END" -v n="$MQTT_MESSAGES" 'BEGIN {
    printf "mosquitto: published %d in %.2fs = %.0f msgs/s; all delivered after %.2fs = %.0f msgs/s\n", n, p-s, n/(p-s), e-s, n/(e-s) }'

#!/usr/bin/env bash
# Benchmarks cluster mode against the single relay, all on this machine:
#   A. one node on SQLite (the default),
#   B. one node on PostgreSQL + NATS,
#   C. two nodes on PostgreSQL + NATS (devices spread over both),
#   D. as C, with the chats in two shards on two PostgreSQL servers
#      ([store] chat_shards; the directory shares the first server),
# each with the shapes of bench/relay-vs-mosquitto.sh: 1:1 with 1000 devices
# as fast as acks allow, 1:1 at a fixed rate, and groups of 100. Besides
# tern-loadgen's msgs/s and send→deliver latency it reports the CPU time per
# accepted (durable) message of every server process: relay nodes, postgres
# (the postmaster and all its backends) and nats-server.
#
# PostgreSQL and NATS are throw-away instances on free ports (PostgreSQL
# with its durable defaults: fsync and synchronous_commit on).
#
# Usage: bench/cluster.sh [seconds-per-run] [rate]
# SETUPS=a (or "a c", …) runs only those setups; RELAY_BIN=PATH measures
# another tern-relay build (e.g. one from before a change, for the ratio).
# Needs: apt-get install -y postgresql nats-server (.ci/run installs them).
set -euo pipefail

DURATION="${1:-10}"
RATE="${2:-5000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK="$(mktemp -d)"
chmod 755 "$WORK"
PG_PORT=47532
PG2_PORT=47533
NATS_PORT=47422
NODE_PORTS=(47433 47434)
PAYLOAD=100
TICKS="$(getconf CLK_TCK)"
NODE_PIDS=()
source "$ROOT/examples/cluster/services.sh"

cleanup() {
    for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [[ -n "${NATS_PID:-}" ]] && kill "$NATS_PID" 2>/dev/null || true
    pg_stop "$WORK/pg" 2>/dev/null || true
    pg_stop "$WORK/pg2" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build --release -p tern-relay -p tern-loadgen --bins >/dev/null)
RELAY="${RELAY_BIN:-$TARGET/release/tern-relay}"
LOADGEN="$TARGET/release/tern-loadgen"

start_services() {
    pg_start "$WORK/pg" "$PG_PORT"
    nats_start "$WORK/nats" "$NATS_PORT"
}

# A second PostgreSQL server, and a chat shard database on each server.
start_shards() {
    pg_start "$WORK/pg2" "$PG2_PORT"
    "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE shard0"
    "$PGBIN/psql" -h 127.0.0.1 -p "$PG2_PORT" -U postgres -qc "CREATE DATABASE shard1"
}

stop_services() {
    kill "$NATS_PID"; wait "$NATS_PID" 2>/dev/null || true; unset NATS_PID
    pg_stop "$WORK/pg"
    pg_stop "$WORK/pg2" 2>/dev/null || true
    rm -rf "$WORK/pg" "$WORK/pg2" "$WORK/nats"
}

# The processes of every PostgreSQL server running.
all_pg_pids() {
    pg_pids "$WORK/pg"
    if [[ -f "$WORK/pg2/data/postmaster.pid" ]]; then pg_pids "$WORK/pg2"; fi
}

# Clock ticks (user + system) the processes have used.
ticks() {
    local total=0 pid
    for pid in "$@"; do
        [[ -r "/proc/$pid/stat" ]] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
    done
    echo "$total"
}

# start_node INDEX BACKEND: a relay node on NODE_PORTS[INDEX]; BACKEND is
# sqlite, postgres or sharded.
start_node() {
    local i="$1" conf="$WORK/node$1.toml" shards
    shards="chat_shards = [\"host=127.0.0.1 port=$PG_PORT user=postgres dbname=shard0\", \"host=127.0.0.1 port=$PG2_PORT user=postgres dbname=shard1\"]"
    {
        printf '[limits]\nrequests_per_device_per_sec = 0\nconnections_per_ip_per_sec = 0\n'
        case "$2" in
            postgres) node_config "$PG_PORT" "$NATS_PORT" "n$i" ;;
            sharded) node_config "$PG_PORT" "$NATS_PORT" "n$i" "$shards" ;;
        esac
    } >"$conf"
    mkdir -p "$WORK/node$i"
    # One certificate for all nodes: node 0 generates it, the others copy it.
    if ((i > 0)); then cp "$WORK/node0/relay-cert.der" "$WORK/node0/relay-key.der" "$WORK/node$i/"; fi
    node_start "$RELAY" "$conf" "$WORK/node$i" "127.0.0.1:${NODE_PORTS[$i]}" "$WORK/node$i.out"
    NODE_PIDS+=("$NODE_PID")
}

stop_nodes() {
    for pid in "${NODE_PIDS[@]}"; do kill -INT "$pid"; wait "$pid" || true; done
    NODE_PIDS=()
    rm -rf "$WORK"/node*
}

# run SETUP LABEL LOADGEN-ARGS...: one load generator run; CPU is counted
# from the end of registration (the "registered" line) to the end of the run.
run() {
    local setup="$1" label="$2"; shift 2
    local relays out="$WORK/lg.out"
    relays="$(for i in "${!NODE_PIDS[@]}"; do printf '127.0.0.1:%s,' "${NODE_PORTS[$i]}"; done)"
    "$LOADGEN" --relay "${relays%,}" --fingerprint "$FP" --payload "$PAYLOAD" "$@" >"$out" &
    local lg=$!
    until grep -q '^registered' "$out" 2>/dev/null; do
        kill -0 "$lg" 2>/dev/null || break
        sleep 0.05
    done
    local r0 p0=0 n0=0 r1 p1=0 n1=0
    r0="$(ticks "${NODE_PIDS[@]}")"
    if [[ -n "${NATS_PID:-}" ]]; then p0="$(ticks $(all_pg_pids))"; n0="$(ticks "$NATS_PID")"; fi
    wait "$lg"
    r1="$(ticks "${NODE_PIDS[@]}")"
    if [[ -n "${NATS_PID:-}" ]]; then p1="$(ticks $(all_pg_pids))"; n1="$(ticks "$NATS_PID")"; fi
    local line accepted rate deliver
    line="$(grep -E '^(direct|group):' "$out" | head -1)"
    accepted="$(sed -E 's/.*accepted=([0-9]+).*/\1/' <<<"$line")"
    rate="$(sed -E 's/.* = ([0-9]+) msgs\/s.*/\1/' <<<"$line")"
    deliver="$(grep -E '^send->deliver' "$out" | tail -1 | sed -E 's/.*p50=([0-9.]+)ms p99=([0-9.]+)ms.*/\1 \/ \2/')"
    awk -v setup="$setup" -v label="$label" -v acc="$accepted" -v hz="$TICKS" -v rate="$rate" \
        -v deliver="$deliver" -v relay=$((r1 - r0)) -v pg=$((p1 - p0)) -v nats=$((n1 - n0)) 'BEGIN {
        us = 1e6 / hz / (acc > 0 ? acc : 1)
        printf "| %s | %s | %s | %s | %.0f | %.0f | %.0f | %.0f |\n",
            setup, label, rate, deliver, relay * us, pg * us, nats * us, (relay + pg + nats) * us }'
}

# The three setups; each shape runs on a fresh one.
setup_a() { start_node 0 sqlite; }
setup_b() { start_services; start_node 0 postgres; }
setup_c() { start_services; start_node 0 postgres; start_node 1 postgres; }
setup_d() { start_services; start_shards; start_node 0 sharded; start_node 1 sharded; }
teardown() {
    stop_nodes
    if [[ -n "${NATS_PID:-}" ]]; then stop_services; fi
}

SHAPES=(
    "1:1, 1000 devices, closed loop|--mode direct --devices 1000 --inflight 4 --duration $DURATION"
    "1:1, 1000 devices, $RATE msgs/s|--mode direct --devices 1000 --rate $RATE --duration $DURATION"
    "groups of 100, 1000 devices|--mode group --devices 1000 --group-size 100 --inflight 32 --duration $DURATION"
)

echo "payload ${PAYLOAD} B, ${DURATION}s runs, $(nproc) cores (load generator included); CPU in µs per accepted message"
echo
echo "| setup | shape | msgs/s | send→deliver p50 / p99 ms | relay nodes | postgres | nats | all servers |"
echo "|---|---|---|---|---|---|---|---|"
for setup in "a:A. 1 node, SQLite" "b:B. 1 node, PostgreSQL + NATS" "c:C. 2 nodes, PostgreSQL + NATS" \
    "d:D. 2 nodes, 2 PostgreSQL chat shards + NATS"; do
    [[ " ${SETUPS:-a b c d} " == *" ${setup%%:*} "* ]] || continue
    for shape in "${SHAPES[@]}"; do
        "setup_${setup%%:*}"
        # shellcheck disable=SC2086
        run "${setup#*:}" "${shape%%|*}" ${shape#*|}
        teardown
    done
done

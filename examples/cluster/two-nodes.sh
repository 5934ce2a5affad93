#!/usr/bin/env bash
# A two-node Tern cluster on this machine: a throw-away PostgreSQL and NATS
# (under ./tern-cluster), and two tern-relay nodes on UDP 127.0.0.1:4433 and
# 127.0.0.1:4434 presenting one certificate. Prints how clients join, then
# serves until Ctrl-C, which stops everything (the data stays in
# ./tern-cluster; delete it to start afresh).
#
# Usage: bash examples/cluster/two-nodes.sh
# Needs: apt-get install -y postgresql nats-server
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
source "$ROOT/examples/cluster/services.sh"
DIR="$PWD/tern-cluster"
PG_PORT=45432
NATS_PORT=44222
PIDS=()

stop() {
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pg_stop "$DIR/pg" || true
}
trap stop EXIT

(cd "$ROOT" && cargo build --release -q -p tern-relay)
RELAY="${CARGO_TARGET_DIR:-$ROOT/target}/release/tern-relay"

if [[ -d "$DIR/pg/data" ]]; then
    as_postgres "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w \
        -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" start >/dev/null
else
    pg_start "$DIR/pg" "$PG_PORT"
fi
nats_start "$DIR/nats" "$NATS_PORT"
PIDS+=("$NATS_PID")

for n in 1 2; do
    node_config "$PG_PORT" "$NATS_PORT" "n$n" >"$DIR/n$n.toml"
done
"$RELAY" migrate --config "$DIR/n1.toml"
node_start "$RELAY" "$DIR/n1.toml" "$DIR/n1" 127.0.0.1:4433 "$DIR/n1.out"
PIDS+=("$NODE_PID")
mkdir -p "$DIR/n2"
cp "$DIR/n1/relay-cert.der" "$DIR/n1/relay-key.der" "$DIR/n2/"
node_start "$RELAY" "$DIR/n2.toml" "$DIR/n2" 127.0.0.1:4434 "$DIR/n2.out"
PIDS+=("$NODE_PID")

cat <<INFO
Two relay nodes serve 127.0.0.1:4433 and 127.0.0.1:4434 (PostgreSQL on
127.0.0.1:$PG_PORT, NATS on 127.0.0.1:$NATS_PORT), certificate $FP.
Clients join with both nodes, e.g.:

    tern --home alice init --relay 127.0.0.1:4433,127.0.0.1:4434 --fingerprint $FP --name alice

Ctrl-C stops the cluster.
INFO
wait "${PIDS[@]}"

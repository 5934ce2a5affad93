# Throw-away PostgreSQL and NATS servers for a local cluster, sourced by
# examples/cluster/two-nodes.sh and bench/cluster.sh. Everything lives
# under the directory given to the functions; nothing touches the system's
# own PostgreSQL or NATS.

PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"

# Runs a command as the postgres user when root (initdb refuses root).
as_postgres() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DIR PORT: initdb into DIR/data, start on 127.0.0.1:PORT with
# PostgreSQL's durable defaults, create database "tern".
pg_start() {
    local dir="$1" port="$2"
    [[ -x "$PGBIN/initdb" ]] || { echo "PostgreSQL server binaries not found (apt-get install -y postgresql)" >&2; return 1; }
    mkdir -p "$dir"
    chmod 755 "$(dirname "$dir")"
    [[ "$(id -u)" == 0 ]] && chown postgres "$dir"
    as_postgres "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE tern"
}

# pg_stop DIR: stops the server started by pg_start.
pg_stop() {
    [[ -f "$1/data/postmaster.pid" ]] && as_postgres "$PGBIN/pg_ctl" -D "$1/data" -m fast stop >/dev/null
}

# pg_pids DIR: the postmaster and its backends.
pg_pids() {
    local pm
    pm="$(head -1 "$1/data/postmaster.pid")"
    echo "$pm" $(pgrep -P "$pm" || true)
}

# nats_start DIR PORT: nats-server on 127.0.0.1:PORT; sets NATS_PID.
nats_start() {
    [[ -x "$NATS_SERVER" ]] || { echo "nats-server not found (apt-get install -y nats-server)" >&2; return 1; }
    mkdir -p "$1"
    "$NATS_SERVER" -a 127.0.0.1 -p "$2" >"$1/nats.log" 2>&1 &
    NATS_PID=$!
}

# node_config PG_PORT NATS_PORT NODE_ID [STORE_LINE]: the [store] and
# [cluster] sections of a node; STORE_LINE is added to [store] (e.g. its
# chat_shards).
node_config() {
    cat <<CONF
[store]
backend = "postgres"
url = "host=127.0.0.1 port=$1 user=postgres dbname=tern"
pool_size = 16
${4:-}
[cluster]
nats_url = "nats://127.0.0.1:$2"
node_id = "$3"
CONF
}

# node_start RELAY CONFIG DATA_DIR ADDR OUT: starts a node and waits until
# it prints its fingerprint; sets NODE_PID and FP. Nodes started after the
# first should get a copy of its relay-cert.der and relay-key.der in their
# data directory first: one certificate for the cluster.
node_start() {
    local relay="$1" config="$2" data="$3" addr="$4" out="$5"
    mkdir -p "$data"
    RUST_LOG="${RUST_LOG:-warn}" "$relay" serve --config "$config" --listen "$addr" --data-dir "$data" >"$out" &
    NODE_PID=$!
    for _ in $(seq 100); do
        grep -q fingerprint "$out" 2>/dev/null && break
        sleep 0.1
    done
    FP="$(awk '/fingerprint/ {print $NF}' "$out")"
    [[ -n "$FP" ]] || { echo "the node at $addr did not start" >&2; return 1; }
}

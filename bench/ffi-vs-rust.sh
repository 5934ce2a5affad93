#!/usr/bin/env bash
# The bindings benchmark: a pair of clients through the Python bindings
# against the same pair in Rust through tern-core, same relay, same run.
# Usage: bash bench/ffi-vs-rust.sh [ROUNDS]   (needs `pip install ./ffi`)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}

cargo build --release -q -p tern-relay
cargo bench -q -p tern-ffi --bench pair --no-run
data=$(mktemp -d)
trap 'kill "$relay_pid" 2>/dev/null; rm -rf "$data"' EXIT
target/release/tern-relay serve --listen 127.0.0.1:0 --data-dir "$data" >"$data/out" 2>/dev/null &
relay_pid=$!
for _ in $(seq 50); do
    grep -q fingerprint "$data/out" 2>/dev/null && break
    sleep 0.1
done
TERN_RELAY=$(sed -n 's/^tern-relay listening on //p' "$data/out")
TERN_FINGERPRINT=$(sed -n 's/^certificate sha256 fingerprint: //p' "$data/out")
export TERN_RELAY TERN_FINGERPRINT

for round in $(seq "$rounds"); do
    cargo bench -q -p tern-ffi --bench pair 2>/dev/null | grep '^{'
    python3 bench/ffi_pair.py
done | python3 -c '
import json, statistics, sys
rows = [json.loads(line) for line in sys.stdin]
by = {side: [r for r in rows if r["side"] == side] for side in ("rust", "python")}
med = {side: {k: statistics.median(r[k] for r in rs) for k in ("p50_us", "p99_us", "msgs_per_s", "call_ns")}
       for side, rs in by.items()}
print("%-8s %10s %10s %12s %10s" % ("pair", "p50 µs", "p99 µs", "msgs/s", "call ns"))
for side in ("rust", "python"):
    m = med[side]
    print("%-8s %10.0f %10.0f %12.0f %10.0f" % (side, m["p50_us"], m["p99_us"], m["msgs_per_s"], m["call_ns"]))
r, p = med["rust"], med["python"]
print("python/rust: p50 latency %.2f×, msgs/s %.2f×, call +%.0f ns (medians of %d rounds)"
      % (p["p50_us"] / r["p50_us"], p["msgs_per_s"] / r["msgs_per_s"],
         p["call_ns"] - r["call_ns"], len(by["rust"])))
'

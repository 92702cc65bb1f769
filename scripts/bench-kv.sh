#!/usr/bin/env bash
# Loads a 3-node tickraft-kv cluster on this machine with redis-benchmark (Debian's
# redis-tools), fsync on, and prints SET and INCR throughput and latency with 1 and 50 clients
# (and 1000 with BENCH_MANY=1000), the same pipelined (BENCH_PIPELINE, default 16 per client),
# then the failover time after kill -9 of the leader.
#
#   bash scripts/bench-kv.sh                 # defaults: 20000 requests per run against the leader
#   BENCH_N=50000 BENCH_TARGET=follower bash scripts/bench-kv.sh
#   BENCH_FLAGS=--read-lease bash scripts/bench-kv.sh   # flags for every `serve`
#
# Not a test: figures depend on the machine. The README records what it printed here.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v redis-benchmark >/dev/null || {
    echo "installing redis-tools (redis-benchmark, redis-cli)"
    (apt-get install -y redis-tools || (apt-get update && apt-get install -y redis-tools)) >/dev/null
}
cargo build --release -p tickraft-kv --locked
bin=target/release/tickraft-kv

n="${BENCH_N:-20000}"
many="${BENCH_MANY:-50}"
target="${BENCH_TARGET:-leader}"
base="${BENCH_PORT:-17100}"
dir="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

peers="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 3))"
for i in 1 2 3; do
    RUST_LOG=warn "$bin" serve --id "$i" --peers "$peers" --client "127.0.0.1:$((base + 10 + i))" \
        --data-dir "$dir/n$i" ${BENCH_FLAGS:-} >"$dir/n$i.log" 2>&1 &
    pids+=("$!")
done

role_of() { redis-cli -p "$((base + 10 + $1))" INFO raft 2>/dev/null | tr -d '\r' | sed -n 's/^role://p'; }
leader=""
for _ in $(seq 1 300); do
    for i in 1 2 3; do
        if [ "$(role_of "$i")" = leader ]; then leader="$i"; fi
    done
    [ -n "$leader" ] && break
    sleep 0.05
done
[ -n "$leader" ] || { echo "no leader"; cat "$dir"/n*.log; exit 1; }
port=$((base + 10 + leader))
if [ "$target" = follower ]; then port=$((base + 10 + (leader % 3) + 1)); fi
echo "leader is node $leader; loading the $target on port $port; fsync on; $n requests per run"
echo "fdatasync here: $(python3 - "$dir" <<'PY'
import os, sys, time
p = os.path.join(sys.argv[1], "probe"); f = os.open(p, os.O_WRONLY | os.O_CREAT)
t = []
for _ in range(200):
    os.write(f, b"x" * 256); s = time.perf_counter(); os.fdatasync(f); t.append(time.perf_counter() - s)
t.sort(); print(f"{t[len(t)//2]*1e3:.3f} ms median for a 256-byte append")
PY
)"

for clients in 1 "$many"; do
    redis-benchmark -p "$port" -t set,incr,get -n "$n" -c "$clients" -r 100000 -q 2>&1 \
        | tr '\r' '\n' | grep -E 'requests per second' | sed "s/^/clients=$clients  /"
done

# Pipelined: each connection's writes that arrive together go to the log as one entry.
pipeline="${BENCH_PIPELINE:-16}"
for clients in 1 "$many"; do
    redis-benchmark -p "$port" -t set,incr -n "$((n * 5))" -c "$clients" -P "$pipeline" -r 100000 -q \
        2>&1 | tr '\r' '\n' | grep -E 'requests per second' \
        | sed "s/^/clients=$clients pipeline=$pipeline  /"
done

fsyncs() { redis-cli -p "$port" INFO stats | tr -d '\r' | grep -E '^(fsyncs|fsync_avg_us|proposals):' | tr '\n' ' '; }
echo "leader stats after the runs: $(fsyncs)"

echo "failover after kill -9 of the leader (5 rounds):"
cargo run --release -q -p tickraft-kv --example failover --locked

#!/usr/bin/env bash
# Real Redis clients against a real tickraft-kv cluster: redis-cli, redis-benchmark (Debian's
# redis-tools) and the Python `redis` package (from PyPI, in a throwaway venv). Each must
# connect and run its standard workload without an error. Installs what is missing.
#
#   bash scripts/client-compat.sh [path/to/tickraft-kv]      (default: target/debug/tickraft-kv)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/debug/tickraft-kv}"
[ -x "$bin" ] || cargo build -p tickraft-kv --locked

command -v redis-benchmark >/dev/null || {
    echo "installing redis-tools (redis-cli, redis-benchmark)"
    (apt-get install -y redis-tools || (apt-get update && apt-get install -y redis-tools)) >/dev/null
}
venv="$(mktemp -d)"
dir="$(mktemp -d)"
base="${COMPAT_PORT:-18300}"
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    rm -rf "$venv" "$dir"
}
trap cleanup EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q redis

RUST_LOG=warn "$bin" demo --base-port "$((base + 1))" --raft-base-port "$((base + 11))" \
    --data-dir "$dir" >"$dir/demo.log" 2>&1 &
pid=$!
ports=("$((base + 1))" "$((base + 2))" "$((base + 3))")
leader=""
for _ in $(seq 1 300); do
    for p in "${ports[@]}"; do
        if redis-cli -p "$p" INFO raft 2>/dev/null | tr -d '\r' | grep -qx 'role:leader'; then leader="$p"; fi
    done
    [ -n "$leader" ] && break
    sleep 0.05
done
[ -n "$leader" ] || { echo "no leader"; cat "$dir/demo.log"; exit 1; }

fail() { echo "client-compat: $*"; cat "$dir/demo.log" | tail -20; exit 1; }

# redis-cli: one-shot commands through different nodes, and a MULTI block on stdin.
[ "$(redis-cli -p "${ports[0]}" SET cli:counter 5)" = "OK" ] || fail "redis-cli SET"
[ "$(redis-cli -p "${ports[1]}" INCR cli:counter)" = "6" ] || fail "redis-cli INCR via a node"
[ "$(redis-cli -p "${ports[2]}" GET cli:counter)" = "6" ] || fail "redis-cli GET via a node"
out="$(printf 'MULTI\nSET cli:a 1\nINCR cli:a\nEXEC\n' | redis-cli -p "${ports[1]}")"
echo "$out" | grep -qx '2' || fail "redis-cli MULTI/EXEC: $out"
echo "redis-cli: ok"

# redis-benchmark's standard workloads, against a follower (so every write is forwarded).
follower="${ports[0]}"
[ "$follower" = "$leader" ] && follower="${ports[1]}"
out="$(redis-benchmark -p "$follower" -t ping,set,get,incr,mset -n 2000 -c 20 -q 2>&1 | tr '\r' '\n')"
echo "$out" | grep -q 'requests per second' || fail "redis-benchmark ran nothing: $out"
if echo "$out" | grep -qiE 'error|ERR '; then fail "redis-benchmark saw errors: $out"; fi
echo "$out" | grep 'requests per second' | sed 's/^/redis-benchmark: /'

"$venv/bin/python" scripts/client-compat.py "${ports[@]}"

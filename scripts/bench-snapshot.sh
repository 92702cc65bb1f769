#!/usr/bin/env bash
# Snapshots, catch-up and leadership transfer on a 3-node tickraft-kv cluster on this machine,
# fsync on. Loads BENCH_KEYS keys of BENCH_VALUE bytes with redis-benchmark, then:
#   1. RAFT.SNAPSHOT on the leader: how long the node thread was held (the state machine's
#      write) and how long until the snapshot was durable (from the node's log line);
#   2. a follower stopped before the snapshot and restarted after it, with the leader's log
#      compacted: how long until it has caught up (by snapshot install), and at what rate;
#   3. RAFT.TRANSFER to the other follower, BENCH_TRANSFERS times: how long each takes;
#   4. a fresh cluster with automatic snapshots every 100 entries, loaded with BENCH_AUTO_KEYS
#      keys: how long snapshots held the node threads, and whether any leader lost its place.
#
#   bash scripts/bench-snapshot.sh            # defaults: 300000 keys of 32 bytes
#   BENCH_KEYS=1000000 bash scripts/bench-snapshot.sh
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

keys="${BENCH_KEYS:-300000}"
value="${BENCH_VALUE:-32}"
transfers="${BENCH_TRANSFERS:-5}"
base="${BENCH_PORT:-17200}"
dir="$(mktemp -d)"
declare -A pids
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "logs kept in $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

peers="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 3))"
start() {
    RUST_LOG=info "$bin" serve --id "$1" --peers "$peers" --client "127.0.0.1:$((base + 10 + $1))" \
        --data-dir "$dir/n$1" --snapshot-entries 0 --snapshot-bytes 0 --log-keep-entries 100 \
        >>"$dir/n$1.log" 2>&1 &
    pids[$1]=$!
}
for i in 1 2 3; do start "$i"; done

cli() { redis-cli -p "$((base + 10 + $1))" "${@:2}" 2>/dev/null | tr -d '\r'; }
field() { cli "$1" INFO | sed -n "s/^$2://p"; }
now_ms() { date +%s%3N; }
# Loads `$2` keys of `$3` bytes through port `$1`, pipelined 2,000 at a time, every key once.
load() {
python3 - "$1" "$2" "$3" <<'PY'
import socket, sys
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
v = b"v" * size
batch = 2000
for start in range(0, n, batch):
    out = b"".join(
        b"*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$%d\r\n%s\r\n" % (len(b"k%d" % i), i, size, v)
        for i in range(start, min(n, start + batch))
    )
    s.sendall(out)
    want = min(n, start + batch) - start
    got = b""
    while got.count(b"\r\n") < want:
        got += s.recv(1 << 20)
PY
}
leader_of() {
    for _ in $(seq 1 400); do
        for i in 1 2 3; do
            if [ "$(field "$i" role)" = leader ]; then echo "$i"; return; fi
        done
        sleep 0.05
    done
    echo "no leader" >&2; exit 1
}
leader=$(leader_of)
f1=$((leader % 3 + 1))
# Follower f1 is stopped before the load: it will need the whole state by snapshot.
kill -9 "${pids[$f1]}"
wait "${pids[$f1]}" 2>/dev/null || true
echo "leader is node $leader; follower $f1 stopped; loading $keys keys of $value bytes"
t0=$(now_ms)
load "$((base + 10 + leader))" "$keys" "$value"
t1=$(now_ms)
echo "   loaded in $((t1 - t0)) ms (one pipelined client); keys in the store: $(cli "$leader" DBSIZE)"

echo "1. snapshot on the leader (RAFT.SNAPSHOT: written on the node thread, then made durable)"
cli "$leader" RAFT.SNAPSHOT >/dev/null
grep "took a snapshot" "$dir/n$leader.log" | tail -1 | sed 's/.*took a snapshot/   /'

echo "2. follower $f1 restarted behind the compacted log: catch-up by snapshot install"
target=$(field "$leader" applied_index)
t0=$(now_ms)
start "$f1"
until [ "$(field "$f1" applied_index 2>/dev/null || echo 0)" -ge "$target" ] 2>/dev/null; do sleep 0.01; done
t1=$(now_ms)
bytes=$(grep "took a snapshot" "$dir/n$leader.log" | tail -1 | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
echo "   caught up to index $target in $((t1 - t0)) ms from process start: $bytes snapshot bytes," \
    "$(( bytes / 1024 * 1000 / 1024 / (t1 - t0 + 1) )) MiB/s; installs: $(field "$f1" snapshots_installed)," \
    "chunks: $(( (bytes + 1048575) / 1048576 ))"
[ "$(cli "$f1" DBSIZE)" = "$(cli "$leader" DBSIZE)" ] || { echo "the follower's store differs"; exit 1; }
# From the follower's log: when it first heard its leader after the restart, when the last chunk
# was in and verified, and when the store was restored.
python3 - "$dir/n$f1.log" "$bytes" <<'PY'
import datetime, re, sys
lines = open(sys.argv[1]).read().splitlines()
start = max(i for i, l in enumerate(lines) if "recovered the log" in l)
def at(pattern):
    for l in lines[start:]:
        if pattern in l:
            t = re.match(r"(\S+)Z", l).group(1)
            return datetime.datetime.fromisoformat(t)
    return None
heard, verified, restored = at("leader changed"), at("new latest snapshot"), at("installed a snapshot")
if heard and verified and restored:
    moved = (verified - heard).total_seconds()
    print(f"   of which: transfer (leader heard -> file verified) {moved*1e3:.0f} ms"
          f" ({int(sys.argv[2]) / moved / 2**20:.0f} MiB/s), restore {(restored - verified).total_seconds()*1e3:.0f} ms;"
          " the rest is the process starting and the leader redialing it")
PY

echo "3. leadership transfer ($transfers times, alternating followers)"
for k in $(seq 1 "$transfers"); do
    l=$(leader_of)
    to=$((l % 3 + 1))
    t0=$(now_ms)
    r=$(cli "$l" RAFT.TRANSFER "$to")
    t1=$(now_ms)
    echo "   $l -> $to: $r in $((t1 - t0)) ms"
done

echo "4. automatic snapshots under load: a fresh cluster, --snapshot-entries 100"
for i in 1 2 3; do kill -9 "${pids[$i]}" 2>/dev/null || true; wait "${pids[$i]}" 2>/dev/null || true; done
auto_keys="${BENCH_AUTO_KEYS:-1000000}"
base=$((base + 50))
peers="1=127.0.0.1:$((base + 1)),2=127.0.0.1:$((base + 2)),3=127.0.0.1:$((base + 3))"
for i in 1 2 3; do
    RUST_LOG=info "$bin" serve --id "$i" --peers "$peers" --client "127.0.0.1:$((base + 10 + i))" \
        --data-dir "$dir/auto$i" --snapshot-entries 100 >"$dir/auto$i.log" 2>&1 &
    pids[$i]=$!
done
leader=$(leader_of)
t0=$(now_ms)
load "$((base + 10 + leader))" "$auto_keys" "$value"
t1=$(now_ms)
holds=$(grep -h "took a snapshot" "$dir"/auto*.log | sed -n 's/.*write_millis=\([0-9]*\).*/\1/p' | sort -n)
totals=$(grep -h "took a snapshot" "$dir"/auto*.log | sed -n 's/.*total_millis=\([0-9]*\).*/\1/p' | sort -n)
largest=$(grep -h "took a snapshot" "$dir"/auto*.log | sed -n 's/.*bytes=\([0-9]*\).*/\1/p' | sort -n | tail -1)
echo "   $auto_keys keys in $((t1 - t0)) ms; $(echo "$holds" | wc -l) snapshots (largest $largest bytes);" \
    "node thread held at most $(echo "$holds" | tail -1) ms, durable after at most $(echo "$totals" | tail -1) ms;" \
    "leader changes after the first election: $(( $(grep -h "leader changed" "$dir"/auto*.log | wc -l) - 3 ))"

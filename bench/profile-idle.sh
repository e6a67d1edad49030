#!/usr/bin/env bash
# Heap profile of the gateway holding idle open streams (issue 15: ≤ 20 KiB
# per idle stream). Runs tollgate-dp under `valgrind --tool=massif`, takes a
# detailed heap snapshot with no stream open and one with STREAMS held open
# (the bench mock holds each after its first event), and prints the largest
# allocation sites of each. Release binaries from bench/run.sh; loopback only.
#
#   bench/profile-idle.sh                 # 500 streams
#   STREAMS=1000 bench/profile-idle.sh
#   OUT=/tmp/idle bench/profile-idle.sh   # keep the files there
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
streams="${STREAMS:-500}"
out="${OUT:-$(mktemp -d /tmp/tollgate-idle.XXXXXX)}"
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install -y valgrind)" >&2; exit 1; }
[ -x "$bin/tollgate-dp" ] && [ -x "$bin/bench-mock" ] && [ -x "$bin/tollgate-bench" ] ||
    cargo build --release -p tollgate-dp -p tollgate-bench

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ready() { # file prefix
    for _ in $(seq 1 1200); do
        line="$(grep -m1 "^$2" "$1" 2>/dev/null || true)"
        if [ -n "$line" ]; then echo "${line#"$2"}" | tr -d ' '; return 0; fi
        sleep 0.1
    done
    echo "no '$2' line in $1" >&2; return 1
}

"$bin/bench-mock" --listen 127.0.0.1:0 >"$out/mock.out" 2>&1 &
pids+=($!)
mock_url="$(wait_ready "$out/mock.out" "bench-mock ready:")"
cat >"$out/gateway.yaml" <<YAML
tenants:
  - name: bench
    providers:
      - name: mock
        kind: openai
        base_url: $mock_url
        api_key: bench-upstream-key
    models:
      - name: bench-small
        provider: mock
      - name: bench-hold
        provider: mock
    keys:
      - name: bench
        key: tg-bench-key
YAML
echo "gateway under massif (slow start)..." >&2
RUST_LOG=warn valgrind --tool=massif --massif-out-file="$out/massif.out" --threshold=0.2 \
    "$bin/tollgate-dp" --config "$out/gateway.yaml" --listen 127.0.0.1:0 >"$out/dp.out" 2>"$out/dp.err" &
dp_pid=$!
pids+=("$dp_pid")
dp_url="$(wait_ready "$out/dp.out" "tollgate-dp ready:")/v1"

# Warm: one call and one stream (pools, lazily built state).
"$bin/tollgate-bench" closed --url "$dp_url" --conns 2 --secs 2 >/dev/null
"$bin/tollgate-bench" stream --url "$dp_url" --streams 20 --concurrency 4 >/dev/null
vgdb --pid="$dp_pid" detailed_snapshot "$out/heap-0.massif" >/dev/null
rss0="$(awk '/VmRSS/{print $2}' /proc/$dp_pid/status)"

echo "opening $streams idle streams..." >&2
"$bin/tollgate-bench" idle --url "$dp_url" --streams "$streams" --mock-url "$mock_url" \
    --pid "$dp_pid" --secs 25 >"$out/idle.json" &
idle_pid=$!
pids+=("$idle_pid")
sleep 15
vgdb --pid="$dp_pid" detailed_snapshot "$out/heap-$streams.massif" >/dev/null
rss1="$(awk '/VmRSS/{print $2}' /proc/$dp_pid/status)"
wait "$idle_pid" || true

heap_total() { grep -m1 '^mem_heap_B=' "$1" | cut -d= -f2; }
extra_total() { grep -m1 '^mem_heap_extra_B=' "$1" | cut -d= -f2; }
h0="$(heap_total "$out/heap-0.massif")"; h1="$(heap_total "$out/heap-$streams.massif")"
e0="$(extra_total "$out/heap-0.massif")"; e1="$(extra_total "$out/heap-$streams.massif")"
echo "== heap: $h0 B idle, $h1 B with $streams streams: $(( (h1 - h0) / streams )) B per stream"
echo "   allocator overhead: $(( (e1 - e0) / streams )) B per stream"
echo "   RSS under valgrind: $rss0 KiB → $rss1 KiB: $(( (rss1 - rss0) / streams )) KiB per stream"
echo "   (idle.json: $(cat "$out/idle.json"))"
echo "== heap per stream by allocation site (first frame of ours/pingora/hyper/reqwest/tokio/bytes)"
python3 "$root/bench/massif-sites.py" "$out/heap-0.massif" "$out/heap-$streams.massif" "$streams"
echo
echo "files: $out (ms_print $out/heap-$streams.massif)"

#!/usr/bin/env bash
# Profiles tollgate-dp under saturated non-stream load (or streams with
# MODE=stream) with perf, and prints the hottest symbols. Uses the release
# binaries that bench/run.sh builds; loopback only.
#
#   bench/profile.sh            # 10 s closed loop, 64 connections
#   SECS=20 CONNS=32 bench/profile.sh
#   MODE=stream bench/profile.sh
# Needs `perf` (Debian: apt-get install -y linux-perf) and permission to
# profile another process (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
secs="${SECS:-10}"
conns="${CONNS:-64}"
mode="${MODE:-closed}"
out="${OUT:-$(mktemp -d /tmp/tollgate-profile.XXXXXX)}"
command -v perf >/dev/null || { echo "perf not found (apt-get install -y linux-perf)" >&2; exit 1; }
[ -x "$bin/tollgate-dp" ] && [ -x "$bin/bench-mock" ] && [ -x "$bin/tollgate-bench" ] ||
    cargo build --release -p tollgate-dp -p tollgate-bench

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_ready() { # file prefix
    for _ in $(seq 1 600); do
        line="$(grep -m1 "^$2" "$1" 2>/dev/null || true)"
        if [ -n "$line" ]; then echo "${line#"$2"}" | tr -d ' '; return 0; fi
        sleep 0.1
    done
    echo "no '$2' line in $1" >&2; return 1
}

"$bin/bench-mock" --listen 127.0.0.1:0 --chunk-delay-us 1000 >"$out/mock.out" 2>&1 &
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
    keys:
      - name: bench
        key: tg-bench-key
YAML
RUST_LOG=warn "$bin/tollgate-dp" --config "$out/gateway.yaml" --listen 127.0.0.1:0 >"$out/dp.out" 2>&1 &
dp_pid=$!
pids+=("$dp_pid")
dp_url="$(wait_ready "$out/dp.out" "tollgate-dp ready:")/v1"

"$bin/tollgate-bench" closed --url "$dp_url" --conns "$conns" --secs 2 >/dev/null # warm-up
if [ "$mode" = stream ]; then
    load=("$bin/tollgate-bench" stream --url "$dp_url" --streams 100000 --concurrency "$conns")
else
    load=("$bin/tollgate-bench" closed --url "$dp_url" --conns "$conns" --secs "$((secs + 2))")
fi
"${load[@]}" >"$out/load.json" &
load_pid=$!
pids+=("$load_pid")
sleep 1
perf record -F 499 -g -o "$out/perf.data" -p "$dp_pid" -- sleep "$secs" 2>"$out/perf-record.log"
[ "$mode" = stream ] && kill "$load_pid" 2>/dev/null || wait "$load_pid" || true

report() { perf report -i "$out/perf.data" --no-children --stdio -g none "$@" 2>/dev/null |
    grep -v -e '^$' -e '^#' | sed -e 's/  */ /g' -e 's/ - - *$//' | cut -c1-160; }
echo "== by binary"; report --sort dso --percent-limit 1
echo "== hottest symbols"; report --sort dso,symbol --percent-limit 0.7 | head -60
echo
echo "perf data: $out/perf.data (perf report -i $out/perf.data)"
[ "$mode" = stream ] || grep -E '"(ok|errors|rps)"' "$out/load.json"

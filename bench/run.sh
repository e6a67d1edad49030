#!/usr/bin/env bash
# Runs every benchmark scenario of issue 15, direct to the mock and through
# the real tollgate-dp release binary, then the feature comparisons
# (interleaved wall-clock A/B rounds and instructions per request under
# callgrind, with a real tollgate-cp for metering, budget leases, CP rate
# limits and guardrails), and writes bench/results/<date>.md and .json.
# Loopback only. A full run takes about 5-6 minutes after the build.
#
#   bench/run.sh                      # everything
#   bench/run.sh features             # only the feature comparisons -> <date>-features.md/.json
#   bench/run.sh --quick              # shorter windows, 1,000 idle streams, 3 A/B rounds
#   bench/run.sh --no-icount          # any `tollgate-bench suite` flag, e.g. --secs 10,
#   bench/run.sh --otlp-endpoint http://127.0.0.1:4317   # adds the OTLP row
#   BENCH_SKIP_BUILD=1 bench/run.sh   # reuse the binaries
#   BENCH_OUT=bench/results/2026-11-23b bench/run.sh    # output path without extension
#   BENCH_PROFILE=perf bench/run.sh features --only limits  # quick-to-rebuild profile
#                                     # (no LTO, incremental) for iterating on a cost;
#                                     # results of record use the default, release
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

mode=suite
if [ "${1:-}" = features ]; then
    mode=features
    shift
fi
args=()
for a in "$@"; do
    if [ "$a" = --quick ]; then
        args+=(--secs 3 --warmup-secs 1 --idle 1000 --ab-rounds 3 --ab-secs 2 --icount-requests 200 --icount-repeats 1)
    else
        args+=("$a")
    fi
done

# 10,000 idle streams through the gateway need ~2 sockets each in the DP.
want_files=65536
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_files" ]; then
    ulimit -n "$want_files" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
echo "open-file limit: $(ulimit -n)" >&2

if ! command -v valgrind >/dev/null; then
    echo "valgrind not found: the instruction counts are skipped (apt-get install -y valgrind)" >&2
    args+=(--no-icount)
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
profile="${BENCH_PROFILE:-release}"
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    echo "building the gateway and harness ($profile profile), and the control plane + CLI (debug: not measured)" >&2
    cargo build --profile "$profile" -p tollgate-dp -p tollgate-bench
    cargo build -p tollgate-cp -p tollgate-cli
fi
bin="$target_dir/$profile"
# The control plane only configures the gateway and takes its usage; it is
# not measured, so the debug build the tests use is enough.
cp_bin="${BENCH_CP_BIN:-$target_dir/debug/tollgate-cp}"
cli_bin="${BENCH_CLI_BIN:-$target_dir/debug/tollgate}"
cp_args=()
if [ -x "$cp_bin" ] && [ -x "$cli_bin" ]; then
    cp_args=(--cp-bin "$cp_bin" --cli-bin "$cli_bin")
else
    echo "no $cp_bin or $cli_bin: the control-plane rows are skipped" >&2
fi

date_utc="$(date -u +%F)"
mkdir -p bench/results
out="${BENCH_OUT:-bench/results/$date_utc}"
[ "$mode" = features ] && out="${BENCH_OUT:-bench/results/$date_utc-features}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- data-plane crates bench ':!bench/results' 2>/dev/null; then
    commit="$commit+dirty"
fi

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

exec "$bin/tollgate-bench" "$mode" \
    --dp-bin "$bin/tollgate-dp" \
    --mock-bin "$bin/bench-mock" \
    "${cp_args[@]}" \
    --out "$out" \
    --commit "$commit" \
    --date "$(date -u '+%F %H:%M UTC')" \
    "${args[@]}"

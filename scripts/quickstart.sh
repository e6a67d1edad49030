#!/usr/bin/env bash
# Starts a complete local gateway: control plane (SQLite in .tollgate/), data
# plane and built-in mock provider, with the web dashboard. Prints the
# dashboard URL and sign-in, the proxy URL, admin URL and a demo key. Extra arguments go to `tollgate dev` (e.g. --proxy-listen 127.0.0.1:0).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

ensure_build_tools
build_dashboard
say "building tollgate (first build takes a few minutes)"
cargo build --workspace --bins
say "starting the dev gateway"
exec ./target/debug/tollgate dev --dashboard-dir "$ROOT/dashboard/dist" "$@"

#!/usr/bin/env bash
# Builds the release binaries exactly as deploy/docker/Dockerfile does (the
# `dist` profile: full LTO, one codegen unit; the command is read from the
# Dockerfile, not repeated here) and checks what was built:
#   1. the deploy tests (tests/deploy) against target/dist: --version names
#      the dist profile, the images' ENV/CMD start the dist CP, DP and mock
#      and pass their health checks, flags match docs/self-hosting.md;
#   2. a smoke call: `target/dist/tollgate dev` (CP + DP + mock) answers a chat
#      completion with the demo key.
# Not part of `scripts/test.sh`: the full-LTO build of four binaries takes far
# longer than CI's budget on 2 cores (see docs/self-hosting.md). Run it before
# a release:  scripts/verify-dist.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

ensure_build_tools
cmd="$(sed -n 's/^RUN \(cargo build .*--profile dist.*\)$/\1/p' deploy/docker/Dockerfile)"
[ -n "$cmd" ] || { echo "no 'RUN cargo build ... --profile dist' line in deploy/docker/Dockerfile" >&2; exit 1; }
TOLLGATE_GIT_COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
export TOLLGATE_GIT_COMMIT
say "building as the Dockerfile does: $cmd"
start=$SECONDS
eval "$cmd"
say "dist build took $((SECONDS - start)) s"
ls -l target/dist/tollgate-cp target/dist/tollgate-dp target/dist/tollgate target/dist/tollgate-mock >&2

if [ ! -f dashboard/dist/index.html ]; then build_dashboard; fi
say "deploy tests against the dist binaries"
TOLLGATE_BIN_DIR="$ROOT/target/dist" tests/deploy/run.sh

say "smoke call through target/dist/tollgate dev"
data="$(mktemp -d)"
out="$data/dev.out"
target/dist/tollgate dev --data-dir "$data/state" --admin-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 >"$out" 2>"$data/dev.err" &
dev=$!
trap 'kill "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 300); do
    grep -q '^  export OPENAI_API_KEY=' "$out" && break
    kill -0 "$dev" 2>/dev/null || { cat "$data/dev.err" >&2; echo "tollgate dev exited" >&2; exit 1; }
    sleep 0.2
done
base="$(sed -n 's/^  export OPENAI_BASE_URL=//p' "$out")"
key="$(sed -n 's/^  export OPENAI_API_KEY=//p' "$out")"
[ -n "$base" ] && [ -n "$key" ] || { cat "$out" "$data/dev.err" >&2; echo "no proxy URL or demo key printed" >&2; exit 1; }
answer="$(curl -sS --fail-with-body "$base/chat/completions" -H "Authorization: Bearer $key" \
    -H 'content-type: application/json' \
    -d '{"model":"mock-small","messages":[{"role":"user","content":"hi"}]}')"
echo "$answer" | grep -q '"chat.completion"' || { echo "unexpected answer: $answer" >&2; exit 1; }
say "dist binaries verified: $(target/dist/tollgate-dp --version)"

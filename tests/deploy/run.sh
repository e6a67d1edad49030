#!/usr/bin/env bash
# Static validation of deploy/ (CI has no container engine): Dockerfile lint,
# compose topology, Helm chart rendered and linted, flags and variables in the
# artifacts and docs/self-hosting.md checked against the programs' --help.
# Needs the debug binaries: run after `cargo build --workspace --bins`.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

ensure_python_venv "$ROOT/.venv"
if ! "$ROOT/.venv/bin/python" -c 'import yaml, pytest' 2>/dev/null; then
    say "installing the deploy tests' Python packages (PyYAML)"
    "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r tests/deploy/requirements.txt
fi
# Compose's schema check (Debian's docker-compose validates without a daemon).
command -v docker-compose >/dev/null || apt_install docker-compose
TOLLGATE_HELM_LIB="$(ensure_helm_lib "$ROOT/.venv/bin/python")"
export TOLLGATE_HELM_LIB
exec "$ROOT/.venv/bin/python" -m pytest -q tests/deploy "$@"

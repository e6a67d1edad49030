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

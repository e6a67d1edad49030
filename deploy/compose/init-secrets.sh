#!/usr/bin/env bash
# Writes the compose stack's secrets once (never overwrites): the CP master
# key (base64 of 32 random bytes), the data-plane registration token and the
# Postgres password, in deploy/compose/secrets/ (git-ignored). The directory
# is 0700 (only you on this host); the files are 0644 because compose
# bind-mounts them unchanged and the containers run as uid 10001, not root.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
write() { # write FILE VALUE
    if [ -s "$dir/$1" ]; then echo "kept    $dir/$1"; return; fi
    printf '%s\n' "$2" >"$dir/$1"
    chmod 644 "$dir/$1"
    echo "wrote   $dir/$1"
}
rand() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
write master.key "$(rand 32)"
write dp.token "tgdp-$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 43)"
write postgres.password "$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)"

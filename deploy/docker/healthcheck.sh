#!/bin/bash
# tollgate-healthcheck URL: exits 0 when `GET URL` answers 2xx, 1 otherwise.
#
# The container health check of the Tollgate images. Plain bash (/dev/tcp),
# so the runtime image needs neither curl nor wget. Only http:// URLs: the
# check runs inside the container against the process's own port.
set -u
url="${1:-}"
rest="${url#http://}"
if [ -z "$url" ] || [ "$rest" = "$url" ]; then
    echo "usage: tollgate-healthcheck http://HOST:PORT/PATH" >&2
    exit 2
fi
hostport="${rest%%/*}"
if [ "$hostport" = "$rest" ]; then path=/; else path="/${rest#*/}"; fi
host="${hostport%:*}"
port="${hostport##*:}"
[ "$host" = "$hostport" ] && port=80
timeout="${TOLLGATE_HEALTHCHECK_TIMEOUT_SECS:-3}"

if ! exec 3<>"/dev/tcp/$host/$port"; then
    echo "unhealthy: cannot connect to $hostport" >&2
    exit 1
fi
printf 'GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tollgate-healthcheck\r\nConnection: close\r\n\r\n' \
    "$path" "$hostport" >&3
if ! IFS= read -r -t "$timeout" status <&3; then
    echo "unhealthy: no answer from $url within ${timeout}s" >&2
    exit 1
fi
status="${status%$'\r'}"
case "$status" in
    "HTTP/1."[01]" 2"[0-9][0-9]*) exit 0 ;;
esac
echo "unhealthy: $url answered '$status'" >&2
exit 1

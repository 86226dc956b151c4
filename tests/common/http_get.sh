# shellcheck shell=bash
# http_get PORT PATH: prints the HTTP status code of GET PATH on
# 127.0.0.1:PORT, then the body, over bash's /dev/tcp (no HTTP client
# needed). Source it; do not run it.
http_get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  local response
  response=$(cat <&3)
  exec 3<&-
  # awk reads the whole response: `head -n 1` would stop reading early, and
  # under `set -o pipefail` the writer's SIGPIPE on a long body (/metrics)
  # failed the caller's script without a word.
  printf '%s\n' "$response" | awk 'NR == 1 {print $2}'
  printf '%s\n' "$response" | sed '1,/^\r$/d'
}

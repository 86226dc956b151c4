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
  printf '%s\n' "$response" | head -n 1 | awk '{print $2}'
  printf '%s\n' "$response" | sed '1,/^\r$/d'
}

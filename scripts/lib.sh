# Shared helpers of the set-up scripts. Source it; do not run it.

ES_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Build and test dependencies, all from Debian's archive.
ES_BUILD_PACKAGES=(
  cmake make g++ pkg-config git ca-certificates
  libcaf-dev libsqlite3-dev libpq-dev rapidjson-dev libsimdjson-dev catch2 uuid-dev sqlite3
  libhiredis-dev redis-server redis-tools librabbitmq-dev
  librdkafka-dev libcli11-dev libcpp-httplib-dev libsodium-dev
)

# es_reserve_ports PORT...: keeps the kernel from handing out PORT as the
# local port of an outgoing connection. The servers' ports lie inside
# Linux's ephemeral range (32768-60999): a client socket that happened to
# get one made a server restart fail with EADDRINUSE. Adds to what is
# reserved already; needs root (otherwise it says so and goes on).
es_reserve_ports() {
  local file=/proc/sys/net/ipv4/ip_local_reserved_ports
  [ -r "$file" ] || return 0
  local current wanted port
  current=$(cat "$file")
  wanted=$current
  for port in "$@"; do
    if ! printf ',%s,' "$current" | grep -q ",$port,"; then
      wanted="${wanted:+$wanted,}$port"
    fi
  done
  [ "$wanted" = "$current" ] && return 0
  if ! es_as_root sh -c "echo '$wanted' > $file" 2>/dev/null; then
    es_log "cannot reserve ports $* (not root?); a restart may find them taken"
  fi
}

es_log() {
  printf '==> %s\n' "$*" >&2
}

es_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    es_log "need root (or sudo) to run: $*"
    return 1
  fi
}

# es_install PACKAGE...: installs the packages that are missing. Quick when
# everything is there: it asks dpkg first and touches apt only if needed.
es_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
        | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  es_log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! es_as_root apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    es_as_root apt-get update -q
    es_as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

# es_jobs: parallel build jobs (the machines here have 2 cores).
es_jobs() {
  local n
  n=$(nproc 2>/dev/null || echo 2)
  [ "$n" -gt 2 ] && n=2
  echo "$n"
}

# es_build DIR BUILD_TYPE [CMAKE ARGS...]: configures and builds.
es_build() {
  local dir="$1" type="$2"
  shift 2
  cmake -S "$ES_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  cmake --build "$dir" -j "$(es_jobs)"
}

#!/usr/bin/env bash
# Emmett beside esbench: the `append` scenario at 1 and 16 appenders on the
# server of scripts/pg, each esbench run next to an Emmett run in the same
# window (see bench/README.md, "Emmett on the same server").
# Usage: bench/emmett/run.sh [EVENTS_16] [EVENTS_1] [ROUNDS]
# Needs: scripts/pg start, a Release build (scripts/demo), node and npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
events16=${1:-16000}
events1=${2:-4000}
rounds=${3:-2}
esbench="$root/build/release/bench/esbench"
[[ -x "$esbench" ]] || { echo "run.sh: build $esbench first (scripts/demo)" >&2; exit 1; }
command -v npm >/dev/null || { echo "run.sh: needs node and npm" >&2; exit 1; }
dsn="$("$root/scripts/pg" dsn)"
host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$dsn")
port=$(sed -n 's/.*port=\([^ ]*\).*/\1/p' <<<"$dsn")
user=$(sed -n 's/.*user=\([^ ]*\).*/\1/p' <<<"$dsn")
# Emmett's own tables live in a database of their own, emptied per run.
PGOPTIONS="-c client_min_messages=warning" psql -q -h "$host" -p "$port" -U "$user" -d postgres \
  -c "DROP DATABASE IF EXISTS emmett_bench" -c "CREATE DATABASE emmett_bench"
url="postgres://$user@$host:$port/emmett_bench"
(cd "$here" && { [[ -d node_modules ]] || npm ci --no-audit --no-fund >/dev/null; })
for ((r = 1; r <= rounds; ++r)); do
  for w in 16 1; do
    n=$([[ $w == 16 ]] && echo "$events16" || echo "$events1")
    "$esbench" --backend=postgres --dsn="$dsn" --scenario=append \
      --events="$n" --writers="$w" --skip-raw | grep '^{'
    node "$here/append.mjs" "$url" "$n" "$w"
  done
done

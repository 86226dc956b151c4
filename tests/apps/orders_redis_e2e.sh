#!/usr/bin/env bash
# End-to-end test of the demo over Redis: `orders run --bus=URL` writes the
# events to SQLite with their outbox rows, a relay publishes them to Redis,
# and both projections take their live events from there. Two runs (the
# second continues the first's orders), each followed by `orders verify`:
# every event relayed, no outbox row left, both read models equal to the
# log.
# Usage: orders_redis_e2e.sh PATH_TO_ORDERS_BINARY
set -euo pipefail
orders="$1"
if [ -z "${ES_TEST_REDIS_URL:-}" ]; then
  echo "FAIL: ES_TEST_REDIS_URL is not set: start the test server with" \
       "\`scripts/redis start\` and export ES_TEST_REDIS_URL=\"\$(scripts/redis dsn)\"" \
       "(scripts/test does both)" >&2
  exit 1
fi
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
# shellcheck source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

store="--store=sqlite:$dir/orders.db"
bus="--bus=$ES_TEST_REDIS_URL"
prefix="--bus-prefix=es-e2e-$$-$RANDOM"

for round in 1 2; do
  "$orders" run "$store" "$bus" "$prefix" --orders=300 --clients=8 \
    --progress=off >"$dir/run$round.txt" 2>&1 \
    || { cat "$dir/run$round.txt"; fail "run $round failed"; }
  grep -q "fed by the outbox relay" "$dir/run$round.txt" \
    || fail "run $round did not use the Redis bus"
  written=$(sed -n 's/^  events written *\([0-9]*\).*/\1/p' "$dir/run$round.txt")
  relayed=$(sed -n 's/^  events relayed *\([0-9]*\).*/\1/p' "$dir/run$round.txt")
  [ -n "$written" ] && [ "$written" -gt 0 ] \
    || { cat "$dir/run$round.txt"; fail "run $round wrote nothing"; }
  [ "$relayed" = "$written" ] \
    || { cat "$dir/run$round.txt"; fail "run $round relayed $relayed of $written events"; }
  grep -q "outbox rows waiting *0 " "$dir/run$round.txt" \
    || { cat "$dir/run$round.txt"; fail "run $round left outbox rows"; }
  grep -q "handlers run from Redis *[1-9]" "$dir/run$round.txt" \
    || { cat "$dir/run$round.txt"; fail "run $round: nothing came from Redis"; }
  "$orders" verify "$store" >"$dir/verify$round.txt" 2>&1 \
    || { cat "$dir/verify$round.txt"; fail "verify after run $round failed"; }
  grep -q "no differences" "$dir/verify$round.txt" \
    || { cat "$dir/verify$round.txt"; fail "verify after run $round found differences"; }
done
# Status shows the outbox emptied and the group with nothing pending.
"$orders" status "$store" "$bus" "$prefix" >"$dir/status.txt" 2>&1 \
  || { cat "$dir/status.txt"; fail "status failed"; }
grep -q "^outbox: 0 pending, [1-9][0-9]* published, 0 failed" "$dir/status.txt" \
  || { cat "$dir/status.txt"; fail "status does not show the outbox emptied"; }
grep -q "group orders-views *[0-9]* consumers, 0 pending" "$dir/status.txt" \
  || { cat "$dir/status.txt"; fail "status does not show the Redis group"; }
# A wrong address is a clear error, and nothing is written.
if "$orders" run "$store" --bus=redis://127.0.0.1:1/0 --orders=10 \
    --progress=off >"$dir/bad.txt" 2>&1; then
  fail "a run with an unreachable bus succeeded"
fi
grep -q "cannot open the bus: es_redis.connection_failed" "$dir/bad.txt" \
  || { cat "$dir/bad.txt"; fail "no clear error for an unreachable bus"; }
echo "orders over Redis: two runs relayed and verified"

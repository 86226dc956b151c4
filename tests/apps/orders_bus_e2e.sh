#!/usr/bin/env bash
# End-to-end test of the demo over a broker: `orders run --bus=URL` writes
# the events to SQLite with their outbox rows, a relay publishes them to the
# broker, and both projections take their live events from there. Two runs
# (the second continues the first's orders), each followed by `orders
# verify`: every event relayed, no outbox row left, both read models equal
# to the log.
# Usage: orders_bus_e2e.sh PATH_TO_ORDERS_BINARY redis|rabbitmq|kafka
set -euo pipefail
orders="$1"
broker="$2"
case "$broker" in
  redis)
    url_var=ES_TEST_REDIS_URL
    # Redis: the group has nothing pending.
    group_line="group orders-views: [0-9]* consumers, 0 pending"
    bad_url=redis://127.0.0.1:1/0
    bad_error=es_redis.connection_failed ;;
  rabbitmq)
    url_var=ES_TEST_AMQP_URL
    # RabbitMQ: the group's queue is empty.
    group_line="queue es-e2e-.*\.orders-views: 0 ready"
    bad_url=amqp://guest:guest@127.0.0.1:1/%2f
    bad_error=es_amqp.connection_failed ;;
  kafka)
    url_var=ES_TEST_KAFKA_URL
    # Kafka: the group has committed everything.
    group_line="group orders-views: lag 0"
    bad_url=kafka://127.0.0.1:1
    bad_error=es_kafka.connection_failed ;;
  *) echo "usage: orders_bus_e2e.sh ORDERS redis|rabbitmq|kafka" >&2; exit 2 ;;
esac
url="${!url_var:-}"
if [ -z "$url" ]; then
  echo "FAIL: $url_var is not set: start the test server with" \
       "\`scripts/$broker start\` and export $url_var=\"\$(scripts/$broker dsn)\"" \
       "(scripts/test does both)" >&2
  exit 1
fi
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
# shellcheck source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

store="--store=sqlite:$dir/orders.db"
bus="--bus=$url"
prefix="--bus-prefix=es-e2e-$$-$RANDOM"

for round in 1 2; do
  "$orders" run "$store" "$bus" "$prefix" --orders=300 --clients=8 \
    --progress=off >"$dir/run$round.txt" 2>&1 \
    || { cat "$dir/run$round.txt"; fail "run $round failed"; }
  grep -q "fed by the outbox relay" "$dir/run$round.txt" \
    || fail "run $round did not use the $broker bus"
  written=$(sed -n 's/^  events written *\([0-9]*\).*/\1/p' "$dir/run$round.txt")
  relayed=$(sed -n 's/^  events relayed *\([0-9]*\).*/\1/p' "$dir/run$round.txt")
  [ -n "$written" ] && [ "$written" -gt 0 ] \
    || { cat "$dir/run$round.txt"; fail "run $round wrote nothing"; }
  [ "$relayed" = "$written" ] \
    || { cat "$dir/run$round.txt"; fail "run $round relayed $relayed of $written events"; }
  grep -q "outbox rows waiting *0 " "$dir/run$round.txt" \
    || { cat "$dir/run$round.txt"; fail "run $round left outbox rows"; }
  grep -q "handlers run from the bus *[1-9]" "$dir/run$round.txt" \
    || { cat "$dir/run$round.txt"; fail "run $round: nothing came from $broker"; }
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
grep -q "$group_line" "$dir/status.txt" \
  || { cat "$dir/status.txt"; fail "status does not show the $broker group"; }
# A wrong address is a clear error, and nothing is written.
if "$orders" run "$store" --bus="$bad_url" --orders=10 \
    --progress=off >"$dir/bad.txt" 2>&1; then
  fail "a run with an unreachable bus succeeded"
fi
grep -q "cannot open the bus: $bad_error" "$dir/bad.txt" \
  || { cat "$dir/bad.txt"; fail "no clear error for an unreachable bus"; }
echo "orders over $broker: two runs relayed and verified"

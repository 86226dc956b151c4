#!/usr/bin/env bash
# The orders demo on PostgreSQL (store, read models and dead letters in one
# fresh schema): runs with a projection failing on purpose, recovery, verify,
# status, the dead-letter queue, a rebuild, and the operations endpoints
# fetched over HTTP after a run (on PostgreSQL and on SQLite).
# Usage: orders_postgres_e2e.sh PATH_TO_ORDERS_BINARY
# The server comes from ES_TEST_PG_DSN (scripts/pg start; scripts/pg dsn).
set -euo pipefail
orders="$1"
dir=$(mktemp -d)
dsn="${ES_TEST_PG_DSN:-host=127.0.0.1 port=55432 user=postgres dbname=es_test}"
schema="orders_e2e_$$"
if ! psql "$dsn" -qAtc "CREATE SCHEMA $schema" >/dev/null 2>"$dir/psql.txt"; then
  echo "FAILED: cannot reach PostgreSQL at '$dsn': $(cat "$dir/psql.txt")" >&2
  echo "start it with scripts/pg start (or set ES_TEST_PG_DSN)" >&2
  exit 1
fi
trap 'psql "$dsn" -qAtc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1; rm -rf "$dir"' EXIT
store="--store=postgres:$dsn options=-csearch_path=$schema"
sql() {
  psql "$dsn" -qAtc "SET search_path = $schema; $1" | tail -n 1
}
# shellcheck source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

echo "== first run, customer_stats failing on cancellations"
run_orders run1 run --orders=120 --clients=8 --seed=42 --progress=off \
  --fail-cancellations "$store"
[ "$rc" -eq 0 ] || fail "the first run failed"
grep -Eq '^  orders +120$' "$out" || fail "first run did not make 120 orders"
events1=$(awk '/events in the log/ {print $5}' "$out")
[ "$events1" -eq "$(sql 'SELECT count(*) FROM events')" ] \
  || fail "the run's event count differs from the events table"
cancelled=$(sql "SELECT count(*) FROM events WHERE event_type = 'OrderCancelled'")
[ "$cancelled" -gt 0 ] || fail "the workload cancelled nothing"
[ "$(sql "SELECT count(*) FROM dead_letter_queue WHERE status = 'failed'")" -eq "$cancelled" ] \
  || fail "the dead letters are not in PostgreSQL"
grep -Eq "^  order_summary +$events1 +0 .* 0 +0  live \(healthy\)$" "$out" \
  || fail "order_summary is not caught up and clean"

echo "== verify, a second run recovering from the checkpoints, status"
run_orders verify1 verify "$store"
[ "$rc" -eq 0 ] || fail "verify found differences"
grep -q "$cancelled events in its dead-letter queue: no differences" "$out" \
  || fail "verify did not account for the dead letters"
run_orders run2 run --orders=40 --clients=8 --seed=43 --progress=off "$store"
[ "$rc" -eq 0 ] || fail "the second run failed"
grep -Eq "^recovered 120 orders of $events1 events from the read model" "$out" \
  || fail "the second run did not recover the first run's orders"
events2=$(awk '/events in the log/ {print $5}' "$out")
run_orders status status "$store"
[ "$rc" -eq 0 ] || fail "status failed"
grep -Eq "^  order_summary +$events2 +0 " "$out" || fail "status: order_summary"

echo "== show, dlq list"
order=$(sql "SELECT aggregate_id FROM events WHERE event_type = 'OrderCancelled' LIMIT 1")
run_orders show show "$order" "$store"
[ "$rc" -eq 0 ] || fail "show failed"
grep -q -- '-> cancelled' "$out" || fail "show lacks the cancellation"
run_orders dlq-list dlq list --limit=1000 "$store"
[ "$rc" -eq 0 ] || fail "dlq list failed"
[ "$(grep -c 'OrderCancelled failed' "$out")" -eq "$cancelled" ] \
  || fail "dlq list does not show every entry"

echo "== dlq replay all, rebuild, verify"
run_orders replay dlq replay all "$store"
[ "$rc" -eq 0 ] || fail "replay failed"
grep -q "replayed $cancelled dead letters: $cancelled resolved, 0 failed" "$out" \
  || fail "replay all did not resolve every entry"
run_orders rebuild rebuild order_summary --progress=off "$store"
[ "$rc" -eq 0 ] || fail "the rebuild failed"
run_orders verify2 verify "$store"
[ "$rc" -eq 0 ] || fail "verify after the replay and rebuild found differences"
grep -q "verified 160 orders, $events2 events: no differences" "$out" \
  || fail "verify did not confirm the log"

# shellcheck source=../common/http_get.sh
source "$(dirname "$0")/../common/http_get.sh"

# endpoints NAME STORE: a run that keeps serving; checks the endpoints,
# then stops it with SIGTERM.
endpoints() {
  local name="$1" where="$2"
  out="$dir/$name.txt"
  what="orders run --http"
  "$orders" run --orders=30 --clients=4 --seed=44 --progress=off \
    --http=127.0.0.1:0 --keep-serving "$where" >"$out" 2>&1 &
  local pid=$!
  local deadline=$((SECONDS + 60))
  until grep -q 'serving the endpoints until SIGINT' "$out"; do
    kill -0 "$pid" 2>/dev/null || fail "$name: the run ended before serving"
    [ "$SECONDS" -lt "$deadline" ] || { kill "$pid"; fail "$name: no serving line"; }
    sleep 0.1
  done
  local port
  port=$(sed -n 's/^serving \/live, \/ready, \/health and \/metrics on port \([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] || fail "$name: no port printed"
  local head
  head=$(awk '/events in the log/ {print $5}' "$out")
  http_get "$port" /live >"$dir/$name-live.txt"
  [ "$(head -n 1 "$dir/$name-live.txt")" = 200 ] || fail "$name: /live"
  http_get "$port" /ready >"$dir/$name-ready.txt"
  [ "$(head -n 1 "$dir/$name-ready.txt")" = 200 ] || fail "$name: /ready: $(cat "$dir/$name-ready.txt")"
  http_get "$port" /health >"$dir/$name-health.txt"
  # customer_stats has no dead letters here: all checks healthy.
  grep -q '"status":"healthy","checks"' "$dir/$name-health.txt" \
    || fail "$name: /health: $(cat "$dir/$name-health.txt")"
  http_get "$port" /metrics >"$dir/$name-metrics.txt"
  [ "$(head -n 1 "$dir/$name-metrics.txt")" = 200 ] || fail "$name: /metrics"
  grep -qx 'es_store_up{store="orders"} 1' "$dir/$name-metrics.txt" \
    || fail "$name: es_store_up"
  grep -qx "es_store_head_position{store=\"orders\"} $head" "$dir/$name-metrics.txt" \
    || fail "$name: es_store_head_position is not $head"
  grep -qx "es_projection_position{projection=\"order_summary\"} $head" "$dir/$name-metrics.txt" \
    || fail "$name: order_summary position is not $head"
  grep -q '^es_region_commands_routed_total{region="orders"} [1-9]' "$dir/$name-metrics.txt" \
    || fail "$name: no commands routed"
  grep -q '^es_store_append_seconds_count{store="orders"} [1-9]' "$dir/$name-metrics.txt" \
    || fail "$name: no append latencies"
  grep -q '^es_aggregate_command_seconds_count{aggregates="orders"} [1-9]' "$dir/$name-metrics.txt" \
    || fail "$name: no command latencies"
  kill -TERM "$pid"
  local status=0
  wait "$pid" || status=$?
  [ "$status" -eq 0 ] || fail "$name: the run exited with $status after SIGTERM"
}

echo "== the endpoints of a run on PostgreSQL"
endpoints http-postgres "$store"
echo "== the endpoints of a run on SQLite"
endpoints http-sqlite "--store=sqlite:$dir/orders.db"

echo "== bad input"
run_orders bad-store run --orders=1 "--store=postgres:host=127.0.0.1 port=1 connect_timeout=2"
[ "$rc" -ne 0 ] || fail "a run against an unreachable server succeeded"
grep -q "event store postgres:" "$out" || fail "the unreachable store is not named"
run_orders bad-http run --orders=1 --http=nowhere "--store=sqlite:$dir/other.db"
[ "$rc" -eq 2 ] || fail "a bad --http was not refused"
grep -q "expected HOST:PORT" "$out" || fail "no clear error for a bad --http"
run_orders bad-log run --orders=1 --log-format=xml "--store=sqlite:$dir/other.db"
[ "$rc" -eq 2 ] || fail "a bad --log-format was not refused"
grep -q "log-format must be text or json" "$out" || fail "no clear error for a bad --log-format"
run_orders bad-otlp run --orders=1 --otlp=https://collector:4318 "--store=sqlite:$dir/other.db"
[ "$rc" -eq 2 ] || fail "a bad --otlp was not refused"
grep -q "OTLP endpoint must be http://HOST" "$out" || fail "no clear error for a bad --otlp"
echo "orders on PostgreSQL: all checks passed"

#!/usr/bin/env bash
# End-to-end test of two orders processes on one store and one set of
# views: pairs of `orders run` started together, a run started while
# another is busy, and a run waiting for one that is killed (kill -9). Both
# runs of a pair must finish in time and succeed, and afterwards the read
# models must hold every order once: verify finds no difference, the
# counts match the log, and nothing is in the dead-letter queue (before
# projection leases, order_summary ended with doubled counts and thousands
# of dead letters; before the demo held its views for a whole run, two runs
# started together could each take one projection's lease and wait for the
# other's until they timed out).
# Usage: orders_concurrency_e2e.sh PATH_TO_ORDERS_BINARY
set -euo pipefail
orders="$1"
dir=$(mktemp -d)
pids=()
# Ends what is left of the runs this script started (a `timeout` and the
# orders process under it), by pid.
cleanup() {
  local pid child
  for pid in "${pids[@]}"; do
    for child in $(pgrep -P "$pid" 2>/dev/null); do
      kill -9 "$child" 2>/dev/null || true
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT
# shellcheck source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

db="$dir/orders.db"
views="$dir/orders-views.db"
store="--store=sqlite:$db"

# start NAME ARGS...: `orders run ARGS` in the background, output to
# $dir/NAME.txt; its pid is appended to `pids`.
start() {
  local name="$1"
  shift
  timeout "$ORDERS_TIMEOUT" "$orders" run --clients=8 --progress=off "$store" \
    "$@" >"$dir/$name.txt" 2>&1 &
  pids+=("$!")
}

# finish NAME PID: waits for a run started by `start`; it must succeed.
finish() {
  local name="$1" pid="$2"
  set +e
  wait "$pid"
  rc=$?
  set -e
  out="$dir/$name.txt"
  what="orders run ($name)"
  [ "$rc" -ne 124 ] || fail "hung: $what (killed after $ORDERS_TIMEOUT s)"
  expect_rc 0
  # A run that met the other one's lease says it waits.
  if grep -qi 'lease' "$out"; then
    expect_output '[Ss]tandby|[Ww]ait' "$name met a lease without saying it waits"
  fi
}

# check_read_models: verify is clean, and the read models hold each order
# of the log once and nothing in the dead-letter queue.
check_read_models() {
  run_orders "verify-$1" verify "$store"
  expect_rc 0
  expect_output 'events: no differences$' "verify found differences"
  local created summary customers dead
  created=$(sqlite3 "$db" "SELECT count(*) FROM events WHERE event_type = 'OrderCreated'")
  summary=$(sqlite3 "$views" "SELECT count(*) FROM order_summary")
  customers=$(sqlite3 "$views" "SELECT coalesce(sum(orders), 0) FROM customer_stats")
  dead=$(sqlite3 "$views" "SELECT count(*) FROM dead_letter_queue")
  [ "$summary" -eq "$created" ] \
    || fail "$1: order_summary has $summary orders, the log $created"
  [ "$customers" -eq "$created" ] \
    || fail "$1: customer_stats counts $customers orders, the log $created"
  [ "$dead" -eq 0 ] || fail "$1: $dead dead letters"
}

echo "== pairs of runs started together"
for round in 1 2 3 4 5 6 7 8; do
  start "pair$round-a" --orders=40 --seed=$((100 + round))
  a=${pids[-1]}
  start "pair$round-b" --orders=40 --seed=$((200 + round))
  b=${pids[-1]}
  finish "pair$round-a" "$a"
  finish "pair$round-b" "$b"
  check_read_models "pair$round"
done
[ "$(sqlite3 "$db" "SELECT count(*) FROM events WHERE event_type = 'OrderCreated'")" -eq 640 ] \
  || fail "the pairs did not create 640 orders"

echo "== a run started while another is busy"
before=$(sqlite3 "$db" "SELECT count(*) FROM events")
start busy-a --orders=1500 --seed=301
a=${pids[-1]}
# Start the second once the first is writing.
for _ in $(seq 1 400); do
  n=$(sqlite3 "$db" "SELECT count(*) FROM events" 2>/dev/null || echo 0)
  [ "${n:-0}" -gt $((before + 300)) ] && break
  kill -0 "$a" 2>/dev/null || break
  sleep 0.05
done
start busy-b --orders=40 --seed=302
b=${pids[-1]}
finish busy-a "$a"
finish busy-b "$b"
grep -q '^summary' "$dir/busy-a.txt" || fail "the first run did not get to its summary"
check_read_models busy

echo "== a run waiting for one that is killed"
before=$(sqlite3 "$db" "SELECT count(*) FROM events")
# Without `timeout`, so that kill -9 reaches the orders process itself.
# Long enough (20,000 orders) that it is still running when the second has
# started and said it waits, however slow that start is on a busy machine.
"$orders" run --clients=8 --progress=off "$store" --orders=20000 --seed=401 \
  >"$dir/killed-a.txt" 2>&1 &
a=$!
pids+=("$a")
for _ in $(seq 1 400); do
  n=$(sqlite3 "$db" "SELECT count(*) FROM events" 2>/dev/null || echo 0)
  [ "${n:-0}" -gt $((before + 300)) ] && break
  kill -0 "$a" 2>/dev/null || break
  sleep 0.05
done
start killed-b --orders=40 --seed=402
b=${pids[-1]}
# The second waits for the first's lease (or to open the store); the kernel
# drops the lease with the first process.
for _ in $(seq 1 100); do
  grep -qi 'standby\|wait' "$dir/killed-b.txt" && break
  sleep 0.05
done
kill -9 "$a" 2>/dev/null || true
set +e
wait "$a"
set -e
grep -q '^summary' "$dir/killed-a.txt" && fail "the first run ended before the kill"
finish killed-b "$b"
check_read_models killed

# A run that waits for another says so. Not each second run of the script
# waits for the lease: it can also spend the first one's whole run opening
# the store (SQLite's busy wait), so only some of them must have said it.
waited=$(grep -lE '[Ss]tandby|[Ww]aiting' "$dir"/pair*-?.txt "$dir"/busy-b.txt \
  "$dir"/killed-b.txt | wc -l)
[ "$waited" -gt 0 ] || fail "no second run said that it waited for the first"
echo "($waited runs said they waited)"

echo "orders concurrency end-to-end: ok"

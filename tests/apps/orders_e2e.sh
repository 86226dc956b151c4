#!/usr/bin/env bash
# End-to-end test of the orders demo on a temporary SQLite file: run, rerun
# (recovery), verify, show, and refusal of bad input.
# Usage: orders_e2e.sh PATH_TO_ORDERS_BINARY
set -euo pipefail
orders="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
store="--store=sqlite:$dir/orders.db"

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

echo "== first run"
"$orders" run --orders=150 --clients=8 --seed=42 --progress=lines "$store" \
  | tee "$dir/run1.txt"
grep -q 'progress: 100%' "$dir/run1.txt" || fail "no progress lines"
grep -Eq '^  orders +150$' "$dir/run1.txt" || fail "first run did not make 150 orders"
grep -q 'commands rejected' "$dir/run1.txt" || fail "no rejection summary"
grep -q 'handler errors 0' "$dir/run1.txt" || fail "read model handler errors"
events1=$(awk '/events in the log/ {print $5}' "$dir/run1.txt")
[ "$events1" -gt 150 ] || fail "too few events: $events1"

echo "== second run on the same file"
"$orders" run --orders=50 --clients=8 --seed=43 --progress=off "$store" \
  | tee "$dir/run2.txt"
grep -Eq "^recovered 150 orders from $events1 events" "$dir/run2.txt" \
  || fail "second run did not recover the first run's orders"
grep -Eq '^  orders +200$' "$dir/run2.txt" || fail "second run did not add 50 orders"
events2=$(awk '/events in the log/ {print $5}' "$dir/run2.txt")
[ "$events2" -gt "$events1" ] || fail "second run wrote nothing"

echo "== verify"
"$orders" verify "$store" | tee "$dir/verify.txt"
grep -q "verified 200 orders, $events2 events: no differences" "$dir/verify.txt" \
  || fail "verify did not confirm the log"

echo "== show"
id=$(sqlite3 "$dir/orders.db" \
  "SELECT lower(hex(aggregate_id)) FROM events WHERE event_type = 'OrderShipped' LIMIT 1")
uid="${id:0:8}-${id:8:4}-${id:12:4}-${id:16:4}-${id:20:12}"
"$orders" show "$uid" "$store" | tee "$dir/show.txt"
grep -q 'OrderCreated' "$dir/show.txt" || fail "show lacks the first event"
grep -q -- '-> shipped' "$dir/show.txt" || fail "show lacks the final state"

echo "== bad input"
if "$orders" show not-a-uuid "$store" 2>"$dir/err.txt"; then
  fail "show accepted a bad id"
fi
grep -q invalid_uuid "$dir/err.txt" || fail "no clear error for a bad id"
if "$orders" run --store=postgres:nowhere 2>"$dir/err.txt"; then
  fail "run accepted a bad store"
fi
grep -q 'invalid_argument' "$dir/err.txt" || fail "no clear error for a bad store"
if "$orders" verify "--store=sqlite:$dir/missing.db" 2>"$dir/err.txt"; then
  fail "verify accepted a missing store"
fi
if "$orders" frobnicate 2>/dev/null; then
  fail "unknown command accepted"
fi
echo "orders end-to-end: ok"

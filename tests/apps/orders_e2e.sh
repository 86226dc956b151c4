#!/usr/bin/env bash
# End-to-end test of the orders demo on a temporary SQLite file: runs with a
# projection failing on purpose, recovery from checkpoints, verify, status,
# the dead-letter queue (list, replay, resolve, purge), rebuilds, a kill -9
# in the middle of a run, show, and refusal of bad input.
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

views="$dir/orders-views.db"

echo "== first run, customer_stats failing on cancellations"
"$orders" run --orders=150 --clients=8 --seed=42 --progress=lines \
  --fail-cancellations "$store" | tee "$dir/run1.txt"
grep -q 'progress: 100%' "$dir/run1.txt" || fail "no progress lines"
grep -Eq '^  orders +150$' "$dir/run1.txt" || fail "first run did not make 150 orders"
grep -q 'commands rejected' "$dir/run1.txt" || fail "no rejection summary"
events1=$(awk '/events in the log/ {print $5}' "$dir/run1.txt")
[ "$events1" -gt 150 ] || fail "too few events: $events1"
cancelled=$(sqlite3 "$dir/orders.db" \
  "SELECT count(*) FROM events WHERE event_type = 'OrderCancelled'")
[ "$cancelled" -gt 0 ] || fail "the workload cancelled nothing"
grep -Eq "^  order_summary +$events1 +0 .* 0 +0  live \(healthy\)$" "$dir/run1.txt" \
  || fail "order_summary is not caught up and clean"
grep -Eq "^  customer_stats +$events1 +0 .* $cancelled +$cancelled  live" "$dir/run1.txt" \
  || fail "customer_stats did not dead-letter each of the $cancelled cancellations"
grep -q "dead letters: $cancelled unresolved ($cancelled failed, 0 retrying), 0 resolved" \
  "$dir/run1.txt" || fail "no dead-letter totals"

echo "== verify with dead letters waiting"
"$orders" verify "$store" | tee "$dir/verify1.txt"
grep -q "customer_stats view at position $events1 of $events1, $cancelled events in its dead-letter queue: no differences" \
  "$dir/verify1.txt" || fail "verify did not account for the dead letters"

echo "== second run on the same file"
"$orders" run --orders=50 --clients=8 --seed=43 --progress=off "$store" \
  | tee "$dir/run2.txt"
grep -Eq "^recovered 150 orders of $events1 events from the read model \(checkpoint $events1, caught up 0 events" \
  "$dir/run2.txt" || fail "second run did not recover the first run's orders"
grep -Eq '^  orders +200$' "$dir/run2.txt" || fail "second run did not add 50 orders"
events2=$(awk '/events in the log/ {print $5}' "$dir/run2.txt")
[ "$events2" -gt "$events1" ] || fail "second run wrote nothing"

echo "== status"
"$orders" status "$store" | tee "$dir/status.txt"
grep -Eq "^  order_summary +$events2 +0 " "$dir/status.txt" || fail "status: order_summary"
grep -Eq "^  customer_stats +$events2 +0 .* $cancelled$" "$dir/status.txt" \
  || fail "status: customer_stats"

echo "== dlq list, and a replay that fails again"
"$orders" dlq list "$store" --limit=1000 | tee "$dir/dlq1.txt"
[ "$(grep -c 'OrderCancelled failed' "$dir/dlq1.txt")" -eq "$cancelled" ] \
  || fail "dlq list does not show every entry"
first=$(awk '$4 == "OrderCancelled" {print $1; exit}' "$dir/dlq1.txt")
if "$orders" dlq replay "$first" --fail-cancellations "$store" > "$dir/replay1.txt"; then
  fail "a replay into the still failing projection succeeded"
fi
grep -q "failed again: .*injected failure" "$dir/replay1.txt" || fail "no failure reported"
[ "$(sqlite3 "$views" "SELECT retry_count FROM dead_letter_queue WHERE id = $first")" -eq 1 ] \
  || fail "the failed replay did not count a retry"

echo "== dlq replay all"
"$orders" dlq replay all "$store" | tee "$dir/replay2.txt"
grep -q "replayed $cancelled dead letters: $cancelled resolved, 0 failed" "$dir/replay2.txt" \
  || fail "replay all did not resolve every entry"
if "$orders" dlq replay "$first" "$store" 2>"$dir/err.txt"; then
  fail "a resolved entry was replayed again"
fi
grep -q 'already resolved' "$dir/err.txt" || fail "no clear error for a resolved entry"

echo "== verify after the replay"
"$orders" verify "$store" | tee "$dir/verify2.txt"
grep -q "verified 200 orders, $events2 events: no differences" "$dir/verify2.txt" \
  || fail "verify did not confirm the log"
grep -q "0 events in its dead-letter queue: no differences" "$dir/verify2.txt" \
  || fail "customer_stats differs after the replay"

echo "== rebuilds give the read models incremental processing gave"
dump() {
  sqlite3 "$views" "SELECT * FROM order_summary ORDER BY order_id;
    SELECT * FROM order_lines ORDER BY order_id, sku;
    SELECT * FROM customer_stats ORDER BY customer;
    SELECT * FROM customer_orders ORDER BY order_id"
}
dump > "$dir/before.txt"
for p in order_summary customer_stats; do
  "$orders" rebuild "$p" --progress=lines "$store" | tee "$dir/rebuild-$p.txt"
  grep -q "progress: 100% ($events2/$events2 events" "$dir/rebuild-$p.txt" \
    || fail "no progress for the rebuild of $p"
  grep -q "rebuilt $p: $events2 events" "$dir/rebuild-$p.txt" || fail "rebuild of $p"
done
dump > "$dir/after.txt"
[ -s "$dir/before.txt" ] || fail "empty read models"
cmp "$dir/before.txt" "$dir/after.txt" || fail "rebuilt read models differ"

echo "== dlq resolve and purge, on a copy"
# Resolving by hand drops an event from customer_stats for good, so this
# works on a copy of both databases.
mkdir "$dir/copy"
sqlite3 "$dir/orders.db" ".backup '$dir/copy/orders.db'"
sqlite3 "$views" ".backup '$dir/copy/orders-views.db'"
copy="--store=sqlite:$dir/copy/orders.db"
"$orders" run --orders=40 --clients=4 --seed=44 --progress=off \
  --fail-cancellations "$copy" > "$dir/run3.txt"
copy_views="$dir/copy/orders-views.db"
entry=$(sqlite3 "$copy_views" "SELECT min(id) FROM dead_letter_queue WHERE status = 'failed'")
[ -n "$entry" ] || fail "the third run dead-lettered nothing"
"$orders" dlq resolve "$entry" --by=tester "$copy" | grep -q "resolved by tester" \
  || fail "dlq resolve"
"$orders" dlq list --status=resolved --limit=1000 "$copy" > "$dir/dlq2.txt"
grep -q "resolved by tester" "$dir/dlq2.txt" || fail "the resolution is not listed"
"$orders" dlq purge --older-than-days=0 "$copy" | tee "$dir/purge.txt"
grep -q "deleted $((cancelled + 1)) resolved dead letters" "$dir/purge.txt" \
  || fail "purge did not delete the resolved entries"
if "$orders" verify "$copy" > "$dir/verify-copy.txt"; then
  fail "verify missed the event resolved by hand"
fi
grep -q "is neither in customer_stats nor in its dead-letter queue" \
  "$dir/verify-copy.txt" || fail "verify did not name the dropped event"

echo "== kill -9 in the middle of a run, then recover"
before=$(sqlite3 "$dir/orders.db" "SELECT count(*) FROM events")
"$orders" run --orders=3000 --clients=16 --seed=45 --progress=off \
  --fail-cancellations "$store" > "$dir/run4.txt" 2>&1 &
pid=$!
# Kill once this run has written something, wherever it is.
for _ in $(seq 1 600); do
  n=$(sqlite3 "$dir/orders.db" "SELECT count(*) FROM events" 2>/dev/null || echo 0)
  [ "${n:-0}" -gt $((before + 300)) ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
after=$(sqlite3 "$dir/orders.db" "SELECT count(*) FROM events")
[ "$after" -gt $((before + 300)) ] || fail "the killed run wrote too little"
grep -q '^summary' "$dir/run4.txt" && fail "the run ended before the kill"
# Both read models stopped wherever they were; the next run catches them up
# (and continues the interrupted orders).
"$orders" run --orders=0 --progress=off --fail-cancellations "$store" \
  > "$dir/run5.txt" || fail "the run after the crash failed: $(cat "$dir/run5.txt")"
"$orders" verify "$store" | tee "$dir/verify3.txt"
grep -q "events: no differences" "$dir/verify3.txt" \
  || fail "the read models differ after a crash"
"$orders" dlq replay all "$store" > "$dir/replay3.txt" \
  || fail "replay after the crash: $(cat "$dir/replay3.txt")"
"$orders" verify "$store" | tee "$dir/verify4.txt"
grep -q "0 events in its dead-letter queue: no differences" "$dir/verify4.txt" \
  || fail "customer_stats differs after the replay that followed the crash"

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
if "$orders" run --store=mysql:nowhere 2>"$dir/err.txt"; then
  fail "run accepted a bad store"
fi
grep -q 'invalid_argument' "$dir/err.txt" || fail "no clear error for a bad store"
if "$orders" verify "--store=sqlite:$dir/missing.db" 2>"$dir/err.txt"; then
  fail "verify accepted a missing store"
fi
if "$orders" frobnicate 2>/dev/null; then
  fail "unknown command accepted"
fi
expect_refusal() {
  local what="$1" pattern="$2"
  shift 2
  set +e
  "$orders" "$@" >/dev/null 2>"$dir/err.txt"
  local rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "$what: exit code $rc, not 2"
  grep -q "$pattern" "$dir/err.txt" || fail "$what: no clear error ($(cat "$dir/err.txt"))"
}
expect_refusal "replay of a bad id" "takes an entry id" dlq replay xyz "$store"
expect_refusal "replay of an unknown id" "no dead letter 999999" dlq replay 999999 "$store"
expect_refusal "resolve of an unknown id" "no dead letter 999999" dlq resolve 999999 "$store"
expect_refusal "bad status filter" "must be failed, retrying or resolved" dlq list --status=bogus "$store"
expect_refusal "unknown projection" "no projection nope" rebuild nope "$store"
expect_refusal "dlq without a verb" "dlq takes" dlq "$store"
expect_refusal "status of a missing store" "no event store" status "--store=sqlite:$dir/none.db"
echo "orders end-to-end: ok"

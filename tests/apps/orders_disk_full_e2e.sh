#!/usr/bin/env bash
# End-to-end test of the orders demo on a full disk, simulated with a
# file-size limit (ulimit -f, SIGXFSZ ignored, so writes past it fail and
# SQLite reports an I/O error or a full disk). The run must stop in time
# with a non-zero exit code and report the infrastructure failure as such
# (not as business rejections of the commands that follow), send nothing to
# the dead-letter queue because of it, and a later run without the limit
# must recover with a clean verify.
# Usage: orders_disk_full_e2e.sh PATH_TO_ORDERS_BINARY
set -euo pipefail
orders="$1"
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
# shellcheck source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

workload=(--orders=300 --clients=8 --seed=7 --progress=off)

echo "== the same run without a limit, for comparison"
mkdir "$dir/full"
run_orders full-run run "${workload[@]}" "--store=sqlite:$dir/full/orders.db"
expect_rc 0
full_events=$(awk '/events in the log/ {print $5}' "$out")
full_rejected=$(awk '/commands rejected/ {print $3}' "$out")
[ "${full_events:-0}" -gt 1000 ] || fail "the full run wrote too few events"

# The limit. Measured: a run of 300 orders writes ~1,550 events; the WAL of
# the store and that of the views each grow to ~4 MB (SQLite checkpoints at
# 1000 pages) while the database files stay below 1 MB. At 2 MB the store's
# WAL is full after ~350 events, a quarter into the run.
limit_kb=2048

echo "== a run with writes limited to $limit_kb KB per file"
store="--store=sqlite:$dir/orders.db"
out="$dir/limited-run.txt"
what="orders run under ulimit -f $limit_kb"
set +e
(
  trap '' XFSZ
  ulimit -f "$limit_kb"
  exec timeout "$ORDERS_TIMEOUT" "$orders" run "${workload[@]}" "$store"
) >"$out" 2>&1
rc=$?
set -e
[ "$rc" -ne 124 ] || fail "hung: $what (killed after $ORDERS_TIMEOUT s)"
[ "$rc" -lt 125 ] || fail "crashed (exit $rc): $what"
expect_failure "the disk was full"
expect_output 'infrastructure (failure|error)' \
  "the run does not report an infrastructure failure"
expect_output 'disk is full|disk I/O error' "the run does not name the disk error"
events=$(sqlite3 "$dir/orders.db" "SELECT count(*) FROM events")
if [ "$events" -eq 0 ] || [ "$events" -ge "$full_events" ]; then
  fail "the limit did not stop the run in the middle ($events of $full_events events)"
fi
# Commands after the failure are not sent, so they are no business
# rejections: no more rejections than the whole run has, and no flood of
# orders not found.
rejected=$(awk '/commands rejected/ {print $3}' "$out")
[ "${rejected:-0}" -le "$full_rejected" ] \
  || fail "$rejected commands rejected, more than the $full_rejected of a whole run"
expect_no_output 'not_found +[0-9]{2,}' \
  "commands of orders never created are counted as business rejections"

echo "== the dead-letter queue, without the limit"
run_orders dlq-list dlq list "$store"
expect_rc 0
expect_output 'dead letters: 0 unresolved \(0 failed, 0 retrying\), 0 resolved' \
  "the full disk sent events to the dead-letter queue"
[ "$(sqlite3 "$dir/orders-views.db" "SELECT count(*) FROM dead_letter_queue")" -eq 0 ] \
  || fail "the dead-letter queue is not empty"

echo "== recovery without the limit"
run_orders recover-run run --orders=20 --clients=8 --seed=8 --progress=off "$store"
expect_rc 0
after=$(sqlite3 "$dir/orders.db" "SELECT count(*) FROM events")
[ "$after" -gt "$events" ] || fail "the recovery run wrote nothing"
run_orders recover-verify verify "$store"
expect_rc 0
expect_output 'events: no differences$' "the store does not verify after the full disk"
run_orders recover-status status "$store"
expect_rc 0
expect_output "^  order_summary +$after +0 " "order_summary did not catch up"
expect_output "^  customer_stats +$after +0 " "customer_stats did not catch up"

echo "orders disk full end-to-end: ok"

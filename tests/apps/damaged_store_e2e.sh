#!/usr/bin/env bash
# End-to-end test of the orders demo on damaged data. `orders run` makes a
# small store; each kind of damage is done with sqlite3 to a fresh copy of
# the store and its views: (a) two payloads that are not JSON, (b) an
# unknown event type, (c) a deleted event (a hole in the global positions
# and a version gap in its stream), (d) a version gap without a hole, (e) a
# truncated store file, (f) a truncated views file. Each goes through
# verify, show, rebuild, a live projection (a run on fresh read models) and
# recovery (repair, rebuild, run, verify). Damage must be reported with a
# non-zero exit code and the damaged event named; no command may report
# success over a read model that is silently wrong; every command runs
# under a time limit and a hang fails.
# Usage: damaged_store_e2e.sh PATH_TO_ORDERS_BINARY
set -euo pipefail
orders="$1"
dir=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
# shellcheck source=e2e_lib.sh
source "$(dirname "$0")/e2e_lib.sh"

# -- shadow rebuilds ----------------------------------------------------------
# `orders rebuild` builds the view in a shadow and swaps it in (c60056b), so
# a rebuild that fails leaves the old view as it was. Only the assertions
# in `check_shadow_kept_view` depend on that; everything else about
# rebuilds holds with or without it (a clear error naming the event, no
# hang, the exit code). ORDERS_E2E_SHADOW=0 turns them off.
check_shadow="${ORDERS_E2E_SHADOW:-1}"

# dump_views VIEWS: the order summary's rows and checkpoint.
dump_views() {
  sqlite3 "$1" "SELECT * FROM order_summary ORDER BY order_id;
    SELECT * FROM order_lines ORDER BY order_id, sku;
    SELECT global_position, events_processed FROM projection_checkpoints
      WHERE projection_name = 'order_summary'"
}

# check_shadow_kept_view BEFORE VIEWS: after a failed rebuild the live view
# is the one dumped in BEFORE, and no shadow database is left behind.
check_shadow_kept_view() {
  [ "$check_shadow" = 1 ] || return 0
  dump_views "$2" >"$1.after"
  cmp -s "$1" "$1.after" \
    || fail "the failed rebuild changed the live view: $(diff "$1" "$1.after" | head -5)"
  if compgen -G "$2.rebuild_*" >/dev/null; then
    fail "the failed rebuild left its shadow behind: $(ls "$2".rebuild_*)"
  fi
}

# -- the store ----------------------------------------------------------------

base="$dir/base"
mkdir "$base"
echo "== a small store"
run_orders base-run run --orders=200 --clients=8 --seed=42 --progress=off \
  "--store=sqlite:$base/orders.db"
expect_rc 0
run_orders base-verify verify "--store=sqlite:$base/orders.db"
expect_rc 0
expect_output 'events: no differences$' "the undamaged store does not verify"

q() {
  sqlite3 "$base/orders.db" "$1"
}
event_id_at() {
  uuid_of "$(q "SELECT lower(hex(event_id)) FROM events WHERE global_position = $1")"
}
order_at() {
  uuid_of "$(q "SELECT lower(hex(aggregate_id)) FROM events WHERE global_position = $1")"
}
# The position of the event after the one at $1 in its stream.
next_in_stream() {
  q "SELECT n.global_position FROM events e JOIN events n
       ON n.aggregate_type = e.aggregate_type AND n.aggregate_id = e.aggregate_id
      AND n.aggregate_version = e.aggregate_version + 1
     WHERE e.global_position = $1"
}

# ItemAdded events in the middle of the streams of unfinished orders (a
# later event follows in the stream; neither shipped nor cancelled, so the
# next run sends the order commands), one per order.
mapfile -t middle < <(q "SELECT min(e.global_position) FROM events e
  WHERE e.event_type = 'ItemAdded'
    AND EXISTS (SELECT 1 FROM events n WHERE n.aggregate_id = e.aggregate_id
                AND n.aggregate_version = e.aggregate_version + 1)
    AND NOT EXISTS (SELECT 1 FROM events f WHERE f.aggregate_id = e.aggregate_id
                AND f.event_type IN ('OrderShipped', 'OrderCancelled'))
  GROUP BY e.aggregate_id ORDER BY 1")
[ "${#middle[@]}" -ge 4 ] || fail "too few unfinished orders with a middle event"
# The last event of an unfinished order with at least two events.
last_of_stream=$(q "SELECT min(e.global_position) FROM events e
  WHERE e.aggregate_version >= 2
    AND e.event_type NOT IN ('OrderShipped', 'OrderCancelled')
    AND NOT EXISTS (SELECT 1 FROM events n WHERE n.aggregate_id = e.aggregate_id
                AND n.aggregate_version > e.aggregate_version)")
[ -n "$last_of_stream" ] || fail "no unfinished order with two events"

# new_case NAME: a fresh copy of the store and its views in $dir/NAME. Sets
# db (the store file), store (its --store option), views (the views file)
# and live (a --views option for read models built afresh).
new_case() {
  echo "== $1"
  case_dir="$dir/$1"
  mkdir "$case_dir"
  db="$case_dir/orders.db"
  views="$case_dir/orders-views.db"
  copy_db "$base/orders.db" "$db"
  copy_db "$base/orders-views.db" "$views"
  store="--store=sqlite:$db"
  live="--views=$case_dir/live-views.db"
}

# repair SQL: runs SQL on the case's store with the undamaged one attached
# as `base`.
repair() {
  sqlite3 "$db" "ATTACH '$base/orders.db' AS base; $1"
}

# check_cannot_load POSITION EVENT_ID: verify's line about an aggregate it
# cannot load must name the event it failed on. Known defect, outside
# apps/orders: es::aggregate_repository::load (actors/include/es/actors/
# repository.hpp) applies the stored events without es::in_event_context,
# unlike aggregate::load_from_history, so the error says what is wrong but
# not at which event (`orders show` and the aggregate actors do name it).
check_cannot_load() {
  grep -q 'cannot load' "$out" \
    || fail "verify does not report the aggregate it cannot load"
  if grep 'cannot load' "$out" | grep -Eq "position $1([^0-9]|$)|$2"; then
    return 0
  fi
  known_defect "verify's 'cannot load' line does not name the event at position $1 ($2): aggregate_repository::load lacks in_event_context [$what]"
}

# recover NAME: after the log is repaired, the read models are made whole
# (the old views rebuilt, the live ones made afresh from the log), new runs
# succeed and verify finds no difference in either.
recover() {
  run_orders "$1-rebuild-repaired" rebuild order_summary --progress=off "$store"
  expect_rc 0
  rm -f "$case_dir"/live-views.db*
  run_orders "$1-run-repaired" run --orders=5 --seed=8 --progress=off "$store"
  expect_rc 0
  run_orders "$1-live-repaired" run --orders=5 --seed=9 --progress=off \
    "$store" "$live"
  expect_rc 0
  run_orders "$1-verify-repaired" verify "$store"
  expect_rc 0
  expect_output 'events: no differences$' "the repaired store does not verify"
  run_orders "$1-verify-live-repaired" verify "$store" "$live"
  expect_rc 0
  expect_output 'events: no differences$' "the new read models differ"
}

# -- (a) payloads that are not JSON -------------------------------------------

new_case a-malformed-payload
p1=${middle[0]}
p2=${middle[1]}
id1=$(event_id_at "$p1")
id2=$(event_id_at "$p2")
sqlite3 "$db" "UPDATE events SET payload = '{\"sku\": broken'
  WHERE global_position IN ($p1, $p2)"
run_orders a-verify verify "$store"
expect_failure "two payloads are not JSON"
expect_output "malformed_payload: event $id1 at position $p1 " \
  "verify does not name the first bad event"
expect_output "malformed_payload: event $id2 at position $p2 " \
  "verify stopped after the first bad event"
check_cannot_load "$p1" "$id1"
run_orders a-show show "$(order_at "$p1")" "$store"
expect_failure "the order has an event that is not JSON"
expect_output "malformed_payload: event $id1 at position $p1 " \
  "show does not name the bad event"
run_orders a-rebuild rebuild order_summary --progress=off "$store"
expect_failure "two events cannot be applied to the rebuilt view"
expect_output "position $p1([^0-9]|$)" "the rebuild does not name the bad event"
run_orders a-live run --orders=5 --seed=9 --progress=off "$store" "$live"
expect_failure "the order summary could not apply two events"
expect_output "position ($p1|$p2)([^0-9]|$)" "the run does not name a bad event"
repair "UPDATE events SET payload = (SELECT b.payload FROM base.events b
  WHERE b.global_position = events.global_position)
  WHERE global_position IN ($p1, $p2)"
recover a

# -- (b) an unknown event type ------------------------------------------------

new_case b-unknown-type
p=${middle[2]}
id=$(event_id_at "$p")
sqlite3 "$db" "UPDATE events SET event_type = 'ItemAddedX' WHERE global_position = $p"
run_orders b-verify verify "$store"
expect_failure "an event has an unknown type"
expect_output "unknown_event_type: event $id at position $p .*ItemAddedX" \
  "verify does not name the event of an unknown type"
check_cannot_load "$p" "$id"
run_orders b-show show "$(order_at "$p")" "$store"
expect_failure "the order has an event of an unknown type"
expect_output "unknown_event_type: event $id at position $p " \
  "show does not name the event of an unknown type"
run_orders b-rebuild rebuild order_summary --progress=off "$store"
expect_failure "an event of the view's streams has an unknown type"
expect_output "position $p([^0-9]|$)" "the rebuild does not name the event"
run_orders b-live run --orders=5 --seed=9 --progress=off "$store" "$live"
expect_failure "the projections met an event of an unknown type"
expect_output "position $p([^0-9]|$)" "the run does not name the event"
repair "UPDATE events SET event_type = 'ItemAdded' WHERE global_position = $p"
recover b

# -- (c) a deleted event: a hole in the positions, a gap in its stream -------

new_case c-deleted-event
p=${middle[3]}
next=$(next_in_stream "$p")
next_id=$(event_id_at "$next")
sqlite3 "$db" "DELETE FROM events WHERE global_position = $p"
run_orders c-verify verify "$store"
expect_failure "an event is missing"
expect_output "position $p [^0-9]*missing" "verify does not report the hole"
check_cannot_load "$next" "$next_id"
run_orders c-show show "$(order_at "$next")" "$store"
expect_failure "the order's stream has a gap"
expect_output "version_gap: event $next_id at position $next " \
  "show does not name the event after the gap"
dump_views "$views" >"$case_dir/before-rebuild.txt"
run_orders c-rebuild rebuild order_summary --progress=off "$store"
expect_failure "the log has a hole"
expect_output "position $p [^0-9]*missing" "the rebuild does not report the hole"
check_shadow_kept_view "$case_dir/before-rebuild.txt" "$views"
run_orders c-live run --orders=5 --seed=9 --progress=off "$store" "$live"
expect_failure "the order summary cannot get past the hole"
expect_output "position $p [^0-9]*missing" "the run does not report the hole"
repair "INSERT INTO events SELECT * FROM base.events WHERE global_position = $p"
recover c

# -- (d) a version gap without a hole -----------------------------------------

new_case d-version-gap
p=$last_of_stream
id=$(event_id_at "$p")
sqlite3 "$db" "UPDATE events SET aggregate_version = aggregate_version + 1
  WHERE global_position = $p"
run_orders d-verify verify "$store"
expect_failure "a stream has a version gap"
expect_output "version_gap" "verify does not report the version gap"
check_cannot_load "$p" "$id"
run_orders d-show show "$(order_at "$p")" "$store"
expect_failure "the order's stream has a gap"
expect_output "version_gap: event $id at position $p " \
  "show does not name the event after the gap"
# The read models follow the global order, not the streams' versions: the
# rebuilt view is the log's (with the wrong version), which verify reports.
# So only: it ends, in time.
run_orders d-rebuild rebuild order_summary --progress=off "$store"
run_orders d-live run --orders=5 --seed=9 --progress=off "$store" "$live"
expect_failure "a command went to the order whose stream has a gap"
expect_output "position $p([^0-9]|$)" "the run does not name the event"
repair "UPDATE events SET aggregate_version = aggregate_version - 1
  WHERE global_position = $p"
recover d

# -- (e) a truncated store file -----------------------------------------------

new_case e-truncated-store
truncate -s $(($(stat -c %s "$db") / 2)) "$db"
rm -f "$db-wal" "$db-shm"
for c in verify show rebuild live status; do
  case $c in
    show) args=(show "$(order_at "${middle[0]}")" "$store") ;;
    rebuild) args=(rebuild order_summary --progress=off "$store") ;;
    live) args=(run --orders=5 --progress=off "$store" "$live") ;;
    *) args=("$c" "$store") ;;
  esac
  run_orders "e-$c" "${args[@]}"
  expect_failure "the store file is truncated"
  expect_output "corrupt_database" "$c does not say the store is damaged"
  expect_output "$db" "$c does not name the damaged file"
done
rm -f "$db"
copy_db "$base/orders.db" "$db"
recover e

# -- (f) a truncated views file -----------------------------------------------

new_case f-truncated-views
truncate -s $(($(stat -c %s "$views") / 2)) "$views"
rm -f "$views-wal" "$views-shm"
for c in verify rebuild run status; do
  case $c in
    rebuild) args=(rebuild order_summary --progress=off "$store") ;;
    run) args=(run --orders=5 --progress=off "$store") ;;
    *) args=("$c" "$store") ;;
  esac
  run_orders "f-$c" "${args[@]}"
  expect_failure "the views file is truncated"
  expect_output "corrupt_database" "$c does not say the views are damaged"
  expect_output "$views" "$c does not name the damaged file"
done
# The log is intact: show needs no views.
run_orders f-show show "$(order_at "${middle[0]}")" "$store"
expect_rc 0
# Read models are derived: remove them and the next run builds them anew.
rm -f "$views" "$views-wal" "$views-shm"
run_orders f-run-new-views run --orders=0 --progress=off "$store"
expect_rc 0
recover f

finish_known_defects
echo "damaged store end-to-end: ok"

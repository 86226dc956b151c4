# shellcheck shell=bash disable=SC2154
# Helpers of the orders end-to-end scripts (damaged_store_e2e.sh,
# orders_concurrency_e2e.sh, orders_disk_full_e2e.sh). Source it; do not run
# it. The caller sets `orders` (the binary) and `dir` (a temporary
# directory it removes).

# Every orders command runs under this limit; hitting it is a hang.
ORDERS_TIMEOUT="${ORDERS_TIMEOUT:-60}"

# The output file and the command line of the last `run_orders`, shown by
# `fail`.
out=""
what=""
rc=0
known_defects=()

# fail MESSAGE: prints the message and the output of the last command, and
# exits 1.
fail() {
  echo "FAILED: $*" >&2
  if [ -n "$out" ] && [ -f "$out" ]; then
    echo "--- output of: $what" >&2
    cat "$out" >&2
    echo "---" >&2
  fi
  exit 1
}

# run_orders NAME ARGS...: runs `orders ARGS` under `timeout`, stdout and
# stderr to $dir/NAME.txt (`out`), the exit code in `rc`. A hang or a crash
# fails at once; any other exit code is for the caller to judge.
run_orders() {
  local name="$1"
  shift
  out="$dir/$name.txt"
  what="orders $*"
  set +e
  timeout "$ORDERS_TIMEOUT" "$orders" "$@" >"$out" 2>&1
  rc=$?
  set -e
  [ "$rc" -ne 124 ] || fail "hung: $what (killed after $ORDERS_TIMEOUT s)"
  [ "$rc" -lt 125 ] || fail "crashed or did not start (exit $rc): $what"
}

expect_rc() {
  [ "$rc" -eq "$1" ] || fail "exit code $rc, expected $1: $what"
}

# expect_failure WHY: the last command must have reported failure.
expect_failure() {
  [ "$rc" -ne 0 ] || fail "exit code 0 although $1: $what"
}

# expect_output REGEX WHY: the last command's output must match.
expect_output() {
  grep -Eq -- "$1" "$out" || fail "$2 (no /$1/ in the output)"
}

expect_no_output() {
  if grep -Eq -- "$1" "$out"; then
    fail "$2 (/$1/ in the output)"
  fi
}

# known_defect WHAT: records a failed assertion about a defect outside
# apps/orders that is reported but not fixed yet. The script goes on, so
# that everything else is still checked, and fails at the end
# (`finish_known_defects`).
known_defect() {
  echo "KNOWN DEFECT (still present): $1" >&2
  if [ -n "$out" ] && [ -f "$out" ]; then
    sed 's/^/    | /' "$out" >&2
  fi
  known_defects+=("$1")
}

finish_known_defects() {
  if [ "${#known_defects[@]}" -gt 0 ]; then
    echo "FAILED: ${#known_defects[@]} assertions on known defects:" >&2
    printf '  - %s\n' "${known_defects[@]}" >&2
    exit 1
  fi
}

# copy_db FROM TO: a consistent copy of a SQLite database (WAL included).
copy_db() {
  sqlite3 "$1" ".backup '$2'"
}

# uuid_of HEX: the canonical form of a 32-digit hex id.
uuid_of() {
  local h="$1"
  echo "${h:0:8}-${h:8:4}-${h:12:4}-${h:16:4}-${h:20:12}"
}

#!/usr/bin/env bash
# Runs every esbench scenario at a tiny size, so that a change which breaks
# a scenario (or its raw baseline) shows up in scripts/test rather than on
# the day somebody measures. Figures printed here mean nothing.
#
# Usage: bench/smoke.sh ESBENCH
# Servers come from the environment scripts/test sets: ES_TEST_PG_DSN,
# ES_TEST_REDIS_URL, ES_TEST_AMQP_URL, ES_TEST_KAFKA_URL.
set -uo pipefail

esbench=${1:?usage: bench/smoke.sh ESBENCH}
for var in ES_TEST_PG_DSN ES_TEST_REDIS_URL ES_TEST_AMQP_URL ES_TEST_KAFKA_URL; do
  if [ -z "${!var:-}" ]; then
    echo "smoke: $var is not set; start the servers with scripts/pg," \
      "scripts/redis, scripts/rabbitmq and scripts/kafka start and export" \
      "their dsn (scripts/test does)" >&2
    exit 1
  fi
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failed=0
runs=0

# run ROWS ARGS...: esbench must exit 0 and print at least ROWS JSON rows,
# each with a positive figure.
run() {
  local rows=$1
  shift
  runs=$((runs + 1))
  local out="$dir/out"
  if ! "$esbench" --dir="$dir/data" "$@" >"$out" 2>"$dir/err"; then
    echo "smoke: FAILED (exit code): esbench $*" >&2
    cat "$dir/err" "$out" >&2
    failed=$((failed + 1))
    return
  fi
  local got
  got=$(grep -c '^{"backend":' "$out")
  local zero
  zero=$(grep '^{"backend":' "$out" \
    | grep -cE '"(events_per_sec|bytes_per_aggregate)":(0|0\.0+)?[,}]')
  if [ "$got" -lt "$rows" ] || [ "$zero" -gt 0 ]; then
    echo "smoke: FAILED ($got of $rows rows, $zero with a zero figure):" \
      "esbench $*" >&2
    cat "$out" >&2
    failed=$((failed + 1))
    return
  fi
  echo "smoke: ok ($got rows): esbench $*"
}

pg=(--dsn="$ES_TEST_PG_DSN")
run 2 --backend=memory --scenario=append --events=400 --writers=4
run 2 --backend=sqlite --scenario=append --events=200 --writers=4 --sync=off
run 2 --backend=sqlite --scenario=append-batch --events=1000 --writers=1 \
  --sync=off
run 2 --backend=postgres "${pg[@]}" --scenario=append --events=200 --writers=4
run 2 --backend=postgres "${pg[@]}" --scenario=append --events=200 --writers=4 \
  --pg-feed=overlapping --pg-writer-connections=2
run 2 --backend=postgres "${pg[@]}" --scenario=append-batch --events=1000 \
  --writers=1
run 4 --backend=memory --scenario=commands --events=2000 --writers=4 \
  --aggregates=50
run 4 --backend=sqlite --scenario=commands --events=200 --writers=4 \
  --aggregates=20 --sync=off
run 1 --backend=memory --scenario=idle-memory --idle-aggregates=2000
run 3 --backend=sqlite --scenario=read-all --events=2000
run 3 --backend=postgres "${pg[@]}" --scenario=read-all --events=2000
run 2 --backend=postgres "${pg[@]}" --scenario=recover --events=500
run 2 --backend=sqlite --scenario=project --events=2000 --max-single=50
run 2 --scenario=bus-publish --bus=redis --redis-url="$ES_TEST_REDIS_URL" \
  --events=200 --batch=20
run 2 --scenario=bus-publish --bus=rabbitmq --amqp-url="$ES_TEST_AMQP_URL" \
  --events=200 --batch=20
run 2 --scenario=bus-publish --bus=kafka --kafka-url="$ES_TEST_KAFKA_URL" \
  --events=100 --batch=20
run 2 --scenario=relay --bus=redis --redis-url="$ES_TEST_REDIS_URL" \
  --events=200 --writers=2
run 1 --backend=postgres "${pg[@]}" --scenario=cluster --nodes=2 \
  --events=200 --writers=2 --aggregates=20

echo "smoke: $((runs - failed)) of $runs esbench runs passed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Several esbench processes appending to one PostgreSQL store at once, to
# measure how a feed scales across processes (bench/README.md).
# Usage: bench/multi_process.sh FEED PROCESSES WRITERS EVENTS_PER_PROCESS
# (FEED: serialized or overlapping; needs scripts/pg start and a Release
# build in build/release).
set -euo pipefail
cd "$(dirname "$0")/.."
B=build/release/bench/esbench; D="$(scripts/pg dsn)"
feed=$1; procs=$2; writers=$3; events=$4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
S=esmulti_$$
psql "$D" -qc "CREATE SCHEMA $S"
# Migrate and set the feed once, before the clock.
$B --backend=postgres --dsn="$D" --pg-schema=$S --pg-feed=$feed \
  --scenario=append --events=$writers --writers=$writers --skip-raw >/dev/null
start=$(date +%s.%N)
for i in $(seq $procs); do
  $B --backend=postgres --dsn="$D" --pg-schema=$S --pg-feed=$feed \
    --scenario=append --events=$events --writers=$writers --skip-raw \
    >"$out/$i.txt" 2>&1 &
done
wait
end=$(date +%s.%N)
n=$(psql "$D" -Atc "SELECT count(*) FROM $S.events")
# Wall time from the first start to the last exit (process start-up
# included), events appended by the processes.
python3 -c "print('feed=$feed processes=$procs writers each=$writers events=%d seconds=%.2f rate=%.0f events/s' % ($n - $writers, $end - $start, ($n - $writers) / ($end - $start)))"
psql "$D" -qc "DROP SCHEMA $S CASCADE" 2>/dev/null

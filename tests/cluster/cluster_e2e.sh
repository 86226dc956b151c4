#!/usr/bin/env bash
# The cluster as a user runs it: scripts/cluster starts three esnode
# processes (in a schema of their own on the test server), drives whole
# orders through them, verifies the log and the read model, reports the
# status and stops them.
#
# Usage: cluster_e2e.sh SOURCE_DIR ESNODE
set -euo pipefail
root=$1
export ES_ESNODE=$2
dsn=${ES_TEST_PG_DSN:-host=127.0.0.1 port=55432 user=postgres dbname=es_test}
schema="es_cluster_e2e_$$"
if ! psql "$dsn" -qc "CREATE SCHEMA $schema"; then
  echo "cannot reach PostgreSQL at '$dsn': start it with scripts/pg start" \
    "(or set ES_TEST_PG_DSN)" >&2
  exit 1
fi
export ES_CLUSTER_DSN="$dsn options='-c search_path=$schema'"
ES_CLUSTER_DIR=$(mktemp -d)
export ES_CLUSTER_DIR
# Three ports away from scripts/cluster's default, picked per run.
export ES_CLUSTER_PORT=$((30000 + RANDOM % 20000))
cleanup() {
  "$root/scripts/cluster" stop || true
  psql "$dsn" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" || true
  rm -rf "$ES_CLUSTER_DIR"
}
trap cleanup EXIT

"$root/scripts/cluster" start 3
"$root/scripts/cluster" drive 100
"$root/scripts/cluster" verify
status=$("$root/scripts/cluster" status)
echo "$status"
live=$(echo "$status" | awk '$2 == "yes"' | wc -l)
if [ "$live" -ne 3 ]; then
  echo "expected 3 live nodes in the status, found $live" >&2
  exit 1
fi
echo "cluster e2e: 3 nodes, 100 orders driven and verified"

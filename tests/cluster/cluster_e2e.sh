#!/usr/bin/env bash
# The cluster as a user runs it: scripts/cluster starts three esnode
# processes (in a schema of their own on the test server), drives whole
# orders through them, verifies the log and the read model, fetches each
# node's /ready and /metrics, reports the
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
# Three ports away from scripts/cluster's default, picked per run below
# Linux's ephemeral range (32768-60999): a port in it can be taken at any
# moment by a client socket of a test running beside this one.
export ES_CLUSTER_PORT=$((20000 + RANDOM % 12000))
# Each node serves the operations endpoints on a port of its choosing.
export ES_CLUSTER_ARGS="--http=127.0.0.1:0"
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
# shellcheck source=../common/http_get.sh
source "$(dirname "$0")/../common/http_get.sh"
for k in 1 2 3; do
  port=$(sed -n 's/^esnode node[0-9]*: serving .* on port \([0-9]*\)$/\1/p' \
    "$ES_CLUSTER_DIR/node$k.log")
  if [ -z "$port" ]; then
    echo "node$k printed no endpoints port" >&2
    exit 1
  fi
  ready=$(http_get "$port" /ready)
  if [ "$(echo "$ready" | head -n 1)" != 200 ]; then
    echo "node$k: /ready is not 200: $ready" >&2
    exit 1
  fi
  metrics=$(http_get "$port" /metrics)
  for want in 'es_cluster_connected 1' 'es_cluster_nodes_live 3' \
    'es_store_up{store="orders"} 1'; do
    if ! echo "$metrics" | grep -qxF "$want"; then
      echo "node$k: /metrics lacks '$want'" >&2
      echo "$metrics" | grep '^es_cluster' >&2
      exit 1
    fi
  done
  # A lease moving between nodes (the last node to join takes its share)
  # leaves an item without an owner for a moment: wait, up to 15 s, for
  # every item to have one.
  deadline=$((SECONDS + 15))
  while echo "$metrics" | grep -q '^es_cluster_items_unowned{.*} [1-9]'; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "node$k: items without an owner after 15 s:" >&2
      echo "$metrics" | grep '^es_cluster' >&2
      exit 1
    fi
    sleep 0.2
    metrics=$(http_get "$port" /metrics)
  done
done
echo "cluster e2e: 3 nodes, 100 orders driven and verified, endpoints ready"

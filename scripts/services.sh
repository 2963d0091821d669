#!/usr/bin/env bash
# Starts throwaway Redis and PostgreSQL servers on free loopback ports in a temporary
# directory, runs the given command with their URLs exported, then always stops them and
# removes the directory (on success, failure or Ctrl-C).
#
#   scripts/services.sh swift test
#
# Exports FOYER_TEST_REDIS_URL, FOYER_TEST_REDIS_CLUSTER_URL (six nodes: three primaries,
# three replicas) and BOXOFFICE_TEST_DATABASE_URL.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

root=$(mktemp -d /tmp/foyer-services.XXXXXX)
chmod 755 "$root"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e  # stop everything, whatever one step returns
  stop_redis
  stop_redis_cluster
  stop_postgres "$root/pg"
  rm -rf "$root"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

redis_port=$(free_port)
start_redis "$root/redis" "$redis_port" --save "" --appendonly no
start_redis_cluster "$root/cluster"
pg_port=$(free_port)
start_postgres "$root/pg" "$pg_port"

export FOYER_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
export FOYER_TEST_REDIS_CLUSTER_URL="$redis_cluster_url"
export BOXOFFICE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
echo "services: redis $FOYER_TEST_REDIS_URL, cluster $FOYER_TEST_REDIS_CLUSTER_URL, postgres $BOXOFFICE_TEST_DATABASE_URL"
"$@"

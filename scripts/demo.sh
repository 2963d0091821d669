#!/usr/bin/env bash
# `make demo`: brings up what is built so far under .run/ on loopback, until Ctrl-C.
# Data in .run/ is kept between runs (Redis AOF, the PostgreSQL cluster); `make clean` resets it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

run=$PWD/.run
mkdir -p "$run"
chmod 755 "$run"

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "stopping…"
  stop_redis
  stop_postgres "$run/pg"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

redis_port=${FOYER_DEMO_REDIS_PORT:-6390}
pg_port=${FOYER_DEMO_PG_PORT:-5440}
start_redis "$run/redis" "$redis_port" --appendonly yes --save ""
start_postgres "$run/pg" "$pg_port"

cat <<MSG

Foyer demo — what runs now
  Redis       redis://127.0.0.1:$redis_port   (AOF persistence in .run/redis)
  PostgreSQL  postgres://postgres@127.0.0.1:$pg_port/postgres   (data in .run/pg)

Not built yet (see the open issues):
  - the gateway (foyer gateway), its waiting page and the operator dashboard
  - BoxOffice (boxoffice serve) and the demo on-sale
So there is no page to open in a browser yet. What exists can be measured:
  loadtest/bench-redis    RedisNIO vs redis-benchmark
  loadtest/bench-tokens   pass verification per second and allocations

Press Ctrl-C to stop.
MSG
while true; do sleep 3600; done

#!/usr/bin/env bash
# `make demo`: brings up what is built so far under .run/ on loopback, until Ctrl-C.
# Data in .run/ is kept between runs (Redis AOF, the PostgreSQL cluster); `make clean` resets it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

run=$PWD/.run
mkdir -p "$run"
chmod 755 "$run"

gateway_pid=""
cleanup() {
  trap - EXIT INT TERM
  set +e  # stop everything, whatever one step returns
  echo
  echo "stopping…"
  if [[ -n $gateway_pid ]]; then
    kill "$gateway_pid" 2>/dev/null
    wait "$gateway_pid" 2>/dev/null
  fi
  stop_redis
  stop_postgres "$run/pg"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

redis_port=${FOYER_DEMO_REDIS_PORT:-6390}
pg_port=${FOYER_DEMO_PG_PORT:-5440}
start_redis "$run/redis" "$redis_port" --appendonly yes --save ""
start_postgres "$run/pg" "$pg_port"

# Signing keys are generated per demo run and kept in .run/ (never in the repository).
[[ -f $run/keys ]] || echo "demo:$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >"$run/keys"
chmod 600 "$run/keys"
[[ -f $run/admin-token ]] || head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$run/admin-token"
chmod 600 "$run/admin-token"
admin_token=$(cat "$run/admin-token")
gateway_port=${FOYER_DEMO_PORT:-8080}
admin_port=${FOYER_DEMO_ADMIN_PORT:-8081}
FOYER_KEYS_FILE="$run/keys" FOYER_ADMIN_TOKEN="$admin_token" .build/debug/foyer gateway --host 127.0.0.1 --port "$gateway_port" \
  --admin-port "$admin_port" \
  --redis "redis://127.0.0.1:$redis_port" --room "onsale:/events" 2>"$run/gateway.log" &
gateway_pid=$!
wait_port "$gateway_port" "foyer gateway"
wait_port "$admin_port" "foyer admin API"
# A small demo: 30 admissions a minute, 5 shoppers at a time.
curl -s -o /dev/null -X PATCH -H "Authorization: Bearer $admin_token" \
  -d '{"rate_per_minute":30,"max_active":5}' "http://127.0.0.1:$admin_port/rooms/onsale"

cat <<MSG

Foyer demo — what runs now
  Gateway     http://127.0.0.1:$gateway_port/events/1   <- open this in a browser (the waiting room)
              room 'onsale' protects /events; its log is .run/gateway.log
  Redis       redis://127.0.0.1:$redis_port   (AOF persistence in .run/redis)
  PostgreSQL  postgres://postgres@127.0.0.1:$pg_port/postgres   (data in .run/pg)

  Admin API   http://127.0.0.1:$admin_port   token: $admin_token   (also in .run/admin-token)

Watch and change the room live with the CLI:
  export FOYER_ADMIN_TOKEN=$admin_token FOYER_ADMIN_URL=http://127.0.0.1:$admin_port
  .build/debug/foyer ctl rooms
  .build/debug/foyer ctl set onsale --rate 120 --max-active 10
  .build/debug/foyer ctl pause onsale ; .build/debug/foyer ctl resume onsale
or the admin API itself, e.g.:
  curl -s -H "Authorization: Bearer $admin_token" http://127.0.0.1:$admin_port/rooms/onsale
  curl -s -X PATCH -H "Authorization: Bearer $admin_token" -d '{"state":"paused"}' http://127.0.0.1:$admin_port/rooms/onsale
  curl -s -X PATCH -H "Authorization: Bearer $admin_token" -d '{"state":"queue","rate_per_minute":120}' http://127.0.0.1:$admin_port/rooms/onsale

Not built yet (see the open issues): BoxOffice and the demo on-sale — so the demo has no
upstream and an admitted visitor gets a 502 'no_upstream' —, metrics and the dashboard. What exists can also be measured: loadtest/bench-redis, bench-tokens, bench-room.

Press Ctrl-C to stop.
MSG
# `wait` (not a foreground sleep) lets the INT/TERM trap run at once.
while true; do sleep 3600 & wait $!; done

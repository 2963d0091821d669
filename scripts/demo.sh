#!/usr/bin/env bash
# `make demo`: the whole on-sale under .run/ on loopback, until Ctrl-C: Redis (AOF),
# PostgreSQL, BoxOffice with the demo on-sale (pre-queue open now, sale a minute later) and
# the gateway in front of it.
# Data in .run/ is kept between runs (Redis AOF, the PostgreSQL cluster, the orders);
# `make clean` resets it. Each run opens a new pre-queue: the room's sale starts a minute later.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

run=$PWD/.run
mkdir -p "$run"
chmod 755 "$run"

gateway_pid=""
boxoffice_pid=""
cleanup() {
  trap - EXIT INT TERM
  set +e  # stop everything, whatever one step returns
  echo
  echo "stopping…"
  for pid in $gateway_pid $boxoffice_pid; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
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
[[ -f $run/staff-token ]] || head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$run/staff-token"
chmod 600 "$run/staff-token"
staff_token=$(cat "$run/staff-token")
gateway_port=${FOYER_DEMO_PORT:-8080}
admin_port=${FOYER_DEMO_ADMIN_PORT:-8081}
boxoffice_port=${FOYER_DEMO_BOXOFFICE_PORT:-9090}

# BoxOffice: its database, the demo on-sale, the API on loopback behind the gateway.
psql -h 127.0.0.1 -p "$pg_port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'boxoffice'" | grep -q 1 \
  || psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE DATABASE boxoffice"
export BOXOFFICE_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/boxoffice"
export FOYER_KEYS_FILE="$run/keys"
on_sale_in=60
event=$(.build/debug/boxoffice seed --demo --on-sale-in "$on_sale_in" 2>>"$run/boxoffice.log")
on_sale_ms=$(( ($(date +%s) + on_sale_in) * 1000 ))
BOXOFFICE_ADMIN_TOKEN="$admin_token" BOXOFFICE_STAFF_TOKEN="$staff_token" .build/debug/boxoffice serve --config config/boxoffice.yaml \
  --port "$boxoffice_port" 2>>"$run/boxoffice.log" &
boxoffice_pid=$!
wait_port "$boxoffice_port" "boxoffice"

# The gateway's room 'onsale' protects where seats are taken; a buyer's orders, tickets and
# the door's check-in stay outside it (BoxOffice checks those itself).
FOYER_ADMIN_TOKEN="$admin_token" .build/debug/foyer gateway --host 127.0.0.1 --port "$gateway_port" \
  --admin-port "$admin_port" --redis "redis://127.0.0.1:$redis_port" \
  --room "onsale:/events" --room "onsale:/holds" \
  --upstream "http://127.0.0.1:$boxoffice_port" 2>"$run/gateway.log" &
gateway_pid=$!
wait_port "$gateway_port" "foyer gateway"
wait_port "$admin_port" "foyer admin API"
# Each run is a new on-sale: the per-client counts of the last one (places a day, new ids a
# minute, all from this machine's one address) start again.
redis-cli -p "$redis_port" --scan --pattern 'foyer:{onsale}:places:*' | xargs -r redis-cli -p "$redis_port" DEL >/dev/null
redis-cli -p "$redis_port" --scan --pattern 'foyer:{onsale}:minted:*' | xargs -r redis-cli -p "$redis_port" DEL >/dev/null
# A small demo: the pre-queue is open now and the sale starts with the headliner's on-sale;
# then 30 admissions a minute, 5 shoppers at a time, 10-minute sessions.
curl -sf -o /dev/null -X PATCH -H "Authorization: Bearer $admin_token" \
  -d "{\"state\":\"queue\",\"rate_per_minute\":30,\"max_active\":5,\"starts_at\":$on_sale_ms}" \
  "http://127.0.0.1:$admin_port/rooms/onsale"

cat <<MSG

Foyer demo — what runs now
  Shop        http://127.0.0.1:$gateway_port/events/$event   <- open this in a browser
              before $(date -d "@$((on_sale_ms / 1000))" +%H:%M:%S) you join the pre-queue; then the line moves
              (30 a minute, 5 shoppers at a time). Logs: .run/gateway.log, .run/boxoffice.log
  My orders   http://127.0.0.1:$gateway_port/orders   (after buying: tickets as QR codes, cancel)
  Check-in    http://127.0.0.1:$gateway_port/checkin   staff token: $staff_token
  Gateway     room 'onsale' protects /events and /holds in front of BoxOffice;
              one address takes at most 20 places in line a day and 60 new visitor ids a
              minute (lift it: foyer ctl set onsale --max-places-per-client 0)
  BoxOffice   http://127.0.0.1:$boxoffice_port (loopback; refuses requests without a pass)
  Redis       redis://127.0.0.1:$redis_port   (AOF persistence in .run/redis)
  PostgreSQL  postgres://postgres@127.0.0.1:$pg_port/boxoffice   (data in .run/pg)

  Dashboard   http://127.0.0.1:$admin_port/#token=$admin_token   <- live numbers, charts, controls
  Admin API   http://127.0.0.1:$admin_port   token: $admin_token   (also in .run/admin-token)
  Metrics     curl -H "Authorization: Bearer $admin_token" http://127.0.0.1:$admin_port/metrics

Watch and change the room live with the CLI:
  export FOYER_ADMIN_TOKEN=$admin_token FOYER_ADMIN_URL=http://127.0.0.1:$admin_port
  .build/debug/foyer ctl rooms
  .build/debug/foyer ctl set onsale --rate 120 --max-active 10
  .build/debug/foyer ctl pause onsale ; .build/debug/foyer ctl resume onsale

An app's journey with curl (keep the cookies; ask again after pollAfterMs until "admitted":true;
  sooner is a 429 poll_too_soon):
  curl -s -c jar -b jar -H 'Accept: application/json' http://127.0.0.1:$gateway_port/_foyer/status?room=onsale
  curl -s -b jar http://127.0.0.1:$gateway_port/events/$event/seats?section=Floor | head -c 300
  curl -s -b jar -X POST -d '{"section":"Floor","quantity":2}' http://127.0.0.1:$gateway_port/events/$event/holds
  curl -s -b jar -X POST -H 'Idempotency-Key: try-1' -d '{"card":{"number":"4242424242424242"}}' \\
       http://127.0.0.1:$gateway_port/holds/HOLD_ID/checkout


Press Ctrl-C to stop.
MSG
# `wait` (not a foreground sleep) lets the INT/TERM trap run at once.
while true; do sleep 3600 & wait $!; done

# Shared by scripts/services.sh, scripts/demo.sh and the loadtest benches: start and stop
# Redis and PostgreSQL on free loopback ports. Source it; it defines functions only.

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

# PostgreSQL refuses to run as root: use the 'postgres' account the package created.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Below Linux's ephemeral range (32768-60999): a port an outgoing connection holds passes the
# connect probe but cannot be bound.
free_port() {
  local port
  while :; do
    port=$((10000 + RANDOM % 22000))
    (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

wait_port() {
  for _ in $(seq 1 400); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "error: nothing listens on 127.0.0.1:$1 ($2 did not start)" >&2
  return 1
}

# For benchmark rounds: `mark=$(steal_mark)` before a run, `steal_since "$mark"` after it
# prints the share (%) of this VM's CPU time that the hypervisor gave to other guests
# meanwhile. On a shared host that share moves the figures more than most code changes do.
steal_mark() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9 ":" $9}' /proc/stat; }
steal_since() {
  awk -v a="$1" -v b="$(steal_mark)" 'BEGIN {
    split(a, x, ":"); split(b, y, ":"); t = y[1] - x[1]
    printf "%.0f", (t > 0 ? 100 * (y[2] - x[2]) / t : 0) }'
}

# start_redis DIR PORT [redis-server options…]: sets redis_pid.
start_redis() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize no --loglevel warning \
    --logfile "$dir/redis.log" "$@" &
  redis_pid=$!
  wait_port "$port" redis-server || { tail -5 "$dir/redis.log" >&2; return 1; }
}

stop_redis() {
  if [[ -n ${redis_pid:-} ]]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  redis_pid=""
}

# start_redis_cluster DIR: six nodes on free ports made a Redis Cluster (three primaries,
# three replicas); sets redis_cluster_pids and redis_cluster_url (redis-cluster://…).
start_redis_cluster() {
  local dir=$1 port bus node seeds=()
  redis_cluster_pids=()
  for node in 0 1 2 3 4 5; do
    port=$(free_port)
    bus=$(free_port)  # given, so a port above 55,535 still has a bus port
    mkdir -p "$dir/$node"
    redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --dir "$dir/$node" --daemonize no \
      --loglevel warning --logfile "$dir/$node/redis.log" --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 1000 &
    redis_cluster_pids+=($!)
    wait_port "$port" redis-server || { tail -5 "$dir/$node/redis.log" >&2; return 1; }
    seeds+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 \
    || { tail -20 "$dir/create.log" >&2; return 1; }
  for node in "${seeds[@]}"; do
    for _ in $(seq 150); do
      redis-cli -p "${node##*:}" cluster info 2>/dev/null | grep -q cluster_state:ok && break
      sleep 0.2
    done
  done
  redis_cluster_url="redis-cluster://$(IFS=,; echo "${seeds[*]}")"
}

# wait_redis_cluster_replicas: until every replica of $redis_cluster_url has synced with its
# primary (WAIT would otherwise wait for nobody).
wait_redis_cluster_replicas() {
  local seed lagging
  for _ in $(seq 100); do
    lagging=0
    for seed in $(echo "${redis_cluster_url#redis-cluster://}" | tr ',' ' '); do
      redis-cli -p "${seed##*:}" info replication | grep -q 'role:slave' \
        && ! redis-cli -p "${seed##*:}" info replication | grep -q 'master_link_status:up' && lagging=1
    done
    [[ $lagging -eq 0 ]] && return 0
    sleep 0.2
  done
  echo "error: the cluster's replicas did not sync within 20 s" >&2
  return 1
}

stop_redis_cluster() {
  local pid
  for pid in "${redis_cluster_pids[@]:-}"; do
    [[ -n $pid ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
  done
  redis_cluster_pids=()
  return 0
}

# start_postgres DIR PORT: initialises DIR when empty, starts the server (trust auth, loopback).
start_postgres() {
  local data=$1 port=$2
  mkdir -p "$data"
  [[ $(id -u) -eq 0 ]] && chown postgres "$data" && chmod 700 "$data"
  if [[ ! -f $data/PG_VERSION ]]; then
    as_pg "$pg_bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-sync >"$data.initdb.log" 2>&1 \
      || { cat "$data.initdb.log" >&2; return 1; }
  fi
  as_pg "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
  wait_port "$port" postgres
}

stop_postgres() {
  local data=$1
  if [[ -f $data/postmaster.pid ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
  fi
}

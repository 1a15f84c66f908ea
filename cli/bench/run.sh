#!/usr/bin/env bash
# Throughput of `keyctl serve`'s /v1/authorize under wrk, on loopback, one
# node per store, then a flood of forged keys against a PostgreSQL node.
#
#   cargo build --release -p api-keys-cli && cargo build --release --example forged_keys
#   cli/bench/run.sh            # DURATION=10s CONNECTIONS=32 THREADS=2 by default
#
# Needs wrk, psql and redis-cli, PostgreSQL on 127.0.0.1:5432 (database
# `test`) and Redis on 127.0.0.1:6379. Works in a fresh schema and key
# prefix, removed at the end. Every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${KEYCTL:-target/release/keyctl}
D=${DURATION:-10s}
C=${CONNECTIONS:-32}
T=${THREADS:-2}
PG=${PG:-postgres://postgres@127.0.0.1:5432/test}
REDIS=${REDIS:-redis://127.0.0.1:6379}
ADDR=127.0.0.1:18080
work=$(mktemp -d)
schema=keyctl_bench_$$
prefix=keyctl-bench-$$
API_KEYS_PEPPER=$(head -c 32 /dev/urandom | base64)
export API_KEYS_PEPPER
pid=

cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS \"$schema\" CASCADE" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS" --scan --pattern "{$prefix}:*" | xargs -r redis-cli -u "$REDIS" del >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_node URL [VAR=value…]: a node on $ADDR; waits for its listening line.
start_node() {
  local url=$1; shift
  (cd "$work" && exec env API_KEYS_DATABASE_URL="$url" "$@" "$OLDPWD/$K" serve --listen "$ADDR" >"$work/out" 2>"$work/log") &
  pid=$!
  for _ in $(seq 200); do grep -q "listening on" "$work/log" 2>/dev/null && return; sleep 0.05; done
  cat "$work/log"; exit 1
}
stop_node() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
metric() { curl -s "http://$ADDR/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
new_key() { (cd "$work" && "$OLDPWD/$K" --database-url "$1" create --service-account-id bench --create-service-account --format json 2>/dev/null) | sed -n 's/.*"secret": *"\([^"]*\)".*/\1/p'; }
bench() { # name key
  local rps p99
  wrk -t"$T" -c"$C" -d"$D" --latency -H "Authorization: Api-Key $2" "http://$ADDR/v1/authorize" >"$work/wrk.txt"
  rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")
  non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/wrk.txt")
  printf '%-22s %10s req/s  p99 %8s  non-2xx %s\n' "$1" "$rps" "$p99" "${non2xx:-0}"
}

echo "wrk -t$T -c$C -d$D on /v1/authorize ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
start_node memory:; bench "memory" "$(sed -n 's/^demo-key: //p' "$work/out")"; stop_node
sqlite="sqlite://$work/bench.db?mode=rwc"
key=$(new_key "$sqlite"); start_node "$sqlite"; bench "SQLite" "$key"; stop_node
pg="$PG?schema=$schema"
key=$(new_key "$pg"); start_node "$pg"; bench "PostgreSQL + cache" "$key"; stop_node
start_node "$pg" API_KEYS_CACHE=off; bench "PostgreSQL, no cache" "$key"; stop_node
redis="$REDIS?prefix=$prefix"
key=$(new_key "$redis"); start_node "$redis"; bench "Redis + cache" "$key"; stop_node

# The flood: FLOOD distinct forged keys with valid checksums against a
# PostgreSQL node, while a second wrk measures a valid key's latency.
FLOOD=${FLOOD:-100000}
target/release/examples/forged_keys "$FLOOD" >"$work/forged.txt"
start_node "$pg"
until [ "$(metric keyctl_shield_trusted)" = "1" ]; do sleep 0.05; done
wrk -t1 -c4 -d"$D" --latency -H "Authorization: Api-Key $key" "http://$ADDR/v1/authorize" >"$work/quiet.txt"
before=$(metric keyctl_store_queries_total)
FORGED="$work/forged.txt" wrk -t1 -c28 -d"$D" -s cli/bench/flood.lua "http://$ADDR/v1/authorize" >"$work/flood.txt" &
flood=$!
wrk -t1 -c4 -d"$D" --latency -H "Authorization: Api-Key $key" "http://$ADDR/v1/authorize" >"$work/valid.txt"
wait "$flood"
after=$(metric keyctl_store_queries_total)
forged=$(awk '/requests in/ { print $1 }' "$work/flood.txt")
valid=$(awk '/requests in/ { print $1 }' "$work/valid.txt")
echo "flood: $forged forged requests ($FLOOD distinct keys) and the $valid valid-key requests beside them caused $((${after%.*} - ${before%.*})) store queries"
echo "valid key p99: $(awk '$1 == "99%" { print $2 }' "$work/quiet.txt") without the flood, $(awk '$1 == "99%" { print $2 }' "$work/valid.txt") during it"
stop_node

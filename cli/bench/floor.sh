#!/usr/bin/env bash
# `keyctl serve`'s /v1/authorize beside the HTTP floor: a bare axum server
# answering 200 on the same route (examples/http_floor.rs). Each server runs
# pinned to CPU 0 and wrk to CPU 1; the runs alternate (floor, valid key,
# bad checksum) ROUNDS times and the medians are compared. Memory store.
#
#   cargo build --release -p api-keys-cli
#   cargo build --release --features axum --example http_floor
#   cli/bench/floor.sh          # ROUNDS=5 DURATION=5s CONNECTIONS=32
#
# Needs wrk and taskset. Everything stays on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${KEYCTL:-target/release/keyctl}
F=${FLOOR:-target/release/examples/http_floor}
R=${ROUNDS:-5}
D=${DURATION:-5s}
C=${CONNECTIONS:-32}
KEYCTL_ADDR=127.0.0.1:18080
FLOOR_ADDR=127.0.0.1:18081
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# wait_for FILE TEXT: until FILE holds TEXT (10 s at most).
wait_for() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.05; done; cat "$1"; exit 1; }

(cd "$work" && exec taskset -c 0 env API_KEYS_DATABASE_URL=memory: "$OLDPWD/$K" serve --listen "$KEYCTL_ADDR" >"$work/out" 2>"$work/log") &
pids+=($!)
wait_for "$work/log" "listening on"
taskset -c 0 "$F" "$FLOOR_ADDR" 2>"$work/floor.log" &
pids+=($!)
wait_for "$work/floor.log" "listening on"

key=$(sed -n 's/^demo-key: //p' "$work/out")
# The same key with its last character (part of the checksum) changed.
last=${key: -1}
bad=${key%?}$([ "$last" = A ] && echo B || echo A)

# run URL KEY: requests per second of one wrk run.
run() {
  taskset -c 1 wrk -t1 -c"$C" -d"$D" -H "Authorization: Api-Key $2" "http://$1/v1/authorize" |
    awk '/Requests\/sec/ { print $2 }'
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

for i in $(seq "$R"); do
  run "$FLOOR_ADDR" "$key" >>"$work/floor.txt"
  run "$KEYCTL_ADDR" "$key" >>"$work/valid.txt"
  run "$KEYCTL_ADDR" "$bad" >>"$work/bad.txt"
done
floor=$(median <"$work/floor.txt")
valid=$(median <"$work/valid.txt")
badck=$(median <"$work/bad.txt")
echo "wrk -t1 -c$C -d$D, $R alternating rounds, servers on CPU 0, wrk on CPU 1 (load $(cut -d' ' -f1-3 /proc/loadavg))"
printf 'floor (bare axum, 200)      %10.0f req/s\n' "$floor"
printf 'keyctl, valid key (200)     %10.0f req/s  %.2fx the floor\n' "$valid" "$(echo "$valid / $floor" | bc -l)"
printf 'keyctl, bad checksum (401)  %10.0f req/s  %.2fx the floor\n' "$badck" "$(echo "$badck / $floor" | bc -l)"

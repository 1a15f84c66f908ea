# Shared by start.sh and start_redis.sh (sourced): starts `keyctl serve`
# over $1 on 127.0.0.1:$2, logging to $3, and waits until its flood shield
# is trusted. Sets `pid`, `ready` (seconds to the first /readyz 200),
# `trusted` (seconds to `keyctl_shield_trusted 1`) and `m` (the last
# /metrics text), then prints the figures.
start_and_wait_trusted() {
  local url=$1 port=$2 log=$3 start now
  start=$(date +%s.%N)
  "$keyctl" --database-url "$url" serve --listen "127.0.0.1:$port" >"$log" 2>&1 &
  pid=$!
  # Stop the node on any exit, then run the caller's `on_exit` (if set).
  trap 'kill "$pid" 2>/dev/null || true; eval "${on_exit:-true}"' EXIT
  ready=""
  while :; do
    now=$(date +%s.%N)
    if [ -z "$ready" ] && curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      ready=$(echo "$now - $start" | bc)
    fi
    m=$(curl -fs "http://127.0.0.1:$port/metrics" 2>/dev/null || true)
    if grep -q '^keyctl_shield_trusted 1' <<<"$m"; then
      trusted=$(echo "$now - $start" | bc)
      break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.2
  done
  local ids bytes rss
  ids=$(grep '^keyctl_shield_ids ' <<<"$m" | cut -d' ' -f2)
  bytes=$(grep '^keyctl_shield_bytes ' <<<"$m" | cut -d' ' -f2)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "ready (/readyz 200) after ${ready:-?} s; shield trusted after $trusted s"
  echo "shield: $ids ids, $bytes bytes ($(echo "scale=2; $bytes / $ids" | bc) bytes per id); node RSS ${rss} kB"
}

#!/usr/bin/env bash
# How long a `keyctl serve` node over PostgreSQL with N keys takes to become
# ready with its flood shield trusted, and what the shield then holds.
#
#   benches/scale/start.sh [N]        # default 10,000,000
#
# Fills a fresh schema (`scale_<N>`, on 127.0.0.1:5432, database `test`)
# with N keys in one `INSERT … SELECT generate_series` (ids `fx` + 18 hex
# digits; digests that match no secret, so nothing here verifies), then
# starts a release `keyctl serve` on loopback and polls its /metrics until
# `keyctl_shield_trusted` is 1. Prints the fill time, the time to ready and
# to trusted, the shield's bytes per id, the node's RSS and the rows it
# reads in an idle minute (`pg_stat_user_tables`); then stops the
# node and drops the schema (KEEP=1 keeps it for another run). Nothing here
# runs in CI.
set -euo pipefail
n=${1:-10000000}
root=$(git rev-parse --show-toplevel)
schema="scale_${n}"
db="postgres://postgres@127.0.0.1:5432/test"
url="$db?schema=$schema"
port=${PORT:-18480}
cargo build --release -q -p api-keys-cli --manifest-path "$root/Cargo.toml"
keyctl="$root/target/release/keyctl"
export API_KEYS_PEPPER=${API_KEYS_PEPPER:-$(head -c 32 /dev/urandom | base64)}

if [ "$(psql -qtA "$db" -c "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '$schema'")" = 0 ]; then
  # Any command creates and migrates the schema.
  "$keyctl" --database-url "$url" list --service-account-id scale >/dev/null
  start=$(date +%s.%N)
  psql -q "$db" <<SQL
SET search_path TO "$schema";
INSERT INTO api_keys (id, service_account_id, created_at, scopes, masked_key, pepper_version, digest, status, kind)
SELECT 'fx' || lpad(to_hex(g), 18, '0'), 'scale-' || (g % 1000), 1700000000000000000, ARRAY['yc.postbox.send'],
       'abcdef', 1, sha256(int8send(g)), 'active', 'native'
FROM generate_series(1, $n) AS g;
ANALYZE api_keys;
SQL
  echo "filled $n keys in $(echo "$(date +%s.%N) - $start" | bc) s"
fi

start=$(date +%s.%N)
"$keyctl" --database-url "$url" serve --listen "127.0.0.1:$port" >/tmp/scale-serve.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
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
  kill -0 $pid 2>/dev/null || { cat /tmp/scale-serve.log; exit 1; }
  sleep 0.2
done
ids=$(grep '^keyctl_shield_ids ' <<<"$m" | cut -d' ' -f2)
bytes=$(grep '^keyctl_shield_bytes ' <<<"$m" | cut -d' ' -f2)
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "ready (/readyz 200) after ${ready:-?} s; shield trusted after $trusted s"
echo "shield: $ids ids, $bytes bytes ($(echo "scale=2; $bytes / $ids" | bc) bytes per id); node RSS ${rss} kB"
# An idle minute: rows the node reads from the schema's tables.
rows() {
  psql -qtA "$db" -c "SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)
    FROM pg_stat_user_tables WHERE schemaname = '$schema'"
}
before=$(rows)
sleep 60
echo "idle minute: $(( $(rows) - before )) rows read"
kill $pid
if [ "${KEEP:-0}" != 1 ]; then
  psql -q "$db" -c "DROP SCHEMA \"$schema\" CASCADE"
fi

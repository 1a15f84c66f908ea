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
# shellcheck source=common.sh
source "$root/benches/scale/common.sh"
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

start_and_wait_trusted "$url" "$port" /tmp/scale-serve.log
# An idle minute: rows the node reads from the schema's tables.
rows() {
  psql -qtA "$db" -c "SELECT coalesce(sum(coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)), 0)
    FROM pg_stat_user_tables WHERE schemaname = '$schema'"
}
# Backends report their counters to the statistics system within about
# 10 s when idle: wait, so the start's full load is counted before this.
sleep 11
before=$(rows)
sleep 60
echo "idle minute: $(( $(rows) - before )) rows read"
kill $pid
if [ "${KEEP:-0}" != 1 ]; then
  psql -q "$db" -c "DROP SCHEMA \"$schema\" CASCADE"
fi

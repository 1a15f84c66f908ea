#!/usr/bin/env bash
# As start.sh, over Redis: how long a `keyctl serve` node over a Redis with
# N keys takes to become ready with its flood shield trusted, and what the
# shield and Redis then hold.
#
#   benches/scale/start_redis.sh [N]        # default 10,000,000
#
# Starts a Redis of its own on 127.0.0.1:$PORT (default 6390; no
# persistence; stopped at the end) so the shared test Redis is untouched,
# fills it through `redis-cli --pipe` with N records in the store's layout 1
# (`HSET {p}:key:<id>` and the account index `ZADD {p}:sa:<account>`; ids
# `fx` + 18 hex digits, digests that match no secret), then starts a release
# `keyctl serve` on loopback and polls /metrics until the shield is trusted.
# Nothing here runs in CI.
set -euo pipefail
n=${1:-10000000}
root=$(git rev-parse --show-toplevel)
port=${PORT:-6390}
http=${HTTP_PORT:-18481}
prefix=scale
cargo build --release -q -p api-keys-cli --manifest-path "$root/Cargo.toml"
keyctl="$root/target/release/keyctl"
# shellcheck source=common.sh
source "$root/benches/scale/common.sh"
export API_KEYS_PEPPER=${API_KEYS_PEPPER:-$(head -c 32 /dev/urandom | base64)}

redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --logfile /tmp/scale-redis.log --pidfile /tmp/scale-redis.pid
on_exit='redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true'
trap "$on_exit" EXIT
sleep 0.5
start=$(date +%s.%N)
python3 - "$n" "$prefix" <<'PY' | redis-cli -p "$port" --pipe >/dev/null
import sys, base64, hashlib
n, p = int(sys.argv[1]), sys.argv[2]
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
buf = []
for g in range(1, n + 1):
    kid = "fx%018x" % g
    sa = "scale-%d" % (g % 1000)
    digest = base64.b64encode(hashlib.sha256(g.to_bytes(8, "big")).digest())
    buf.append(cmd("HSET", "{%s}:key:%s" % (p, kid), "id", kid, "service_account_id", sa, "description", "",
                   "created_at", "1700000000000000000", "scopes", "yc.postbox.send", "masked_key", "abcdef",
                   "pepper_version", "1", "digest", digest, "status", "active", "kind", "native"))
    buf.append(cmd("ZADD", "{%s}:sa:%s" % (p, sa), "0", kid))
    if len(buf) >= 20000:
        out.write(b"".join(buf)); buf.clear()
out.write(b"".join(buf))
PY
echo "filled $n keys in $(echo "$(date +%s.%N) - $start" | bc) s; Redis used_memory $(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r') bytes"

start_and_wait_trusted "redis://127.0.0.1:$port?prefix=$prefix" "$http" /tmp/scale-serve-redis.log
# An idle minute: the commands the node sends (INFO commandstats, this Redis serves only it).
redis-cli -p "$port" config resetstat >/dev/null
sleep 60
echo "idle minute: $(redis-cli -p "$port" info commandstats | tr -d '\r' | grep '^cmdstat' | sed 's/,usec=.*//' | tr '\n' ' ')"

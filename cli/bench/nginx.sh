#!/usr/bin/env bash
# nginx auth_request in front of `keyctl serve` (memory: store), with and
# without upstream keepalive, in the same run: two nginx processes on
# loopback with the configuration of cli/README.md ("Behind a reverse
# proxy"), one of them without `keepalive`, `proxy_http_version 1.1` and the
# empty `Connection` header; wrk alternates between them ROUNDS times.
#
#   cargo build --release -p api-keys-cli
#   cli/bench/nginx.sh          # DURATION=10s CONNECTIONS=32 THREADS=2 ROUNDS=2 by default
#
# Needs nginx and wrk. Binds 127.0.0.1 only; every wrk run is bounded by
# DURATION; nginx and keyctl are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
K=${KEYCTL:-target/release/keyctl}
D=${DURATION:-10s}
C=${CONNECTIONS:-32}
T=${THREADS:-2}
R=${ROUNDS:-2}
NGINX=${NGINX:-/usr/sbin/nginx}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

API_KEYS_PEPPER=$(head -c 32 /dev/urandom | base64) "$K" --database-url memory: serve --listen 127.0.0.1:18090 \
  >"$work/keyctl.out" 2>"$work/keyctl.log" &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/keyctl.log" 2>/dev/null && break; sleep 0.05; done
key=$(sed -n 's/^demo-key: //p' "$work/keyctl.out")
[ -n "$key" ] || { cat "$work/keyctl.log"; exit 1; }

mkdir -p "$work/www/monitoring"
echo ok >"$work/www/monitoring/status"
# config NAME PORT KEEPALIVE(yes|no)
config() {
  local name=$1 port=$2 upstream_extra="" location_extra=""
  if [ "$3" = yes ]; then
    upstream_extra="keepalive 16;"
    location_extra='proxy_http_version 1.1; proxy_set_header Connection "";'
  fi
  mkdir -p "$work/$name"
  cat >"$work/$name/nginx.conf" <<CONF
error_log $work/$name/error.log;
pid $work/$name/nginx.pid;
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/$name/body;
    proxy_temp_path $work/$name/proxy;
    fastcgi_temp_path $work/$name/fastcgi;
    uwsgi_temp_path $work/$name/uwsgi;
    scgi_temp_path $work/$name/scgi;
    upstream keyctl { server 127.0.0.1:18090; $upstream_extra }
    server {
        listen 127.0.0.1:$port;
        location = /_auth/monitoring {
            internal;
            proxy_pass http://keyctl/v1/authorize?scope=yc.monitoring.read;
            proxy_pass_request_body off;
            $location_extra
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
        location /monitoring/ {
            auth_request /_auth/monitoring;
            root $work/www;
        }
    }
}
CONF
  "$NGINX" -p "$work/$name" -c "$work/$name/nginx.conf" -g "daemon off; master_process off;" 2>"$work/$name/stderr" &
  pids+=($!)
  for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.05; done
  cat "$work/$name/stderr"; exit 1
}
config keepalive 18091 yes
config close 18092 no
for port in 18091 18092; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Api-Key $key" "http://127.0.0.1:$port/monitoring/status")
  [ "$code" = 200 ] || { echo "nginx on $port answered $code"; exit 1; }
done

echo "wrk -t$T -c$C -d$D through nginx to /monitoring/status ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
for round in $(seq "$R"); do
  for name in keepalive close; do
    port=18091; [ "$name" = close ] && port=18092
    wrk -t"$T" -c"$C" -d"$D" -H "Authorization: Api-Key $key" "http://127.0.0.1:$port/monitoring/status" >"$work/wrk.txt"
    rps=$(awk '/Requests\/sec/ { print $2 }' "$work/wrk.txt")
    non2xx=$(awk '/Non-2xx/ { print $5 }' "$work/wrk.txt")
    printf 'round %s  %-10s %10s req/s  non-2xx %s\n' "$round" "$name" "$rps" "${non2xx:-0}"
  done
done

#!/usr/bin/env bash
# Schemathesis against a live `keyctl serve` (memory store, management API on):
# about a minute of generated requests from the served OpenAPI document; fails
# on any 5xx or any response that does not match the document.
#   .ci/schemathesis.sh [SECONDS]        (default 60)
# Installs the pinned schemathesis (.ci/versions.sh) from PyPI unless `st`
# is that version; builds keyctl unless KEYCTL names one. Binds 127.0.0.1
# only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
port="${SCHEMATHESIS_PORT:-18431}"
root="http://127.0.0.1:${port}"
base="${root}/iam/v1"

source .ci/versions.sh
if ! st --version 2>/dev/null | grep -q "version ${SCHEMATHESIS_VERSION}\$"; then
  echo "installing schemathesis ${SCHEMATHESIS_VERSION}"
  python3 -m pip install --quiet "schemathesis==${SCHEMATHESIS_VERSION}"
fi
st --version

# KEYCTL: the keyctl to run (built unless given).
source .ci/keyctl.sh
token="ci-admin-$(head -c 24 /dev/urandom | base64 | tr -d '/+=' )"
log="$(mktemp)"
API_KEYS_PEPPER="$(head -c 32 /dev/urandom | base64)" API_KEYS_ADMIN_TOKEN="$token" \
  "$KEYCTL" --database-url memory: serve --listen "127.0.0.1:${port}" >/dev/null 2>"$log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:${port}/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
grep -q "management API at /iam/v1" "$log" || { cat "$log"; echo "the management API did not start"; exit 1; }

# The document's paths are from the root (/iam/v1/…, /resource-manager/v1/…).
st run "${base}/openapi.json" --url "$root" \
  -H "Authorization: Bearer ${token}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-time "$seconds" --workers 2 --seed 1

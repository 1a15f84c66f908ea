#!/usr/bin/env bash
# The console's browser tests: builds keyctl (unless KEYCTL names one), then
# runs console.test.mjs with node's test runner against Debian's chromium.
#   cli/tests/browser/run.sh            (from anywhere)
# Needs /usr/bin/chromium (apt-get install chromium) and `npm ci` done here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
if [[ -z "${KEYCTL:-}" ]]; then
  (cd "$root" && cargo build --quiet -p api-keys-cli)
  export KEYCTL="$root/target/debug/keyctl"
fi
[[ -x "$KEYCTL" ]] || { echo "run.sh: KEYCTL=$KEYCTL is not an executable" >&2; exit 1; }
[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || { echo "run.sh: ${CHROMIUM:-/usr/bin/chromium} is missing (apt-get install chromium)" >&2; exit 1; }
[[ -d "$here/node_modules/playwright-core" ]] || { echo "run.sh: run npm ci in $here first" >&2; exit 1; }
cd "$here"
exec node --test --test-concurrency=1 --test-reporter=spec console.test.mjs

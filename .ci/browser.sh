#!/usr/bin/env bash
# The management console's browser tests (cli/tests/browser): Debian's
# chromium driven by playwright-core against a live `keyctl serve` on
# loopback. Installs chromium with apt-get when /usr/bin/chromium is missing
# (and fails saying so if it cannot), installs the pinned playwright-core
# from package-lock.json (npm ci; never downloads a browser of its own),
# builds keyctl (unless KEYCTL names one) and runs the tests.
# Screenshots: target/console-screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser.sh: /usr/bin/chromium is missing; installing Debian's chromium"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "browser.sh: FAILED: could not install chromium with apt-get (needs root and Debian's package lists)" >&2
    exit 1
  fi
  [[ -x /usr/bin/chromium ]] || { echo "browser.sh: FAILED: apt-get ran but /usr/bin/chromium is still missing" >&2; exit 1; }
fi
command -v node >/dev/null && command -v npm >/dev/null || {
  echo "browser.sh: FAILED: node and npm are needed (apt-get install nodejs npm)" >&2
  exit 1
}

dir=cli/tests/browser
lock="$dir/package-lock.json"
stamp="$dir/node_modules/.installed-from-lock"
if [[ -f "$lock" ]]; then
  # npm ci wipes node_modules; skip it when the lock file has not changed.
  if [[ ! -f "$stamp" ]] || ! cmp -s "$lock" "$stamp"; then
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    cp "$lock" "$stamp"
  fi
else
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error)
fi

# KEYCTL: the keyctl to run (built unless given).
source .ci/keyctl.sh
KEYCTL="$KEYCTL" "$dir/run.sh"

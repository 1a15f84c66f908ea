#!/usr/bin/env bash
# Installs the cloud's official Node SDK (pinned by package-lock.json here)
# into a gitignored directory for cli/tests/grpc_sdk.rs (which runs it when
# the directory is missing; CI runs it before the tests). Idempotent.
# Usage: install.sh [DIR] (default $NODE_SDK_DIR, else target/node-sdk).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DIR="${1:-${NODE_SDK_DIR:-target/node-sdk}}"
mkdir -p "$DIR"
if cmp -s "$here/package-lock.json" "$DIR/package-lock.json" && [[ -d "$DIR/node_modules/@yandex-cloud/nodejs-sdk" ]]; then
  echo "install.sh: $DIR already has the pinned Node SDK"
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$DIR/"
(cd "$DIR" && npm ci --no-audit --no-fund --ignore-scripts --silent)
echo "install.sh: the pinned @yandex-cloud/nodejs-sdk installed in $DIR"

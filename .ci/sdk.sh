#!/usr/bin/env bash
# Installs the cloud's official Python SDK (pinned) into a virtualenv for the
# gRPC client test (cli/tests/grpc_sdk.rs). Idempotent: a venv that already has
# the pinned version is left as it is. SDK_VENV overrides the location.
set -euo pipefail
YANDEXCLOUD_VERSION="0.413.0"
VENV="${SDK_VENV:-target/sdk-venv}"
PY="$VENV/bin/python"
if [[ -x "$PY" ]] && "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('yandexcloud') != '$YANDEXCLOUD_VERSION')" 2>/dev/null; then
  echo "sdk.sh: $VENV already has yandexcloud $YANDEXCLOUD_VERSION"
  exit 0
fi
python3 -m venv "$VENV"
"$PY" -m pip install --quiet --disable-pip-version-check "yandexcloud==$YANDEXCLOUD_VERSION"
"$PY" -c "import yandexcloud, grpc; print('sdk.sh: yandexcloud', '$YANDEXCLOUD_VERSION', 'grpcio', grpc.__version__, 'in $VENV')"

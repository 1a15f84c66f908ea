# Sourced by the live-server steps (.ci/schemathesis.sh, .ci/browser.sh):
# sets KEYCTL to an executable keyctl. .ci/run passes the one its test step
# built; run alone, a script builds one here.
if [[ -z "${KEYCTL:-}" ]]; then
  cargo build --quiet -p api-keys-cli
  KEYCTL="$PWD/target/debug/keyctl"
fi
[[ -x "$KEYCTL" ]] || { echo "$(basename "$0"): FAILED: KEYCTL=$KEYCTL is not an executable" >&2; exit 1; }

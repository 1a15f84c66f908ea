# Pinned versions of the tools CI installs, sourced by .ci/run and the step
# scripts. Change a version here and the next run installs it.
CARGO_HACK_VERSION=0.6.46
CARGO_FUZZ_VERSION=0.13.2
SCHEMATHESIS_VERSION=4.32.5
# The cloud's official Node SDK for cli/tests/grpc_sdk.rs; the exact tree is
# cli/tests/sdk/node/package-lock.json (.ci/run checks the two agree).
NODEJS_SDK_VERSION=3.2.0

# cargo_tool CRATE VERSION "VERSION COMMAND" [INSTALL ARGS…]: installs a
# cargo subcommand at VERSION (`--locked`: the dependencies its release was
# tested with) unless VERSION COMMAND already prints "CRATE VERSION".
# Idempotent: a second run installs nothing.
cargo_tool() {
  local crate="$1" version="$2" check="$3"
  shift 3
  # shellcheck disable=SC2086 # the check command is word-split on purpose
  if $check 2>/dev/null | grep -qx "$crate $version"; then
    echo "$crate $version already installed"
    return 0
  fi
  echo "installing $crate $version"
  cargo install "$crate" --version "$version" --locked --force "$@"
}

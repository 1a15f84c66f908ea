#!/usr/bin/env bash
# Paired A/B of the verify path against a baseline commit, in one process
# (see harness.rs). Usage, from anywhere in the repository:
#
#   benches/ab/run.sh BASE-COMMIT [MODE [ROUNDS]]    # MODE: verify | bad-checksum | tower
#
# Builds target/ab/harness (release, LTO, one codegen unit: the bench
# profile) against BASE-COMMIT's library (exported with `git archive` into
# target/ab/base and renamed `api-keys-base`) and the working tree's, then
# runs it pinned to CPU 1 (the libraries' `tower` feature on for MODE tower
# only). PASSES (default 200) sets the thousands of
# operations per round. Nothing here runs in CI.
set -euo pipefail

base=${1:?usage: benches/ab/run.sh BASE-COMMIT [MODE [ROUNDS]]}
shift
root=$(git rev-parse --show-toplevel)
work=$root/target/ab
rev=$(git -C "$root" rev-parse --verify "$base^{commit}")

if [ "$(cat "$work/base.rev" 2>/dev/null || true)" != "$rev" ]; then
  rm -rf "$work/base"
  mkdir -p "$work/base"
  git -C "$root" archive "$rev" | tar -x -C "$work/base"
  # Two versions of one package cannot share a build graph: rename the old one.
  sed -i 's/^name = "api-keys"$/name = "api-keys-base"/; s/^name = "api_keys"$/name = "api_keys_base"/' \
    "$work/base/Cargo.toml"
  echo "$rev" > "$work/base.rev"
fi

mkdir -p "$work/harness/src"
cat > "$work/harness/Cargo.toml" <<TOML
[package]
name = "ab"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
api_keys_head = { package = "api-keys", path = "$root" }
api_keys_base = { package = "api-keys-base", path = "$work/base" }
criterion = "0.7"
hmac = "0.13"
http = { version = "1", optional = true }
rustix = { version = "1", features = ["time"] }
sha2 = "0.11"
subtle = "2.6"
tower = { version = "0.5", features = ["util"], optional = true }

[features]
tower = ["dep:http", "dep:tower", "api_keys_head/tower", "api_keys_base/tower"]

[profile.release]
lto = true
codegen-units = 1

[workspace]
TOML
cp "$root/benches/ab/harness.rs" "$work/harness/src/main.rs"
sed 's/api_keys::/api_keys_head::/g' "$root/benches/common/mod.rs" > "$work/harness/src/head_common.rs"
sed 's/api_keys::/api_keys_base::/g' "$work/base/benches/common/mod.rs" > "$work/harness/src/base_common.rs"

# The libraries' `tower` feature only for the mode that needs it, so the
# other modes build what `cargo bench --bench verify` builds (it changes
# what the compiler inlines into the verify path).
features=()
target=${AB_TARGET_DIR:-$work/harness/target}/plain
if [ "${1:-verify}" = tower ]; then
  features=(--features tower)
  target=${AB_TARGET_DIR:-$work/harness/target}/tower
fi
CARGO_TARGET_DIR=$target cargo build --quiet --release --manifest-path "$work/harness/Cargo.toml" "${features[@]}"
exec taskset -c 1 "$target/release/ab" "$@"

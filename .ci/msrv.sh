#!/usr/bin/env bash
# The minimum supported Rust version (`rust-version` of both packages, 1.95):
# every target with every feature compiles with it. Needs no download: it
# uses an installed toolchain whose rustc is that version (`1.95.0`, or a
# `stable` that is 1.95.x) and fails, saying what to install, when there is
# none. When that toolchain is the default one, the clippy step of .ci/run
# has already compiled every target with it and this says so instead of
# compiling again (MSRV_FORCE=1 compiles anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
msrv="$(sed -n 's/^rust-version = "\([0-9.]*\)"$/\1/p' Cargo.toml | head -1)"
[[ -n "$msrv" ]] || { echo "msrv.sh: FAILED: no rust-version in Cargo.toml" >&2; exit 1; }
cli_msrv="$(sed -n 's/^rust-version = "\([0-9.]*\)"$/\1/p' cli/Cargo.toml | head -1)"
[[ "$cli_msrv" == "$msrv" ]] || { echo "msrv.sh: FAILED: cli/Cargo.toml says $cli_msrv, Cargo.toml $msrv" >&2; exit 1; }

found=""
for toolchain in $(rustup toolchain list | awk '{print $1}'); do
  version="$(rustup run "$toolchain" rustc --version 2>/dev/null | awk '{print $2}')"
  if [[ "$version" == "$msrv" || "$version" == "$msrv".* ]]; then
    found="$toolchain"
    break
  fi
done
if [[ -z "$found" ]]; then
  echo "msrv.sh: FAILED: no installed toolchain is Rust $msrv (rustup toolchain install $msrv)" >&2
  exit 1
fi
echo "msrv.sh: Rust $msrv is toolchain $found ($(rustup run "$found" rustc --version))"
if [[ "$(rustup run "$found" rustc --print sysroot)" == "$(rustc --print sysroot)" && -z "${MSRV_FORCE:-}" ]]; then
  echo "msrv.sh: that is the default toolchain: the clippy step compiled every target with every feature with it"
  exit 0
fi
cargo +"$found" check --workspace --all-features --all-targets

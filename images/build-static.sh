#!/usr/bin/env bash
# Builds the static release binaries that the container images ship. The Dockerfile's builder
# stage runs exactly this script, so the build can be checked on a machine without Docker:
#
#   images/build-static.sh OUT_DIR [BINARY...]     (default: beacon-node beacon-operator)
#
# Needs the musl target (`rustup target add <arch>-unknown-linux-musl`) and musl-gcc (Debian:
# `apt-get install musl-tools`): blst and ring have C and assembly code, which cc compiles with
# musl-gcc. musl rather than static glibc because glibc's getaddrinfo needs NSS modules at run
# time, which a distroless/static image does not have, and the node resolves its peers' names.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  echo "usage: images/build-static.sh OUT_DIR [BINARY...] (binaries: beacon-node, beacon-operator)" >&2
  exit 2
fi
out=$1
shift
binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
  binaries=(beacon-node beacon-operator)
fi

arch=$(uname -m)
case "$arch" in
  # An explicit CPU baseline: without one, blst's build script compiles ADX instructions in
  # when the *build* machine has them, and the image would die with SIGILL on a CPU without.
  # __BLST_PORTABLE__ (below) then picks the ADX code at run time where the CPU has it.
  x86_64) cpu=x86-64-v2 ;;
  aarch64) cpu=generic ;;
  *)
    echo "images/build-static.sh: unsupported architecture $arch (x86_64 and aarch64 are)" >&2
    exit 2
    ;;
esac
target="$arch-unknown-linux-musl"

if ! command -v musl-gcc >/dev/null 2>&1; then
  echo "musl-gcc not found: install musl-tools (apt-get install musl-tools)" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  echo "the Rust target $target is not installed: rustup target add $target" >&2
  exit 1
fi

packages=()
tree_packages=()
for binary in "${binaries[@]}"; do
  case "$binary" in
    beacon-node | beacon-operator)
      packages+=(-p "$binary" --bin "$binary")
      tree_packages+=(-p "$binary")
      ;;
    *)
      echo "unknown binary $binary (beacon-node, beacon-operator)" >&2
      exit 2
      ;;
  esac
done

triple_var=$(echo "$target" | tr 'a-z-' 'A-Z_')
export "CC_${target//-/_}=musl-gcc"
# blst's own `portable` feature (run-time CPU dispatch) as the C define it sets, so that the
# workspace's dependency features stay as they are for everything else.
export "CFLAGS_${target//-/_}=-D__BLST_PORTABLE__"
# Symbols stay (panics name their functions); the line tables would triple the image.
export CARGO_PROFILE_RELEASE_STRIP=debuginfo
export "CARGO_TARGET_${triple_var}_RUSTFLAGS=-C target-feature=+crt-static -C target-cpu=$cpu"
export CARGO_INCREMENTAL=0

# beacon-node's test hooks (node/src/testhooks.rs) are enabled by the e2e crate in workspace
# builds; an image never has them.
if cargo tree --locked --target "$target" -e features -i beacon-node "${tree_packages[@]}" 2>/dev/null \
    | grep -q 'feature "test-hooks"'; then
  echo "this build would enable beacon-node's test-hooks feature; build the images' packages alone" >&2
  exit 1
fi
cargo build --release --locked --target "$target" "${packages[@]}"

target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out"
for binary in "${binaries[@]}"; do
  built="$target_dir/$target/release/$binary"
  # A dynamic executable has a program interpreter (the loader); a static one has none.
  if readelf -l "$built" | grep -q 'Requesting program interpreter'; then
    echo "$built is dynamically linked; the images need static binaries" >&2
    exit 1
  fi
  cp "$built" "$out/$binary"
  echo "$out/$binary: static, $(du -h "$out/$binary" | cut -f1)"
done

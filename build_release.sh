#!/usr/bin/env bash
# Builds pglite-port for every target this machine can build, puts each binary where
# the Mix compiler looks (priv/native/<triple>/pglite-port) with its SHA-256 beside it,
# and names the targets it skipped and why.
set -euo pipefail
cd "$(dirname "$0")"

host=$(rustc -vV | sed -n 's/^host: //p')
targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin)
built=() skipped=()

can_cross() {
  local target=$1 cc=$2
  rustup target list --installed 2>/dev/null | grep -qx "$target" || { echo "the Rust target is not installed (rustup target add $target)"; return 1; }
  command -v "$cc" >/dev/null || { echo "no C cross compiler $cc (wasmer's build scripts compile C)"; return 1; }
}

for target in "${targets[@]}"; do
  if [ "$target" = "$host" ]; then
    cargo build --release --bin pglite-port
    binary=target/release/pglite-port
  else
    case "$target" in
      *-apple-darwin)
        [ "$(uname -s)" = Darwin ] || { skipped+=("$target: needs macOS and its SDK; run this script on a Mac"); continue; } ;;
    esac
    cc="${target%%-*}-linux-gnu-gcc"
    if ! reason=$(can_cross "$target" "$cc"); then skipped+=("$target: $reason"); continue; fi
    CARGO_TARGET_"$(echo "$target" | tr 'a-z-' 'A-Z_')"_LINKER="$cc" cargo build --release --bin pglite-port --target "$target"
    binary="target/$target/release/pglite-port"
  fi
  dest="priv/native/$target"
  mkdir -p "$dest"
  cp "$binary" "$dest/pglite-port"
  (cd "$dest" && sha256sum pglite-port > pglite-port.sha256)
  built+=("$target")
done

echo "built:   ${built[*]:-none}"
for s in "${skipped[@]}"; do echo "skipped: $s"; done

#!/usr/bin/env bash
# Builds pglite-port for every target this machine can build and names the targets it
# skipped and why.
#
#   ./build_release.sh          release/ (artifacts to upload + pglite-port.checksums),
#                               and priv/native/<triple>/ for this checkout
#   ./build_release.sh OUT      the release artifacts and checksums into OUT only
#
# Release artifacts are pglite-port-<version>-<triple>.gz and, for the targets this
# machine can run, pglite-modules-<version>-<triple>.tar.gz (PostgreSQL and its
# extensions compiled ahead of time for the architecture's CPU baseline, so users never
# compile); pglite-port.checksums lists their SHA-256 (sha256sum format). Upload the artifacts to the release page the Mix
# compiler downloads from (PgliteEx.Prebuilt) and ship the checksums file at the
# package root.
set -euo pipefail
cd "$(dirname "$0")"

out=${1:-release}
version=$(sed -n 's/^ *@version "\(.*\)"/\1/p' mix.exs)
host=$(rustc -vV | sed -n 's/^host: //p')
targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin aarch64-apple-darwin)
built=() skipped=() no_modules=()
mkdir -p "$out"

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
  gzip -9 -n -c "$binary" > "$out/pglite-port-$version-$target.gz"
  modules=""
  if [ "$target" = "$host" ]; then
    modules=$(mktemp -d)
    "$binary" --precompile-to "$modules/pglite-modules"
    tar -C "$modules" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - pglite-modules \
      | gzip -6 -n > "$out/pglite-modules-$version-$target.tar.gz"
  else
    no_modules+=("$target")
  fi
  if [ $# -eq 0 ]; then
    dest="priv/native/$target"
    mkdir -p "$dest"
    cp "$binary" "$dest/pglite-port"
    (cd "$dest" && sha256sum pglite-port > pglite-port.sha256)
    rm -rf "$dest/pglite-modules"
    if [ -n "$modules" ]; then cp -r "$modules/pglite-modules" "$dest/"; fi
  fi
  if [ -n "$modules" ]; then rm -rf "$modules"; fi
  built+=("$target")
done

(cd "$out" && sha256sum pglite-port-*.gz pglite-modules-*.tar.gz > pglite-port.checksums)
echo "built:   ${built[*]:-none} (artifacts and pglite-port.checksums in $out)"
for s in "${skipped[@]}"; do echo "skipped: $s"; done
for t in "${no_modules[@]}"; do echo "no modules for $t (this machine cannot run its binary): mix compile compiles them there"; done

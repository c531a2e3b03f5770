#!/usr/bin/env bash
# The Hex package, by hand (CI reaches neither hex.pm nor GitHub): builds the Hex client
# from a checkout of its source (github.com/hexpm/hex, e.g. tag v2.5.1) into a private
# MIX_HOME, makes the package with `mix hex.build --unpack`, then runs
# test/package_test.exs on it: a fresh app that depends on the unpacked package builds
# pglite-port with cargo and runs a query.
#
#   test/package/hex_build.sh HEX_CHECKOUT
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
hex=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$hex" && MIX_HOME=$work/mix MIX_ENV=prod mix archive.build -o "$work/hex.ez" >/dev/null)
MIX_HOME=$work/mix mix archive.install "$work/hex.ez" --force >/dev/null
(cd "$repo" && MIX_HOME=$work/mix mix hex.build --unpack -o "$work/pkg")
cd "$repo" && PGLITE_PACKAGE_DIR=$work/pkg mix test test/package_test.exs

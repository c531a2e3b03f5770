#!/usr/bin/env bash
# The Ecto workflow against `mix pglite.server`, by hand (CI reaches neither Hex nor
# GitHub): mix ecto.migrate, ecto.rollback --all, ecto.migrate again, then async
# Sandbox tests that hit constraint errors (Postgrex's savepoint mode).
#
#   test/ecto/run.sh DEPS_DIR
#
# DEPS_DIR: source checkouts of Ecto and its dependencies (see copy_deps.sh), copied,
# not changed. MIGRATION_LOCK=table_lock shows what Ecto's default lock does here
# (README, Ecto).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
export ECTO_DEPS_DIR=$work/deps
"$repo/test/ecto/copy_deps.sh" "$1" "$ECTO_DEPS_DIR"
export PGLITE_SOCKET_DIR=$work/sock
mkdir -p "$PGLITE_SOCKET_DIR"
cp -r "$repo/test/ecto/app" "$work/app"

(cd "$repo" && exec mix pglite.server --socket-dir "$PGLITE_SOCKET_DIR" --port 5432 >"$work/server.log" 2>&1) &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 600); do [ -S "$PGLITE_SOCKET_DIR/.s.PGSQL.5432" ] && break; sleep 0.1; done

cd "$work/app"
step() { echo "== $*"; local t=$SECONDS; "$@"; echo "   ok in $((SECONDS - t)) s"; }
step mix compile --quiet
step mix ecto.migrate
step mix ecto.rollback --all
step mix ecto.migrate
step mix test

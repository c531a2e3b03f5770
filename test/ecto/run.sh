#!/usr/bin/env bash
# The Ecto workflow against `mix pglite.server`, by hand (CI reaches neither Hex nor
# GitHub), with the repo's own databases (ecto_check_dev, ecto_check_test): mix
# ecto.create, ecto.migrate, ecto.rollback --all, ecto.migrate again, then async Sandbox
# tests that hit constraint errors (Postgrex's savepoint mode), Ecto.Multi, upserts in
# a schema prefix, 2,000 parameters; then mix ecto.drop of both.
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

. "$repo/test/support/servers.sh"
trap 'pglite_server_stop; rm -rf "$work"' EXIT
pglite_server_start "$repo" "$PGLITE_SOCKET_DIR" 5432 postgres

cd "$work/app"
step() { echo "== $*"; local t=$SECONDS; "$@"; echo "   ok in $((SECONDS - t)) s"; }
step mix compile --quiet
step mix ecto.create
step mix ecto.migrate
step mix ecto.rollback --all
step mix ecto.migrate
step mix test
step mix ecto.drop
MIX_ENV=test step mix ecto.drop

#!/usr/bin/env bash
# The Ecto workflow against `mix pglite.server`, by hand (CI reaches neither Hex nor
# GitHub): mix ecto.migrate, ecto.rollback --all, ecto.migrate again, then async
# Sandbox tests that hit constraint errors (Postgrex's savepoint mode).
#
#   test/ecto/run.sh DEPS_DIR
#
# DEPS_DIR holds source checkouts named ecto, ecto_sql, postgrex, db_connection,
# decimal and telemetry (tested with ecto 3.13.5, ecto_sql 3.13.5, postgrex 0.21.1,
# db_connection 2.8.1, decimal 2.3.0, telemetry 1.3.0); they are copied, not changed. MIGRATION_LOCK=table_lock
# shows what Ecto's default lock does here (README, Ecto).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
# Copies of the checkouts whose mix.exs name each other by path: without Hex, Mix
# cannot even read a Hex requirement that a path dependency overrides.
export ECTO_DEPS_DIR=$work/deps
mkdir -p "$ECTO_DEPS_DIR"
for name in ecto ecto_sql postgrex db_connection decimal telemetry; do
  cp -r "$1/$name" "$ECTO_DEPS_DIR/$name"
  python3 - "$ECTO_DEPS_DIR/$name/mix.exs" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
for dep in ["ecto", "ecto_sql", "postgrex", "db_connection", "decimal", "telemetry"]:
    text = re.sub(r'\{:%s, "[^"]*"[^}]*\}' % dep, '{:%s, path: "../%s", override: true}' % (dep, dep), text)
# The rest (optional or for their own tests and docs) are never loaded: any SCM will do.
text = re.sub(r'\{:(\w+), "[^"]*"[^}]*\}', r'{:\1, path: "../absent", optional: true, only: :docs}', text)
open(path, "w").write(text)
PY
done
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

#!/usr/bin/env bash
# ecto_sql's own PostgreSQL integration suite (integration_test/pg, with ecto's shared
# cases) against a PostgreSQL server and against `mix pglite.server`, one after the
# other, by hand (CI reaches neither Hex nor GitHub). Prints each side's count and
# wall time, then the tests that fail on pglite but not on the server, marked with
# the README limit that explains them when test/ecto/integration_exclusions.txt
# lists them.
#
#   test/ecto/integration.sh DEPS_DIR
#
# DEPS_DIR: source checkouts of Ecto and its dependencies, and jason (see
# copy_deps.sh), copied, not changed. On pglite the suite's repos take the advisory
# migration lock: the README's Ecto advice. Its set-up drops and creates ecto_test
# from the maintenance database on both, as it is written.
set -euo pipefail
export LC_ALL=C # one sort order for comm
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
"$repo/test/ecto/copy_deps.sh" "$1" "$work/deps"
suite=$work/deps/ecto_sql
python3 - "$suite/integration_test/pg/test_helper.exs" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
# The README's Ecto advice: the advisory migration lock (the table lock holds a
# transaction on one connection while the migration waits on another).
lock = 'migration_lock: if(System.get_env("PGLITE"), do: :pg_advisory_lock, else: :table_lock)'
old = "  types: Postgrex.EctoTypes\n)"
assert old in text
text = text.replace(old, "  types: Postgrex.EctoTypes,\n  " + lock + "\n)", 1)
old = "  max_seconds: 10\n]"
assert old in text
text = text.replace(old, "  max_seconds: 10,\n  " + lock + "\n]", 1)
open(path, "w").write(text)
PY

. "$repo/test/support/servers.sh"
pg=$work/pg
server_port=54329 pglite_port=54330
trap 'servers_cleanup "$work" "$pg"' EXIT
native_server_start "$pg" "$server_port"

cd "$suite"
export ECTO_ADAPTER=pg MIX_ENV=test
mix compile >/dev/null 2>&1

run() { # name, then env for mix test
  local name=$1 start
  shift
  start=$(date +%s)
  env "$@" mix test >"$work/$name.log" 2>&1 || true
  echo "$name: $(grep -Eo '[0-9]+ tests?, [0-9]+ failures?[^,]*(, [0-9]+ excluded)?' "$work/$name.log" | tail -1 || echo "no summary: see its log"), $(($(date +%s) - start)) s"
  # "  1) test name (Module)" lines: the failures.
  { grep -E '^\s+[0-9]+\) test ' "$work/$name.log" || true; } | sed -E 's/^\s+[0-9]+\) //' | sort -u >"$work/$name.failed"
}

run server PG_URL="postgres:postgres@127.0.0.1:$server_port"

# The suite holds a transaction on one connection while it waits for another (two
# transactions at once: Transactions take turns); a 1 s idle_in_transaction_timeout
# ends that deadlock sooner than the default 10 s (the README's advice for such
# suites). PGLITE_ARGS replaces it.
PGLITE_ARGS=${PGLITE_ARGS---idle-in-transaction-timeout 1000} pglite_server_start "$repo" "$work" "$pglite_port" postgres
run pglite PG_URL="postgres:postgres@127.0.0.1:$pglite_port" PGLITE=1

pglite_only_failures "$work" "$repo/test/ecto/integration_exclusions.txt"

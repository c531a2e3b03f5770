#!/usr/bin/env bash
# psycopg's own test suite against a PostgreSQL server and against `mix pglite.server`,
# one after the other, by hand (it needs a psycopg checkout and PyPI; CI has neither).
# Prints each side's summary and wall time, then the tests that fail on pglite but not
# on the server, marked with the README limit that explains them when
# test/drivers/psycopg_exclusions.txt lists them.
#
#   test/drivers/psycopg_suite.sh PSYCOPG_CHECKOUT [PYTEST_ARGS...]
#
# PYTEST_ARGS that start with test ids (tests/...) run those tests instead of the whole
# suite, e.g. the ids of one reason in the exclusions file.
# PSYCOPG_CHECKOUT: github.com/psycopg/psycopg (tested at tag 3.3.4), not changed. A
# virtualenv in a temporary directory gets psycopg (pure Python) and psycopg_pool from
# the checkout and their test requirements from PyPI. KEEP=DIR keeps the logs.
# SERVER_FAILED=FILE skips the server run and takes its failures from FILE (a
# server.failed kept from an earlier run of the same tag): half the time.
set -euo pipefail
export LC_ALL=C PYTHONDONTWRITEBYTECODE=1
repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$(cd "$1" && pwd)
shift
work=$(mktemp -d)
. "$repo/test/support/servers.sh"
server_port=54331 pglite_port=54332
trap 'servers_cleanup "$work" "$work/pg"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$src/psycopg[test]" "$src/psycopg_pool" pytest-timeout >"$work/pip.log" 2>&1

run() { # name, dsn, then pytest's extra arguments
  local name=$1 dsn=$2 start
  shift 2
  start=$(date +%s)
  local what=tests
  [[ "${1:-}" == tests/* ]] && what=
  (cd "$src" && PSYCOPG_IMPL=python "$work/venv/bin/pytest" $what -p no:randomly -o cache_dir="$work/pytest_cache" \
    --timeout 30 -m "not mypy" -q -rfE --test-dsn "$dsn" "$@") >"$work/$name.log" 2>&1 || true
  echo "$name: $(tail -1 "$work/$name.log"), $(($(date +%s) - start)) s wall"
  { grep -E '^(FAILED|ERROR) tests/' "$work/$name.log" || true; } | sed -E 's/^(FAILED|ERROR) //; s/ - .*//' | sort -u >"$work/$name.failed"
}

if [ -n "${SERVER_FAILED:-}" ]; then
  sort -u "$SERVER_FAILED" >"$work/server.failed"
  echo "server: failures from $SERVER_FAILED ($(wc -l <"$work/server.failed")), not run"
else
  native_server_start "$work/pg" "$server_port"
  run server "host=127.0.0.1 port=$server_port user=postgres dbname=postgres" "$@"
fi
pglite_server_start "$repo" "$work" "$pglite_port" postgres
run pglite "host=127.0.0.1 port=$pglite_port user=postgres password=postgres dbname=postgres" "$@"

pglite_only_failures "$work" "$repo/test/drivers/psycopg_exclusions.txt"

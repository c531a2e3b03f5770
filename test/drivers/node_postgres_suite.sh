#!/usr/bin/env bash
# node-postgres's own tests against a PostgreSQL server and against `mix pglite.server`,
# one after the other, by hand (it needs a node-postgres checkout and npm; CI has
# neither): pg's integration tests (test/integration/**/*-tests.js, each file a suite
# that stops at its first failure) in text and in binary mode, and pg-protocol's unit
# tests (they parse and build bytes, no server: run once). Prints each side's counts
# and wall time, then the files that fail on pglite but not on the server, marked with
# the README limit that explains them when test/drivers/node_postgres_exclusions.txt
# lists them.
#
#   test/drivers/node_postgres_suite.sh NODE_POSTGRES_CHECKOUT
#
# NODE_POSTGRES_CHECKOUT: github.com/brianc/node-postgres (tested at tag pg@8.23.0),
# copied, not changed. pg-protocol is built from the checkout with TypeScript; pg's
# sibling packages come from the checkout, the rest from npm. KEEP=DIR keeps the logs.
set -euo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
. "$repo/test/support/servers.sh"
server_port=54333 pglite_port=54334
trap 'servers_cleanup "$work" "$work/pg"' EXIT

# node resolves modules from $work/node_modules for everything under $work/src.
cp -r "$1" "$work/src"
rm -rf "$work/src/.git" "$work/src/node_modules"
(cd "$work" && echo '{"private": true}' >package.json &&
  npm install -q --no-audit --no-fund pg-types@2.2.0 pgpass@1.0.5 async@2.6.4 bluebird@3.7.2 co@4.6.0 pg-copy-streams@0.3.0 \
    typescript@6 @types/node@16 @types/mocha@10 @types/chai@4 chai@4 mocha@11 >"$work/npm.log" 2>&1)
for p in pg-protocol pg-pool pg-connection-string pg-cursor pg-query-stream; do
  ln -s "$work/src/packages/$p" "$work/node_modules/$p"
done
(cd "$work/src/packages/pg-protocol" && "$work/node_modules/.bin/tsc" >"$work/tsc.log" 2>&1)

echo "pg-protocol (no server): $(cd "$work/src/packages/pg-protocol" && "$work/node_modules/.bin/mocha" 'dist/**/*.test.js' 2>&1 | grep -Eo '[0-9]+ (passing|failing)' | paste -sd' ')"

run() { # name, then the PG* environment
  local name=$1 start mode f out
  shift
  start=$(date +%s)
  : >"$work/$name.failed"
  : >"$work/$name.log"
  chmod 600 "$work/src/packages/pg/test/unit/client/pgpass.file"
  for mode in text binary; do
    while IFS= read -r f; do
      out=$(cd "$work/src/packages/pg" && env "$@" timeout 120 node "$f" postgres:// $([ $mode = binary ] && echo binary) 2>&1) && status=0 || status=$?
      printf '== %s %s (exit %s)\n%s\n' "$mode" "$f" "$status" "$out" >>"$work/$name.log"
      [ "$status" = 0 ] || echo "$mode $f" >>"$work/$name.failed"
    done < <(cd "$work/src/packages/pg" && find test/integration -name '*-tests.js' | sort)
  done
  sort -o "$work/$name.failed" "$work/$name.failed"
  echo "$name: $(grep -c '✔' "$work/$name.log") tests passed, $(wc -l <"$work/$name.failed") of $(grep -c '^== ' "$work/$name.log") files failed, $(($(date +%s) - start)) s wall"
}

native_server_start "$work/pg" "$server_port"
run server PGHOST=127.0.0.1 PGPORT=$server_port PGUSER=postgres PGDATABASE=postgres
pglite_server_start "$repo" "$work" "$pglite_port" postgres
run pglite PGHOST=127.0.0.1 PGPORT=$pglite_port PGUSER=postgres PGPASSWORD=postgres PGDATABASE=postgres

pglite_only_failures "$work" "$repo/test/drivers/node_postgres_exclusions.txt"

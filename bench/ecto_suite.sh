#!/usr/bin/env bash
# An app's test suite three ways (issue: an instance per test module), by hand: CI
# reaches neither Hex nor GitHub. 40 async modules x 10 Sandbox tests against
#   (a) a PostgreSQL server, one repo with the Sandbox (as a Phoenix app has it),
#   (b) one pglite instance, one repo with the Sandbox,
#   (c) an instance per test module, cloned from a migrated template;
# prints the wall times side by side, then the memory an extra instance takes.
#
#   bench/ecto_suite.sh DEPS_DIR [RUNS]
#
# DEPS_DIR: source checkouts of Ecto and its dependencies (see test/ecto/copy_deps.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${2:-1}
work=$(mktemp -d)
chmod 755 "$work"  # the server runs as postgres and must reach its directory
export ECTO_DEPS_DIR=$work/deps PGLITE_REPO=$repo MIX_ENV=test
"$repo/test/ecto/copy_deps.sh" "$1" "$ECTO_DEPS_DIR"
cp -r "$repo/bench/ecto_suite" "$work/app"

bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -r | head -1)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg=$work/pg
mkdir -p "$pg"
[ "$(id -u)" = 0 ] && chown postgres "$pg"
trap 'as_postgres "$bindir/pg_ctl" -D "$pg/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

cd "$work/app"
mix compile >/dev/null
declare -A best
for mode in server shared per_module; do
  for run in $(seq "$runs"); do
    if [ "$mode" = server ]; then
      as_postgres "$bindir/pg_ctl" -D "$pg/data" -m fast stop >/dev/null 2>&1 || true
      rm -rf "$pg/data"
      as_postgres "$bindir/initdb" -D "$pg/data" -U postgres -A trust >/dev/null
      as_postgres "$bindir/pg_ctl" -D "$pg/data" -w -l "$pg/log" -o "-k $pg -c listen_addresses=''" start >/dev/null
    fi
    start=$(date +%s.%N)
    PGHOST=$pg BENCH_MODE=$mode mix test >"$work/$mode.log" 2>&1 || { cat "$work/$mode.log"; exit 1; }
    took=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$mode run $run: $(printf %.1f "$took") s ($(grep -Eo '[0-9]+ tests, [0-9]+ failures' "$work/$mode.log"))"
    if [ -z "${best[$mode]:-}" ] || (( $(echo "$took < ${best[$mode]}" | bc) )); then best[$mode]=$took; fi
  done
done
echo
printf '%-38s %8s %8s\n' "40 modules x 10 tests (best of $runs)" "wall s" "x server"
for mode in server shared per_module; do
  printf '%-38s %8.1f %8.2f\n' "$mode" "${best[$mode]}" "$(echo "${best[$mode]} / ${best[server]}" | bc -l)"
done
echo
BENCH_MODE=per_module mix run instance_memory.exs

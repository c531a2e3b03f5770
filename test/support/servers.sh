# Sourced by the by-hand scripts that run a client's suite against both: a Debian
# PostgreSQL server in a directory (trust authentication, a Unix socket there, TCP on
# 127.0.0.1), and `mix pglite.server` in memory.
#
#   native_server_start DIR PORT   initdb if DIR has no data yet, then start
#   native_server_stop DIR
#   pglite_server_start REPO DIR PORT DATABASE   in the background, until it listens
#                                  (socket DIR/.s.PGSQL.PORT, and TCP 127.0.0.1:PORT);
#                                  its pid in $pglite, its log in DIR/pglite-server.log;
#                                  $PGLITE_ARGS: more options for mix pglite.server
#   pglite_server_stop
#   servers_cleanup WORK PGDIR     the scripts' EXIT trap: logs copied to $KEEP if set,
#                                  both servers stopped, WORK removed
#   pglite_only_failures WORK EXCLUSIONS   lists what is in WORK/pglite.failed and not
#                                  in WORK/server.failed, each with its reason from
#                                  EXCLUSIONS ("name | reason" lines) when listed

native_server_bindir() { ls -d /usr/lib/postgresql/*/bin | sort -r | head -1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

native_server_start() {
  local dir=$1 port=$2 bindir
  bindir=$(native_server_bindir)
  mkdir -p "$dir"
  chmod 755 "$(dirname "$dir")" "$dir" # the server runs as postgres and must reach it
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  [ -d "$dir/data" ] || as_postgres "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  as_postgres "$bindir/pg_ctl" -D "$dir/data" -w -l "$dir/log" -o "-k $dir -p $port -c listen_addresses=127.0.0.1" start >/dev/null
}

native_server_stop() {
  as_postgres "$(native_server_bindir)/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}

pglite_server_start() {
  local repo=$1 dir=$2 port=$3 database=$4
  # shellcheck disable=SC2086 # PGLITE_ARGS: more options for mix pglite.server, split on spaces
  (cd "$repo" && exec mix pglite.server --database "$database" --tcp-port "$port" --socket-dir "$dir" --port "$port" ${PGLITE_ARGS:-} >"$dir/pglite-server.log" 2>&1) &
  pglite=$!
  for _ in $(seq 1200); do [ -S "$dir/.s.PGSQL.$port" ] && return 0; sleep 0.1; done
  echo "mix pglite.server did not listen on $port: see $dir/pglite-server.log" >&2
  return 1
}

pglite_server_stop() {
  [ -n "${pglite:-}" ] && kill "$pglite" 2>/dev/null && wait "$pglite" 2>/dev/null
  pglite=
}

servers_cleanup() {
  local work=$1 pg=$2
  [ -n "${KEEP:-}" ] && cp "$work"/*.log "$work"/*.failed "$KEEP"/ 2>/dev/null
  native_server_stop "$pg"
  pglite_server_stop
  rm -rf "$work"
}

pglite_only_failures() {
  local work=$1 exclusions=$2 t why
  echo
  echo "failing on pglite, not on the server: $(comm -13 "$work/server.failed" "$work/pglite.failed" | wc -l)"
  comm -13 "$work/server.failed" "$work/pglite.failed" | while IFS= read -r t; do
    why=$({ grep -F -- "$t |" "$exclusions" 2>/dev/null || true; } | sed -E 's/^[^|]*\| *//' | head -1)
    echo "  $t${why:+  [$why]}"
  done
  echo "(logs: ${KEEP:-set KEEP=DIR to keep them})"
}

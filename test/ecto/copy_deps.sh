#!/usr/bin/env bash
# Copies source checkouts of Ecto and its dependencies into DEST, each mix.exs naming
# the others by path: without Hex, Mix cannot even read a Hex requirement that a path
# dependency overrides. The checkouts themselves are not changed.
#
#   test/ecto/copy_deps.sh DEPS_DIR DEST
#
# DEPS_DIR holds checkouts named ecto, ecto_sql, postgrex, db_connection, decimal and
# telemetry, and jason for ecto_sql's own tests (tested with ecto 3.13.5, ecto_sql
# 3.13.5, postgrex 0.21.1, db_connection 2.8.1, decimal 2.3.0, telemetry 1.3.0, jason
# 1.4.5).
set -euo pipefail
mkdir -p "$2"
names="ecto ecto_sql postgrex db_connection decimal telemetry"
[ -d "$1/jason" ] && names="$names jason"
for name in $names; do
  cp -r "$1/$name" "$2/$name"
  python3 - "$2/$name/mix.exs" "$names" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
for dep in sys.argv[2].split():
    text = re.sub(r'\{:%s, "[^"]*"[^}]*\}' % dep, '{:%s, path: "../%s", override: true}' % (dep, dep), text)
# The rest (optional or for their own tests and docs) are never loaded: any SCM will do.
text = re.sub(r'\{:(\w+), "[^"]*"[^}]*\}', r'{:\1, path: "../absent", optional: true, only: :docs}', text)
open(path, "w").write(text)
PY
done

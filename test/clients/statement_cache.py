"""psycopg's prepared-statement cache, evicting: with libpq before 17 psycopg sends
`DEALLOCATE _pg3_N` in SQL for a statement it prepared through the protocol. Two
clients, whose statements have the same names (_pg3_0, ...), each evict theirs; the
other's stay usable. The pure-Python psycopg, so that the system's libpq is used
(Debian's 15); psycopg[binary] bundles a libpq 17, which closes with a Close message."""
import os

os.environ["PSYCOPG_IMPL"] = "python"
import psycopg  # noqa: E402
from psycopg import pq  # noqa: E402

print("libpq", pq.version() // 10000)
a = psycopg.connect(autocommit=True, prepare_threshold=0)
b = psycopg.connect(autocommit=True, prepare_threshold=0)
a.prepared_max = b.prepared_max = 2
queries = [f"SELECT {n} + %s" for n in range(6)]

for conn in (a, b):
    assert conn.execute(queries[0], [1]).fetchone() == (1,)
# a evicts its oldest statements again and again; b's of the same names are untouched.
for n, sql in enumerate(queries):
    assert a.execute(sql, [1]).fetchone() == (n + 1,)
# b's statement, by the name a deallocated six times over, still runs.
assert b.execute(queries[0], [1]).fetchone() == (1,)
a.close()
b.close()
print("ok")

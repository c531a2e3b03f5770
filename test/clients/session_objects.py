"""A connection's TEMP tables, SQL-level prepared statements and WITH HOLD cursors are
dropped when it disconnects; the protocol reaches cursors and statements made in SQL
by their SQL names (psycopg's server-side cursors). Prints what a second connection finds before and after."""
import time

import psycopg

a = psycopg.connect(autocommit=True)
b = psycopg.connect(autocommit=True)
a.execute("CREATE TEMP TABLE scratch (v int)")
a.execute("INSERT INTO scratch VALUES (1), (2)")
a.execute("PREPARE mine AS SELECT 42")
with a.transaction():
    a.execute("DECLARE kept CURSOR WITH HOLD FOR SELECT generate_series(1, 3)")
print("a reads its temp table", a.execute("SELECT count(*) FROM scratch").fetchone()[0])
print("a executes its statement", a.execute("EXECUTE mine").fetchone()[0])
print("a fetches its cursor", a.execute("FETCH 1 FROM kept").fetchone()[0])

QUERY = """SELECT (SELECT count(*) FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't'),
                  (SELECT count(*) FROM pg_prepared_statements WHERE name = 'mine'),
                  (SELECT count(*) FROM pg_cursors WHERE name = 'kept')"""
a.close()
for _ in range(50):
    left = b.execute(QUERY).fetchone()
    if left == (0, 0, 0):
        break
    time.sleep(0.1)
print("left after a disconnected", left)
b.execute("CREATE TEMP TABLE scratch (v int)")
print("b may reuse the name", b.execute("SELECT count(*) FROM scratch").fetchone()[0])

# A server-side cursor: psycopg DECLAREs it in SQL, then Describes and fetches the
# portal by that name through the protocol.
with b.transaction():
    cur = b.cursor("big")
    cur.execute("SELECT g FROM generate_series(1, 1000) g")
    print("server-side cursor rows", len(cur.fetchmany(10)) + len(cur.fetchall()))

b.close()

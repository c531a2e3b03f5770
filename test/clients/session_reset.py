"""DEALLOCATE ALL and DISCARD ALL act on the session of the client that sends them,
and on nobody else's: b's prepared statements (protocol and SQL), TEMP table, WITH
HOLD cursor, settings and LISTEN survive a's; a's own are gone, and a gets the
server's command tags and errors. RESET ALL and DISCARD ALL put back the settings of
the client's StartupMessage. DEALLOCATE ALL among other statements, or in a pipeline,
closes the sender's statements and nobody else's. Prints what each client sees."""
import psycopg

a = psycopg.connect(autocommit=True)
b = psycopg.connect(autocommit=True)
for name, conn in (("a", a), ("b", b)):
    conn.execute(f"CREATE TEMP TABLE {name}_temp (v int)")
    conn.execute(f"PREPARE {name}_sql AS SELECT 1")
    conn.execute("SET work_mem = '7MB'")
    with conn.transaction():
        conn.execute(f"DECLARE {name}_cursor CURSOR WITH HOLD FOR SELECT generate_series(1, 3)")
    # Prepared through the protocol (psycopg's _pg3_0: the same name for both).
    conn.execute("SELECT %s::int + 1", [1], prepare=True)
b.execute("LISTEN b_channel")


def outcome(conn, sql, params=None, prepare=None):
    try:
        cur = conn.execute(sql, params, prepare=prepare)
        return cur.fetchone()[0] if cur.description else cur.statusmessage
    except psycopg.Error as e:
        return e.sqlstate


def b_state():
    return [
        outcome(b, "EXECUTE b_sql"),
        outcome(b, "SELECT %s::int + 1", [1], prepare=True),
        outcome(b, "SELECT count(*) FROM b_temp"),
        outcome(b, "FETCH 1 FROM b_cursor"),
        outcome(b, "SHOW work_mem"),
    ]


print("DEALLOCATE ALL:", a.execute("DEALLOCATE ALL").statusmessage)
print("a's SQL statement after it:", outcome(a, "EXECUTE a_sql"))
print("a prepares again:", outcome(a, "SELECT %s::int + 1", [1], prepare=True))
print("b after a's DEALLOCATE ALL:", b_state())

print("DISCARD ALL:", a.execute("DISCARD ALL").statusmessage)
print("a's TEMP table after it:", outcome(a, "SELECT to_regclass('pg_temp.a_temp')::text"))
print("a's cursor after it:", outcome(a, "FETCH 1 FROM a_cursor"))
print("a's work_mem after it:", outcome(a, "SHOW work_mem"))
print("b after a's DISCARD ALL:", b_state())
a.execute("NOTIFY b_channel, 'after'")
print("b still listens:", [n.payload for n in b.notifies(timeout=5, stop_after=1)])

a.execute("BEGIN")
print("DISCARD ALL in a transaction:", outcome(a, "DISCARD ALL"))
a.execute("ROLLBACK")
a.execute("BEGIN")
print("in a failed transaction:", outcome(a, "SELECT 1/0"), outcome(a, "DEALLOCATE ALL"))
a.execute("ROLLBACK")
print("b at the end:", b_state())

# RESET (ALL) and DISCARD ALL go back to what the StartupMessage asked for, as a server's.
c = psycopg.connect(autocommit=True, options="-c work_mem=5MB -c DateStyle=ISO,DMY")
c.execute("SET work_mem = '9MB'")
c.execute("SET DateStyle = 'German'")
print("RESET ALL:", c.execute("RESET ALL").statusmessage, outcome(c, "SHOW work_mem"), outcome(c, "SHOW DateStyle"))
c.execute("SET work_mem = '9MB'")
print("RESET work_mem:", c.execute("RESET work_mem").statusmessage, outcome(c, "SHOW work_mem"))
c.execute("SET work_mem = '9MB'")
print("DISCARD ALL:", c.execute("DISCARD ALL").statusmessage, outcome(c, "SHOW work_mem"), c.info.parameter_status("DateStyle"))
print("b's work_mem meanwhile:", outcome(b, "SHOW work_mem"))
# RESET ALL among other statements of one Query.
c.execute("SET work_mem = '9MB'")
c.pgconn.send_query(b"SELECT 1; RESET ALL; SELECT 2")
while c.pgconn.get_result() is not None:
    pass
print("after RESET ALL among others:", outcome(c, "SHOW work_mem"), outcome(c, "SHOW DateStyle"))

# The same statements through the extended protocol (libpq's PQexecParams; psycopg's
# pipeline mode sends its DEALLOCATE ALL so).
a.execute("SELECT %s::int + 1", [1], prepare=True)
for sql in (b"DEALLOCATE ALL", b"DISCARD ALL", b"RESET ALL"):
    res = a.pgconn.exec_params(sql, None)
    print("extended", sql.decode(), res.status, res.command_status.decode())
print("a's after extended DEALLOCATE ALL:", outcome(a, "SELECT %s::int + 1", [1], prepare=True))
res = c.pgconn.exec_params(b"RESET ALL", None)
print("extended RESET ALL:", res.command_status.decode(), outcome(c, "SHOW work_mem"))
print("b after a's extended ones:", [
    outcome(b, "EXECUTE b_sql"),
    outcome(b, "SELECT %s::int + 1", [1], prepare=True),
    outcome(b, "SELECT count(*) FROM b_temp"),
    outcome(b, "SHOW work_mem"),
])
# DEALLOCATE ALL among other statements of one Query, and in a pipeline of several
# statements before one Sync: a's statements go, b's and d's stay (d's reads its own
# search_path's table, as when it prepared it).
d = psycopg.connect(autocommit=True)
d.execute("CREATE SCHEMA d_schema")
d.execute("CREATE TABLE d_schema.dt AS SELECT 42 AS v")
d.execute("CREATE TABLE public.dt AS SELECT 1 AS v")
d.execute("SET search_path = d_schema")
print("d prepares:", outcome(d, "SELECT v FROM dt WHERE %s::int = 1", [1], prepare=True))
f = psycopg.connect(autocommit=True)
f.execute("PREPARE f_sql AS SELECT 1")
f.execute("SELECT %s::int + 1", [1], prepare=True)
f.pgconn.send_query(b"SELECT 1; DEALLOCATE ALL; SELECT 2; DEALLOCATE ALL")
tags = []
while (res := f.pgconn.get_result()) is not None:
    tags.append(res.command_status.decode())
print("DEALLOCATE ALL among others:", tags)
# psycopg did not see it (sent around it): its cached statement is gone, as on a server.
print("f's own after it:", outcome(f, "EXECUTE f_sql"), outcome(f, "SELECT %s::int + 1", [1], prepare=True))
print("b's after it:", outcome(b, "SELECT %s::int + 1", [1], prepare=True))
print("d's after it:", outcome(d, "SELECT v FROM dt WHERE %s::int = 1", [1], prepare=True))
e = psycopg.connect(autocommit=True)
e.execute("SELECT %s::int * 3", [2], prepare=True)
with e.pipeline():
    first = e.execute("SELECT 1")
    dealloc = e.execute("DEALLOCATE ALL")
    last = e.execute("SELECT 2")
print("DEALLOCATE ALL in a pipeline:", first.fetchone()[0], dealloc.statusmessage, last.fetchone()[0])
print("b's after the pipeline:", outcome(b, "SELECT %s::int + 1", [1], prepare=True))
print("d's after the pipeline:", outcome(d, "SELECT v FROM dt WHERE %s::int = 1", [1], prepare=True))
d.execute("DROP TABLE public.dt")
d.execute("DROP SCHEMA d_schema CASCADE")
for conn in (c, a, b, d, e, f):
    conn.close()
print("ok")

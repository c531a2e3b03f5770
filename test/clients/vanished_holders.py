"""Clients that vanish (no Terminate) while they hold the backend in every awkward
state: after an error in a pipeline with no Sync yet, in a failed transaction, in
COPY either way, asleep inside a transaction. After each, a new client is served at
once and nothing of the vanished client's work is kept. Prints one line per case; stops
with status 1 at the first case after which nobody is served."""
import os
import socket
import threading
import time

import psycopg


def vanish(conn):
    """Drops the connection as a killed client would: no Terminate, the socket shut."""
    s = socket.socket(fileno=os.dup(conn.fileno()))
    s.shutdown(socket.SHUT_RDWR)
    s.close()


def served(case):
    t0 = time.time()
    # A wedged backend would make this wait for ever; the wait in line counts against
    # statement_timeout, so it fails in 5 s instead.
    with psycopg.connect(autocommit=True, connect_timeout=5, options="-c statement_timeout=5000") as c:
        try:
            rows = c.execute("SELECT count(*) FROM vanished").fetchone()[0]
        except psycopg.Error as e:
            # Every later case would wait behind the same wedge.
            raise SystemExit(f"{case}: not served: {e.sqlstate} {e}")
    print(f"{case}: served, rows kept {rows}, waited {'<1s' if time.time() - t0 < 1 else 'long'}", flush=True)


def failed(conn, sql):
    try:
        conn.execute(sql)
    except psycopg.Error:
        pass


def pipeline_error_without_sync():
    c = psycopg.connect(autocommit=True)
    p = c.pgconn
    p.enter_pipeline_mode()
    for sql in [b"BEGIN", b"INSERT INTO vanished VALUES (1)", b"SELECT 1/0"]:
        p.send_query_params(sql, None)
    p.flush()
    time.sleep(0.3)
    vanish(c)


def parse_error_and_flush():
    c = psycopg.connect(autocommit=True)
    p = c.pgconn
    p.enter_pipeline_mode()
    p.send_prepare(b"bad", b"SELEC nope", None)
    p.send_flush_request()
    p.flush()
    time.sleep(0.3)
    vanish(c)


def failed_transaction():
    c = psycopg.connect(autocommit=True)
    c.execute("BEGIN")
    c.execute("INSERT INTO vanished VALUES (2)")
    failed(c, "SELECT 1/0")
    vanish(c)


def failed_in_a_savepoint():
    c = psycopg.connect(autocommit=True)
    c.execute("BEGIN")
    c.execute("SAVEPOINT a")
    c.execute("INSERT INTO vanished VALUES (3)")
    failed(c, "SELECT 1/0")
    vanish(c)


def copy_out_mid_stream():
    c = psycopg.connect(autocommit=True)
    try:
        with c.cursor().copy("COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 2000000) g) TO STDOUT") as cp:
            for i, _ in enumerate(cp):
                if i == 1000:
                    vanish(c)
    except psycopg.Error:
        pass


def copy_in_inside_a_transaction():
    c = psycopg.connect(autocommit=True)
    c.execute("BEGIN")
    cp = c.cursor().copy("COPY vanished FROM STDIN").__enter__()
    cp.write_row((4,))
    c.pgconn.flush()
    time.sleep(0.3)
    vanish(c)


def asleep_inside_a_transaction():
    c = psycopg.connect(autocommit=True)
    c.execute("BEGIN")
    c.execute("INSERT INTO vanished VALUES (5)")
    threading.Thread(target=failed, args=(c, "SELECT pg_sleep(30)"), daemon=True).start()
    time.sleep(0.5)
    vanish(c)


with psycopg.connect(autocommit=True) as c:
    c.execute("DROP TABLE IF EXISTS vanished")
    c.execute("CREATE TABLE vanished (x int)")

for case in [pipeline_error_without_sync, parse_error_and_flush, failed_transaction, failed_in_a_savepoint,
             copy_out_mid_stream, copy_in_inside_a_transaction, asleep_inside_a_transaction]:
    case()
    served(case.__name__)

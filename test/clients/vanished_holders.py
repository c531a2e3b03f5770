"""Clients that vanish (no Terminate) while they hold the backend in every awkward
state: after an error in a pipeline with no Sync yet, in a failed transaction, in
COPY either way, asleep inside a transaction, its settings changed in a sequence with no Sync. After
each, a new client is served at once, in its own settings, and nothing of the
vanished client's work is kept. Prints one line per case; stops
with status 1 at the first case after which nobody is served."""
import os
import socket
import threading
import time

import psycopg

from wire_client import cstr, login, message


def vanish(conn):
    """Drops the connection as a killed client would: no Terminate, the socket shut."""
    s = socket.socket(fileno=os.dup(conn.fileno()))
    s.shutdown(socket.SHUT_RDWR)
    s.close()


def watched_settings():
    """What a client connected all along (with no settings of its own, so the front end
    puts none back for it) finds in the session; it must never be the vanished one's."""
    found = []
    sql = "SELECT current_setting('client_encoding') || ' ' || current_setting('search_path')"
    t = threading.Thread(target=lambda: found.append(watcher.execute(sql).fetchone()[0]), daemon=True)
    t.start()
    t.join(5)
    return found[0] if found else "no answer in 5 s"


def served(case):
    t0 = time.time()
    settings = watched_settings()
    # A wedged backend would make this wait for ever; the wait in line counts against
    # statement_timeout, so it fails in 5 s instead.
    with psycopg.connect(autocommit=True, connect_timeout=5, options="-c statement_timeout=5000") as c:
        try:
            rows = c.execute("SELECT count(*) FROM vanished").fetchone()[0]
        except psycopg.Error as e:
            # Every later case would wait behind the same wedge.
            raise SystemExit(f"{case}: not served: {e.sqlstate} {e}")
    waited = "<1s" if time.time() - t0 < 1 else "long"
    print(f"{case}: served, rows kept {rows}, waited {waited}, settings {settings}", flush=True)


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


def settings_changed_without_sync():
    # An extended sequence with no Sync yet: the SETs are done, the turn is not over.
    s = login()
    for sql in ["SET client_encoding TO 'EUC_JP'", "SET search_path TO nowhere"]:
        s.sendall(message(b"P", cstr("") + cstr(sql) + b"\0\0") + message(b"B", b"\0\0\0\0\0\0\0\0")
                  + message(b"E", b"\0\0\0\0\0") + message(b"H"))
    time.sleep(0.5)
    s.shutdown(socket.SHUT_RDWR)
    s.close()


def settings_changed_then_asleep():
    # Queries in one write: the SETs commit, the turn goes on asleep, never captured.
    s = login()
    s.sendall(message(b"Q", cstr("SET client_encoding TO 'EUC_JP'")) + message(b"Q", cstr("SET search_path TO nowhere"))
              + message(b"Q", cstr("SELECT pg_sleep(30)")))
    time.sleep(0.5)
    s.shutdown(socket.SHUT_RDWR)
    s.close()


with psycopg.connect(autocommit=True) as c:
    c.execute("DROP TABLE IF EXISTS vanished")
    c.execute("CREATE TABLE vanished (x int)")
watcher = psycopg.connect(autocommit=True)
watcher.execute("SELECT 1")

for case in [pipeline_error_without_sync, parse_error_and_flush, failed_transaction, failed_in_a_savepoint,
             copy_out_mid_stream, copy_in_inside_a_transaction, asleep_inside_a_transaction, settings_changed_without_sync,
             settings_changed_then_asleep]:
    case()
    served(case.__name__)

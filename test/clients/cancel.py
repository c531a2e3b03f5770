"""Cancel and statement_timeout over the socket, on a scan and on pg_sleep: the statement
ends with 57014 and the connection stays usable. Prints outcomes, the cancel latency (ms)
and how long the canceled sleeps lasted (s)."""
import threading
import time

import psycopg

LONG = "SELECT count(*) FROM generate_series(1, 300000000)"
conn = psycopg.connect(autocommit=True)


def run(sql):
    try:
        conn.execute(sql)
        return "finished"
    except psycopg.Error as e:
        return f"{e.sqlstate} {e.diag.message_primary}"


sent = []


def cancel_later():
    time.sleep(0.5)
    sent.append(time.monotonic())
    conn.cancel_safe()


def timed(sql):
    started = time.monotonic()
    outcome = run(sql)
    return f"{outcome} after {time.monotonic() - started:.1f} s"


threading.Thread(target=cancel_later).start()
outcome = run(LONG)
print("cancel:", outcome)
print("cancel latency ms", round((time.monotonic() - sent[0]) * 1000, 1))
print("after cancel:", conn.execute("SELECT 1").fetchone()[0])
threading.Thread(target=cancel_later).start()
print("sleep canceled:", timed("SELECT pg_sleep(30)"))
conn.execute("SET statement_timeout = 300")
print("statement_timeout:", run(LONG))
print("sleep timed out:", timed("SELECT pg_sleep(30)"))
print("quick under the timeout:", conn.execute("SELECT 2").fetchone()[0])
conn.execute("RESET statement_timeout")
print("a short sleep sleeps:", timed("SELECT pg_sleep(0.2)"))
conn.close()

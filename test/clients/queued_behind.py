"""Requests written to the backend right behind another client's: every client gets
its own replies, and a cancel or a disconnect hits only its own request. Prints one
line per check."""
import threading
import time

import psycopg

SCAN = "SELECT count(*) FROM generate_series(1, 5000000)"


def run(conn, sql):
    try:
        return str(conn.execute(sql).fetchone()[0])
    except psycopg.Error as e:
        return f"{e.sqlstate}"


# Eight clients, simple and extended protocol, errors among them: each reply is its own.
wrong = []


def echo(n):
    with psycopg.connect(autocommit=True) as conn:
        for i in range(300):
            value = f"{n}-{i}"
            if i % 50 == 7:
                got = run(conn, "SELECT 1/0")
                if got != "22012":
                    wrong.append((value, got))
            elif i % 2:
                got = conn.execute("SELECT %s::text", (value,)).fetchone()[0]
            else:
                got = conn.execute(f"SELECT '{value}'", prepare=False).fetchone()[0]
            if i % 50 != 7 and got != value:
                wrong.append((value, got))


threads = [threading.Thread(target=echo, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("misrouted replies:", len(wrong), wrong[:3])

# B's scan waits right behind A's; B cancels: A finishes, B gets 57014.
a, b = psycopg.connect(autocommit=True), psycopg.connect(autocommit=True)
outcome = {}
ta = threading.Thread(target=lambda: outcome.update(a=run(a, SCAN)))
ta.start()
time.sleep(0.3)
tb = threading.Thread(target=lambda: outcome.update(b=run(b, SCAN)))
tb.start()
time.sleep(0.3)
b.cancel_safe()
ta.join()
tb.join()
print("holder:", outcome["a"], "canceled behind it:", outcome["b"])

# B goes away while its scan waits behind A's: A finishes, the next client is served.
c = psycopg.connect(autocommit=True)
ta = threading.Thread(target=lambda: outcome.update(a=run(a, SCAN)))
ta.start()
time.sleep(0.3)
raw = psycopg.connect(autocommit=True)
raw.pgconn.send_query(SCAN.encode())
time.sleep(0.3)
raw.pgconn.finish()
ta.join()
print("holder after a disconnect behind it:", outcome["a"], "next:", run(c, "SELECT 'served'"))

def query_then_prepare(first, meanwhile=None):
    """Pipelines `first`, then (once `meanwhile` has started) a prepare on the same
    libpq connection; returns its first four results in the order they come."""
    pg = psycopg.connect(autocommit=True).pgconn
    pg.enter_pipeline_mode()
    pg.send_query_params(first, None)
    pg.pipeline_sync()
    time.sleep(0.3)
    if meanwhile:
        meanwhile.start()
        time.sleep(0.3)
    pg.send_prepare(b"second", b"SELECT 'second'")
    pg.pipeline_sync()
    got = []
    deadline = time.time() + 20
    while len(got) < 4 and time.time() < deadline:
        pg.consume_input()
        while not pg.is_busy():
            r = pg.get_result()
            if r is None:
                break
            got.append((psycopg.pq.ExecStatus(r.status).name, r.get_value(0, 0).decode() if r.ntuples else None))
        time.sleep(0.01)
    pg.finish()
    return got


# A client pipelining a prepare while its own request waits in the port (behind A's
# scan), or runs there with another client's written behind it: its replies come in
# the order it asked (the Parse is not acknowledged ahead of them).
ta = threading.Thread(target=lambda: outcome.update(a=run(a, SCAN)))
ta.start()
time.sleep(0.3)
got = query_then_prepare(b"SELECT 'first'")
ta.join()
print("pipelined behind a holder:", got)

tb = threading.Thread(target=lambda: outcome.update(b=run(b, "SELECT 'behind'")))
got = query_then_prepare(SCAN.encode(), tb)
tb.join()
print("pipelined holder:", got, "behind it:", outcome["b"])

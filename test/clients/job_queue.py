"""A job queue as Oban runs one: workers polling with SELECT ... FOR UPDATE SKIP LOCKED
in short transactions, a producer inserting jobs and NOTIFYing in the same
transaction, a listener on its own connection, and a connection holding a session
advisory lock for the whole run.

    job_queue.py SECONDS [WORKERS]

Prints the jobs produced and done, how many were done more than once, the longest
wait of any one statement, the notifications heard, and every error a connection got
(a ping-disconnect or an idle timeout would show there)."""
import sys
import threading
import time

import psycopg

seconds = float(sys.argv[1])
workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
deadline = time.monotonic() + seconds
errors, slowest, heard = [], [0.0], [0]
lock = threading.Lock()


def timed(conn, sql, params=None):
    started = time.monotonic()
    cur = conn.execute(sql, params)
    rows = cur.fetchall() if cur.description else []
    with lock:
        slowest[0] = max(slowest[0], time.monotonic() - started)
    return rows


def guarded(body):
    def run():
        try:
            body()
        except Exception as e:  # every failure is reported, none ends the run silently
            with lock:
                errors.append(f"{body.__name__}: {type(e).__name__}: {str(e).strip()}")
    return run


setup = psycopg.connect(autocommit=True)
setup.execute("DROP TABLE IF EXISTS jobs")
setup.execute("CREATE TABLE jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'available', attempts int NOT NULL DEFAULT 0, worker int)")

produced = [0]


def producer():
    with psycopg.connect() as conn:
        while time.monotonic() < deadline:
            with conn.transaction():
                timed(conn, "INSERT INTO jobs (state) SELECT 'available' FROM generate_series(1, 5)")
                timed(conn, "NOTIFY jobs, 'inserted'")
            produced[0] += 5
            time.sleep(0.02)


def worker(n):
    def work():
        with psycopg.connect() as conn:
            while time.monotonic() < deadline + 1.0:
                with conn.transaction():
                    rows = timed(conn, "SELECT id FROM jobs WHERE state = 'available' ORDER BY id LIMIT 5 FOR UPDATE SKIP LOCKED")
                    ids = [r[0] for r in rows]
                    if ids:
                        timed(conn, "UPDATE jobs SET state = 'done', attempts = attempts + 1, worker = %s WHERE id = ANY(%s) RETURNING id", (n, ids))
                time.sleep(0.01)
    work.__name__ = f"worker {n}"
    return work


# Listening before anything is produced, so that every notification counts.
listening = psycopg.connect(autocommit=True)
listening.execute("LISTEN jobs")


def listener():
    with listening as conn:
        for _ in conn.notifies(timeout=seconds + 2.0):
            heard[0] += 1


def advisory_holder():
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
        while time.monotonic() < deadline:
            time.sleep(0.5)
            timed(conn, "SELECT 1")
        conn.execute("SELECT pg_advisory_unlock(4242)")


threads = [threading.Thread(target=guarded(f)) for f in [producer, listener, advisory_holder] + [worker(n) for n in range(workers)]]
for t in threads:
    t.start()
for t in threads:
    t.join()

done, twice, left = setup.execute(
    "SELECT count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE attempts > 1), count(*) FILTER (WHERE state <> 'done') FROM jobs"
).fetchone()
print(f"produced {produced[0]} done {done} twice {twice} left {left}")
print(f"slowest statement {slowest[0]:.2f} s")
print(f"notifications heard {heard[0]}")
print(f"errors {len(errors)} {errors}")

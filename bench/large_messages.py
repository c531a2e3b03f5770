"""Times one large message each way against the server the PG* variables name:
a bytea parameter of N MB (client to server: SELECT length($1)) and a text result of
N MB (server to client: SELECT repeat('x', N MB)), with psycopg in binary mode, and
reads the resident memory of the process serving the connection 2 s after each pair
(BACKEND_OS_PID, or else the server's pg_backend_pid()) and at the start.
Prints "idle MB" and then one line per size: "MB param_seconds result_seconds rss_MB"."""
import os
import sys
import time

import psycopg

sizes = [int(a) for a in sys.argv[1:]] or [1, 16, 64, 256]

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


with psycopg.connect(autocommit=True) as conn:
    conn.execute("SELECT 1")
    pid = int(os.environ.get("BACKEND_OS_PID") or conn.execute("SELECT pg_backend_pid()").fetchone()[0])
    time.sleep(2)
    print("idle", f"{rss_mb(pid):.0f}", flush=True)
    for mb in sizes:
        n = mb * 1024 * 1024
        value = b"x" * n
        start = time.monotonic()
        (length,) = conn.execute("SELECT length(%b)", [value], binary=True).fetchone()
        param = time.monotonic() - start
        assert length == n, length
        start = time.monotonic()
        (text,) = conn.execute("SELECT repeat('x', %s)", [n], binary=True).fetchone()
        result = time.monotonic() - start
        assert len(text) == n, len(text)
        del value, text
        time.sleep(2)
        print(mb, f"{param:.3f}", f"{result:.3f}", f"{rss_mb(pid):.0f}", flush=True)

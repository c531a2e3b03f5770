"""Times one large message each way against the server the PG* variables name:
a bytea parameter of N MB (client to server: SELECT length($1)) and a text result of
N MB (server to client: SELECT repeat('x', N MB)), with psycopg in binary mode.
Prints one line per size: "MB param_seconds result_seconds"."""
import sys
import time

import psycopg

sizes = [int(a) for a in sys.argv[1:]] or [1, 16, 64, 256]
with psycopg.connect(autocommit=True) as conn:
    conn.execute("SELECT 1")
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
        print(mb, f"{param:.3f}", f"{result:.3f}", flush=True)

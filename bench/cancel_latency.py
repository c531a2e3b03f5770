"""Cancel latency: time from psycopg's cancel_safe() to the 57014 error, for a scan that
checks for interrupts, median of N tries. Connection from the PG* variables.

    python3 bench/cancel_latency.py [tries]

Prints one line: `cancel latency ms: median M, max X (N tries)`.
"""
import statistics
import sys
import threading
import time

import psycopg

tries = int(sys.argv[1]) if len(sys.argv) > 1 else 10
LONG = "SELECT count(*) FROM generate_series(1, 1000000000)"
conn = psycopg.connect(autocommit=True)
latencies = []
for _ in range(tries):
    sent = []

    def cancel():
        time.sleep(0.2)
        sent.append(time.monotonic())
        conn.cancel_safe()

    threading.Thread(target=cancel).start()
    try:
        conn.execute(LONG)
        raise SystemExit("the statement was not canceled")
    except psycopg.errors.QueryCanceled:
        latencies.append((time.monotonic() - sent[0]) * 1000)
print(f"cancel latency ms: median {statistics.median(latencies):.1f}, max {max(latencies):.1f} ({tries} tries)")
